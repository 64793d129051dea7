workspace "sandbox" {
  credentials {
    env = { SANDBOX_ENDPOINT = "http://127.0.0.1:8081" }
  }
}
