workspace "sandbox" {
  credentials {
    audience       = "sandbox"
    token_file_env = ["SANDBOX_TOKEN_FILE"]
    env            = { SANDBOX_TOKEN_FILE = "/tmp/token" }
  }
}
