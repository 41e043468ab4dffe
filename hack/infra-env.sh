#!/usr/bin/env bash
# shellcheck shell=bash
#
# Storefront local-infrastructure environment.
#
#   source hack/infra-env.sh          # exports the variables into your shell
#   eval "$(hack/infra-env.sh)"       # same, from any shell: prints `export` lines
#
# Every variable can be overridden by setting it in the environment beforehand.
# Note: when sourced this file deliberately does NOT change shell options
# (no `set -euo pipefail`), so it is safe to source from an interactive shell.

STOREFRONT_ROOT="${STOREFRONT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)}"
STOREFRONT_DATA_DIR="${STOREFRONT_DATA_DIR:-$STOREFRONT_ROOT/.data}"
STOREFRONT_CACHE_DIR="${STOREFRONT_CACHE_DIR:-${HOME:-/root}/.cache/storefront}"

PG_PORT="${PG_PORT:-55432}"
REDIS_PORT="${REDIS_PORT:-56379}"
KAFKA_PORT="${KAFKA_PORT:-59092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-59093}"

DATABASE_ADMIN_URL="${DATABASE_ADMIN_URL:-postgres://storefront:storefront@127.0.0.1:$PG_PORT/postgres}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}"
KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"

STOREFRONT_ENV_VARS=(
  STOREFRONT_ROOT STOREFRONT_DATA_DIR STOREFRONT_CACHE_DIR
  PG_PORT REDIS_PORT KAFKA_PORT KAFKA_CONTROLLER_PORT
  DATABASE_ADMIN_URL REDIS_URL KAFKA_BOOTSTRAP_SERVERS
)
export "${STOREFRONT_ENV_VARS[@]}"

# Prints one `export NAME=value` line per variable (shell-quoted).
storefront_print_env() {
  local name
  for name in "${STOREFRONT_ENV_VARS[@]}"; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done
}

# Executed rather than sourced: print the export lines.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  storefront_print_env
fi
