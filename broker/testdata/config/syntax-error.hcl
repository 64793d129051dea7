workspace "sandbox" {
  drift_mode = "strict"
  credentials {
    audience = "sandbox"
