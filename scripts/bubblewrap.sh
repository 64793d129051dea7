#!/usr/bin/env bash
# seb runs Terraform only in a bubblewrap sandbox: install bwrap (Debian's
# bubblewrap package) when it is missing, as make run and make demo need it.
set -euo pipefail
command -v bwrap >/dev/null 2>&1 && exit 0
echo "installing bubblewrap (bwrap), the sandbox seb runs Terraform in" >&2
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if ! ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq bubblewrap >/dev/null); then
  echo "could not install bubblewrap; install it (Debian: apt-get install bubblewrap)" >&2
  exit 1
fi
