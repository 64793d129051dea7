#!/usr/bin/env bash
# Prints the path of the Terraform binary seb's build and tests use, obtaining
# one without internet access when there is none:
#   1. SEB_TERRAFORM, an explicit path (Terraform or OpenTofu);
#   2. terraform on PATH;
#   3. Terraform 1.5.7 (the last MPL release) built from the Go module proxy
#      into the cache directory, reused across clones and CI runs.
# Progress goes to stderr; only the path goes to stdout.
set -euo pipefail

version=1.5.7
cache_dir=${SEB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/seb}
pinned="$cache_dir/terraform/$version/terraform"

if [ -n "${SEB_TERRAFORM:-}" ]; then
  if [ ! -x "$SEB_TERRAFORM" ]; then
    echo "SEB_TERRAFORM=$SEB_TERRAFORM is not an executable file" >&2
    exit 1
  fi
  echo "$SEB_TERRAFORM"
  exit 0
fi

if found=$(command -v terraform 2>/dev/null); then
  echo "$found"
  exit 0
fi

if [ ! -x "$pinned" ]; then
  echo "terraform: none on PATH; building Terraform $version from the Go module proxy into $(dirname "$pinned") (about 2 minutes, once)" >&2
  mkdir -p "$(dirname "$pinned")"
  tmp=$(mktemp -d "$(dirname "$pinned")/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "github.com/hashicorp/terraform@v$version" >&2
  mv "$tmp/terraform" "$pinned"
fi
echo "$pinned"
