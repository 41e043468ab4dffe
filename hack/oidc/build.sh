#!/usr/bin/env bash
# Builds, once, the test OpenID provider (hack/oidc: zitadel/oidc's OP, pinned
# by go.mod) into $STOREFRONT_CACHE_DIR/oidc/<hash of go.mod, go.sum and
# main.go>/storefront-oidc and prints that path on stdout. A second run with
# the same sources only prints the path. Go caches are the cluster build's
# (under $STOREFRONT_CACHE_DIR/cluster/go); only the module proxy is needed.
set -euo pipefail

OIDC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/common.sh
source "$OIDC_DIR/../lib/common.sh"

STOREFRONT_CACHE_DIR="${STOREFRONT_CACHE_DIR:-${HOME:-/root}/.cache/storefront}"
hash="$(cat "$OIDC_DIR/go.mod" "$OIDC_DIR/go.sum" "$OIDC_DIR/main.go" | sha256sum | cut -c1-16)"
out_dir="$STOREFRONT_CACHE_DIR/oidc/$hash"
binary="$out_dir/storefront-oidc"

if [[ ! -x "$binary" ]]; then
  command -v go >/dev/null 2>&1 || sf_die "go is not installed (needed to build the test OpenID provider)"
  go_dir="$STOREFRONT_CACHE_DIR/cluster/go"
  export GOPATH="$go_dir" GOMODCACHE="$go_dir/pkg/mod" GOCACHE="$go_dir/cache"
  export GOFLAGS=-mod=mod GOTOOLCHAIN="${STOREFRONT_GOTOOLCHAIN:-local}" CGO_ENABLED=0
  mkdir -p "$out_dir"
  # One build at a time (parallel test binaries may all ask for it).
  exec 9>"$out_dir/build.lock"
  flock -w 600 9 || sf_die "another build holds $out_dir/build.lock"
  if [[ ! -x "$binary" ]]; then
    sf_log "Building the test OpenID provider ($(go version | cut -d' ' -f3)) into $out_dir"
    (cd "$OIDC_DIR" && nice -n 10 go build -trimpath -ldflags="-s -w" -o "$binary.tmp.$$" .) || {
      rm -f "$binary.tmp.$$"
      sf_die "building hack/oidc failed"
    }
    mv "$binary.tmp.$$" "$binary"
  fi
fi
printf '%s\n' "$binary"
