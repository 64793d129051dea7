workspace "sandbox" {
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
    env            = { SANDBOX_ENDPOINT = "http://127.0.0.1:8081" }
  }
}
