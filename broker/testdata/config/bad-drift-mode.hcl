workspace "sandbox" {
  drift_mode = "lenient"
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
  }
}
