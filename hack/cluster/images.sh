#!/usr/bin/env bash
# Builds the images of hack/images and imports them into the real test node
# (only what changed). The shop's and the operator's come from
# target/<profile> (default debug: `cargo build -p storefront -p
# storefront-operator` first).
#   hack/cluster/images.sh [--profile debug|release]
set -euo pipefail

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/cluster/lib.sh
source "$CLUSTER_DIR/lib.sh"

profile=debug
case "${1:-}" in
  "") ;;
  --profile) profile="${2:?--profile needs debug or release}" ;;
  *) sf_die "usage: $0 [--profile debug|release]" ;;
esac
sf_node_load_images "$profile"
