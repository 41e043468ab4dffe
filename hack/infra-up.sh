#!/usr/bin/env bash
# Starts the Storefront local infrastructure (PostgreSQL, Redis, Kafka) on
# 127.0.0.1, installing whatever is missing first. Idempotent: components that
# are already up are left alone ("already running"); a stopped one is started
# on its own. Data: $STOREFRONT_DATA_DIR (default .data/), logs in .data/logs.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [-h|--help]
Starts PostgreSQL :$PG_PORT, Redis :$REDIS_PORT and Kafka :$KAFKA_PORT on 127.0.0.1.
Ports and directories: see hack/infra-env.sh.
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

sf_pg_start
sf_redis_start
sf_kafka_start
sf_infra_summary
