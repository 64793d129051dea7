workspace "sandbox" {
  approvals_required = 1
}
