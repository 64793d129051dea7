workspace "sandbox" {
  approvals = 2
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
  }
}
