workspace "sandbox" {
  approvals_required = 11
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
  }
}
