#!/usr/bin/env bash
# seb-gate.sh: gate a pipeline on seb. plan -> propose -> wait -> execute,
# and fail on anything but a successful apply of the certified change.
#
# Usage: seb-gate.sh WORKSPACE DIR [NAME=VALUE ...]
#
#   WORKSPACE   the seb workspace
#   DIR         the Terraform configuration to propose (.terraformignore is
#               honoured)
#   NAME=VALUE  Terraform variables
#
# Environment:
#   SEB_SERVER       the seb server's URL (default http://127.0.0.1:8080)
#   SEB_AGENT_TOKEN  an agent token: it plans and proposes
#   SEB_CI_TOKEN     a ci token: it waits for the reviewers and executes
#   SEB_GATE_OUT     where to keep plan.json and proposal.json, seb's answers
#                    (default: a new temporary directory)
#   Any other seb flag as SEB_<FLAG>, e.g. SEB_RATIONALE (propose), SEB_TIMEOUT
#   (wait and execute), SEB_INTERVAL.
#
# Exit status is seb's (see docs/ci.md): 0 only when the certified change
# was applied, or when seb's plan changes nothing; 1 the plan diverged,
# 2 an error, 3 rejected by a reviewer or refused because live state moved,
# 4 the certificate expired, 5 timed out.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 WORKSPACE DIR [NAME=VALUE ...]" >&2
  exit 2
fi
workspace=$1
dir=$2
shift 2
: "${SEB_AGENT_TOKEN:?set SEB_AGENT_TOKEN to a seb agent token}"
: "${SEB_CI_TOKEN:?set SEB_CI_TOKEN to a seb ci token}"
command -v jq >/dev/null || { echo "seb-gate: jq is needed to read seb's JSON" >&2; exit 2; }
# Each step names its own token, and reads seb's output as this script
# expects it.
unset SEB_TOKEN SEB_TOKEN_FILE SEB_JSON

vars=()
for kv in "$@"; do
  vars+=(--var "$kv")
done
out=${SEB_GATE_OUT:-$(mktemp -d)}
mkdir -p "$out"

# fail reports why the gate closed and exits with seb's status.
fail() {
  echo "seb-gate: $2 (seb exit status $1)" >&2
  exit "$1"
}

echo "seb-gate: seb's plan of $dir for workspace $workspace" >&2
SEB_TOKEN=$SEB_AGENT_TOKEN seb plan --json --workspace "$workspace" --dir "$dir" ${vars[@]+"${vars[@]}"} \
  >"$out/plan.json" || fail "$?" "the plan failed"
jq -j .rendered "$out/plan.json" >&2
# Nothing to change is not a failure, and seb refuses an empty proposal.
if [ "$(jq '(.summary.resources | length) + (.summary.outputs | length)' "$out/plan.json")" -eq 0 ]; then
  echo "seb-gate: no changes; nothing to propose" >&2
  exit 0
fi

status=0
SEB_TOKEN=$SEB_AGENT_TOKEN seb propose --json --workspace "$workspace" --dir "$dir" ${vars[@]+"${vars[@]}"} \
  >"$out/proposal.json" || status=$?
proposal=$(jq -r '.id // empty' "$out/proposal.json" 2>/dev/null || true)
[ "$status" -eq 0 ] || fail "$status" "proposal ${proposal:-(none)} was not accepted"
echo "seb-gate: proposal $proposal; waiting for the reviewers" >&2

certificate=$(SEB_TOKEN=$SEB_CI_TOKEN seb wait "$proposal") ||
  fail "$?" "proposal $proposal was not certified"
echo "seb-gate: certificate $certificate; executing" >&2

SEB_TOKEN=$SEB_CI_TOKEN seb execute --follow "$certificate" ||
  fail "$?" "certificate $certificate was not applied"
echo "seb-gate: applied proposal $proposal" >&2
