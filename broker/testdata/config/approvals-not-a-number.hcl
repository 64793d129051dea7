workspace "sandbox" {
  approvals_required = "two"
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
  }
}
