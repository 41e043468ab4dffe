#!/usr/bin/env bash
# Starts the local Kubernetes control plane on 127.0.0.1 (building it first if
# needed): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kwok with one fake node. Idempotent: starts only what is down. Prints the
# admin kubeconfig path ($STOREFRONT_DATA_DIR/cluster/kubeconfig).
set -euo pipefail

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/cluster/lib.sh
source "$CLUSTER_DIR/lib.sh"

sf_cluster_build
sf_cluster_up
