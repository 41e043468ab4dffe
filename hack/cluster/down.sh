#!/usr/bin/env bash
# Stops the local Kubernetes control plane (idempotent). `--purge` also
# deletes its data ($STOREFRONT_DATA_DIR/cluster); the build cache is kept.
set -euo pipefail

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/cluster/lib.sh
source "$CLUSTER_DIR/lib.sh"

purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *) sf_die "usage: $0 [--purge]" ;;
esac

sf_cluster_down "$purge"
if ((purge)); then
  sf_log "Deleting $CLUSTER_DATA_DIR"
  rm -rf "$CLUSTER_DATA_DIR"
fi
