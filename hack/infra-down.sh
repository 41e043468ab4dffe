#!/usr/bin/env bash
# Stops the Storefront local infrastructure (Kafka, Redis, PostgreSQL).
# Idempotent: exits 0 when nothing is running. Keeps data unless --purge,
# which also deletes $STOREFRONT_DATA_DIR.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  -h | --help)
    echo "Usage: $(basename "$0") [--purge]   (--purge also deletes $STOREFRONT_DATA_DIR)"
    exit 0
    ;;
  "") ;;
  *)
    echo "Usage: $(basename "$0") [--purge]" >&2
    exit 2
    ;;
esac

sf_kafka_stop
sf_redis_stop
sf_pg_stop

if ((purge)); then
  case "$STOREFRONT_DATA_DIR" in
    "" | / | "$HOME" | "$STOREFRONT_ROOT")
      sf_die "refusing to purge STOREFRONT_DATA_DIR='$STOREFRONT_DATA_DIR'"
      ;;
  esac
  sf_log "Purging $STOREFRONT_DATA_DIR"
  rm -rf -- "$STOREFRONT_DATA_DIR"
fi
sf_log "Storefront infrastructure is down"
