workspace "sandbox" {
  certificate_lifetime = "1 hour"
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
  }
}
