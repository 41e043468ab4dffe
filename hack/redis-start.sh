#!/usr/bin/env bash
# Starts only the local Redis (e.g. for fault-injection tests). Idempotent.
# Implementation: sf_redis_start in hack/lib/infra.sh.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"

sf_redis_start
