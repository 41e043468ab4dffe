#!/usr/bin/env bash
# Builds, once, the pinned control-plane binaries (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok, helm, and kubectl unless the
# machine's is within one minor version) into
# $STOREFRONT_CACHE_DIR/cluster/<versions>/bin. A second run is a no-op.
# Versions: hack/cluster/tools/go.mod. Implementation: hack/cluster/lib.sh.
set -euo pipefail

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/cluster/lib.sh
source "$CLUSTER_DIR/lib.sh"

sf_cluster_build
