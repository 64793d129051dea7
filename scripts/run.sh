#!/usr/bin/env bash
# make run: the sandbox cloud and seb serve with the demo workspace, on
# 127.0.0.1; prints the URLs and fresh tokens. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

data=.seb
mkdir -p "$data/tokens"
chmod 700 "$data"
stamp=$(date +%Y%m%d%H%M%S)

if [ ! -s "$data/sandbox-admin.token" ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$data/sandbox-admin.token"
  chmod 600 "$data/sandbox-admin.token"
fi

bin/sandboxcloud --listen 127.0.0.1:8081 --issuer http://127.0.0.1:8080 --audience sandbox \
  --admin-token-file "$data/sandbox-admin.token" --state "$data/sandbox-state.json" 2> "$data/sandbox.log" &
sandbox=$!
trap 'kill $sandbox 2>/dev/null || true' EXIT

for role in reviewer agent ci admin; do
  bin/seb tokens create --role "$role" --name "$role-$stamp" > "$data/tokens/$role.token" 2>/dev/null
  chmod 600 "$data/tokens/$role.token"
done

cat <<TXT
seb:            http://127.0.0.1:8080   (API under /api/v1, OpenAPI at /api/v1/openapi.json)
sandbox cloud:  http://127.0.0.1:8081   (console token in $data/sandbox-admin.token)
reviewer token: $(cat "$data/tokens/reviewer.token")   (shown once; agent, ci and admin tokens are in $data/tokens/)

Try:  export SEB_SERVER=http://127.0.0.1:8080 SEB_TOKEN_FILE=$data/tokens/agent.token
      bin/seb plan --workspace sandbox --dir fixtures/terraform/scale --var replicas=3
TXT

TF_CLI_CONFIG_FILE="$PWD/bin/terraform.rc" bin/seb serve
