workspace "sandbox" {
  credentials {
    token_file_env = ["SANDBOX_TOKEN_FILE"]
  }
}
