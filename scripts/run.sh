#!/usr/bin/env bash
# make run: the sandbox cloud and seb serve with the demo workspace, on
# 127.0.0.1; prints the URLs and fresh tokens. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

data=.seb
mkdir -p "$data/tokens"
chmod 700 "$data"
stamp=$(date +%Y%m%d%H%M%S)

# One at a time: a second make run must not take over the first one's
# token files and walkthrough.
for port in 8080 8081; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null || true)
  if [ "$code" != "000" ]; then
    echo "make run: something already listens on 127.0.0.1:$port (another make run?); stop it first" >&2
    exit 1
  fi
done

if [ ! -s "$data/sandbox-admin.token" ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$data/sandbox-admin.token"
  chmod 600 "$data/sandbox-admin.token"
fi

bin/sandboxcloud --listen 127.0.0.1:8081 --issuer http://127.0.0.1:8080 --audience sandbox \
  --admin-token-file "$data/sandbox-admin.token" --state "$data/sandbox-state.json" 2> "$data/sandbox.log" &
sandbox=$!
trap 'kill $sandbox 2>/dev/null || true' EXIT

TF_CLI_CONFIG_FILE="$PWD/bin/terraform.rc" bin/seb serve &
seb=$!
trap 'kill $seb $sandbox 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
if ! kill -0 "$seb" 2>/dev/null || ! kill -0 "$sandbox" 2>/dev/null; then
  echo "make run: seb or the sandbox cloud did not start; see the output above and $data/sandbox.log" >&2
  exit 1
fi

# Tokens once the server has made its database.
for role in reviewer agent ci admin; do
  bin/seb tokens create --role "$role" --name "$role-$stamp" > "$data/tokens/$role.token" 2>/dev/null
  chmod 600 "$data/tokens/$role.token"
done

# The demo proposal, waiting for a reviewer: an agent asks for 3 replicas.
export SEB_SERVER=http://127.0.0.1:8080
proposal=$(SEB_TOKEN_FILE="$data/tokens/agent.token" bin/seb propose --workspace sandbox \
  --dir fixtures/terraform/scale --var replicas=3 --rationale "demo: run web with 3 replicas" 2>/dev/null || true)
console="curl -s -X PATCH -H \"Authorization: Bearer \$(cat $data/sandbox-admin.token)\" -H 'Content-Type: application/json'"

cat <<TXT

seb:            http://127.0.0.1:8080   (the reviewer UI; API under /api/v1, OpenAPI at /api/v1/openapi.json)
sandbox cloud:  http://127.0.0.1:8081   (console token in $data/sandbox-admin.token)
reviewer token: $(cat "$data/tokens/reviewer.token")   (shown once; agent, ci and admin tokens are in $data/tokens/)

1. Open http://127.0.0.1:8080/ and sign in with the reviewer token.
2. Approve the demo proposal ${proposal:-(proposing failed: see the log above)}.
3. Apply it as CI:
     SEB_SERVER=$SEB_SERVER SEB_TOKEN_FILE=$data/tokens/ci.token bin/seb execute --proposal ${proposal:-PROPOSAL} --follow
4. Have the agent propose 5 replicas, approve it, then scale web to 7 by hand before applying:
     SEB_SERVER=$SEB_SERVER SEB_TOKEN_FILE=$data/tokens/agent.token bin/seb propose --workspace sandbox --dir fixtures/terraform/scale --var replicas=5
     $console http://127.0.0.1:8081/console/v1/services/\$(curl -s -H "Authorization: Bearer \$(cat $data/sandbox-admin.token)" http://127.0.0.1:8081/console/v1/services | jq -r '.items[0].id') -d '{"replicas":7}'
   Execute it as in 3: seb refuses, and the execution's page shows certified 3 -> 5 beside live 7 -> 5.
TXT

wait $seb
