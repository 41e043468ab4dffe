#!/usr/bin/env bash
# `make lint-packaging`: the Dockerfiles, the Compose file, the kind config
# and the GitHub workflows through their linters (built by install-tools.sh),
# and shellcheck on the packaging scripts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
bin="$(bash "$ROOT/hack/charts/install-tools.sh" | tail -n 1)"

cd "$ROOT"
"$bin/dockerfile-check" docker/*.Dockerfile
"$bin/compose-check" deploy/compose.yaml
"$bin/kind-config-check" deploy/kind.yaml
"$bin/actionlint" -color=false .github/workflows/*.yaml && echo "actionlint: .github/workflows ok"
if command -v shellcheck >/dev/null; then
  shellcheck -x hack/charts/*.sh && echo "shellcheck: hack/charts ok"
else
  echo "shellcheck not installed; skipped" >&2
fi
