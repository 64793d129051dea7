# Every attribute set, none to its default; workspaces out of order.
data_dir   = "/var/lib/seb"
terraform  = "bin/tofu"
issuer_url = "https://seb.example.com/"
listen     = ":8443"
clock_skew = "2m"

workspace "prod" {
  drift_mode           = "strict"
  certificate_lifetime = "15m"
  approvals_required   = 2
  protected_actions    = ["replace", "delete", "forget", "delete"]
  credentials {
    audience       = "sts.amazonaws.com"
    token_file_env = ["AWS_WEB_IDENTITY_TOKEN_FILE"]
    env = {
      AWS_ROLE_ARN          = "arn:aws:iam::123456789012:role/seb-{phase}"
      AWS_ROLE_SESSION_NAME = "seb-{execution}"
    }
    lifetime = "10m"
  }
}

workspace "legacy" {
  approvals_required = 0
  protected_actions  = []
  credentials {
    plan_secrets  = { LEGACY_TOKEN = "env:LEGACY_TOKEN_RO" }
    apply_secrets = { LEGACY_TOKEN = "file:secrets/legacy-rw" }
  }
}
