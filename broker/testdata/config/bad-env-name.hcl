workspace "sandbox" {
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
    env = {
      "sandbox-endpoint" = "http://127.0.0.1:8081"
    }
  }
}
