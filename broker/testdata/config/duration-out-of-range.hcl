clock_skew = "10m"
