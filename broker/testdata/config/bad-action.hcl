workspace "sandbox" {
  protected_actions = ["delete", "destroy"]
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
  }
}
