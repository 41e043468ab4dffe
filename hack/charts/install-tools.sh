#!/usr/bin/env bash
# Builds the packaging linters into $STOREFRONT_CACHE_DIR/tools/bin (default
# ~/.cache/storefront/tools/bin) and prints that directory as its last line:
#   actionlint         the GitHub workflows (runs shellcheck on run: steps)
#   dockerfile-check   BuildKit's Dockerfile rules (`docker build --check`)
#   compose-check      the compose-spec loader (`docker compose config`)
#   kind-config-check  kind's v1alpha4 cluster config, strictly
# Everything comes from the Go module proxy at the versions pinned in
# hack/charts/tools/go.mod (and ACTIONLINT_VERSION below); no Docker, no
# release downloads. Idempotent: a stamp of the sources skips the build.
set -euo pipefail

ACTIONLINT_VERSION=v1.7.12

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
tools_dir="${STOREFRONT_CACHE_DIR:-${HOME:-/root}/.cache/storefront}/tools"
bin="$tools_dir/bin"
mkdir -p "$bin"

log() { printf 'install-tools: %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go is not installed (Debian: apt-get install golang-go, or go.dev)"; exit 1; }
# No VCS stamping: the tools are built from inside this repository's work
# tree, whose git state is irrelevant to them (and may be unreadable).
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

stamp_file="$tools_dir/stamp"
stamp="$(
  cd "$here/tools"
  {
    echo "actionlint $ACTIONLINT_VERSION"
    go env GOVERSION
    find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)"
all_there() {
  local tool
  for tool in actionlint dockerfile-check compose-check kind-config-check; do
    [[ -x "$bin/$tool" ]] || return 1
  done
}
if all_there && [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

log "building the packaging linters into $bin (once; 1-3 minutes cold, seconds with the Go build cache)"
(
  cd "$here/tools"
  GOBIN="$bin" go install ./dockerfile-check ./compose-check ./kind-config-check
  # actionlint with its own go.mod (its YAML library must not be unified
  # with the one compose-go needs).
  GOBIN="$bin" go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
) >&2
echo "$stamp" >"$stamp_file"
echo "$bin"
