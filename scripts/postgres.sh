#!/usr/bin/env bash
# Run a command with a PostgreSQL for seb's tests: SEB_TEST_POSTGRES when it
# answers, else the one at 127.0.0.1:5432, else a server of its own started
# for the command (initdb into a temporary directory, as the postgres user
# when run as root) and stopped after. The command gets SEB_TEST_POSTGRES
# and SEB_REQUIRE_POSTGRES=1, so the PostgreSQL tests run rather than skip.
# With SEB_INSTALL_POSTGRES=1 (CI), Debian's postgresql package is installed
# when no server binaries are found.
set -euo pipefail

answers() {
  command -v pg_isready >/dev/null 2>&1 || for d in /usr/lib/postgresql/*/bin; do PATH="$d:$PATH"; done
  if command -v psql >/dev/null 2>&1; then
    psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
  else
    return 1
  fi
}

default=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
for url in ${SEB_TEST_POSTGRES:-} "$default"; do
  if answers "$url"; then
    echo "postgres: $url" | sed 's#://\([^:@/]*\):[^@]*@#://\1:***@#' >&2
    SEB_TEST_POSTGRES=$url SEB_REQUIRE_POSTGRES=1 exec "$@"
  fi
done

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] && [ -n "${SEB_INSTALL_POSTGRES:-}" ]; then
  echo "postgres: installing Debian's postgresql package" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$bindir" ]; then
  echo "postgres: none reachable and no server installed (Debian: apt-get install postgresql); its tests will skip" >&2
  exec "$@"
fi

# The server listens on a Unix socket only, in a directory no one else
# may enter: it trusts whoever connects, as a superuser.
dir=$(mktemp -d "${TMPDIR:-/tmp}/seb-postgres.XXXXXX")
chmod 700 "$dir"
as=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root.
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
  chown postgres "$dir"
  as=(runuser -u postgres --)
fi
"${as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync >/dev/null
"${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-k $dir -c listen_addresses= -c fsync=off -c max_connections=300" start >/dev/null
stop() { "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap stop EXIT
url="postgres://postgres@/postgres?host=$dir&sslmode=disable"
echo "postgres: started $url for this run" >&2
SEB_TEST_POSTGRES=$url SEB_REQUIRE_POSTGRES=1 "$@"
