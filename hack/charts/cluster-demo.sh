#!/usr/bin/env bash
# `make cluster-demo`: the charts on this machine's test control plane.
#   1. starts the control plane (hack/cluster/up.sh) and PostgreSQL, Redis
#      and Kafka (hack/infra-up.sh);
#   2. installs charts/storefront-operator (namespace storefront-system,
#      watching namespace storefront-demo: a Role there, no ClusterRole) and
#      charts/storefront as Storefront "shop" in external mode on the local
#      PostgreSQL (127.0.0.1:55432), Redis and Kafka;
#   3. runs the operator binary here, as the chart's ServiceAccount (a token
#      from `kubectl create token`, not the admin's credentials), since pods
#      are simulated by kwok and nothing would run in the chart's pod;
#   4. waits for Ready and keeps the operator running until Ctrl-C
#      (CLUSTER_DEMO_EXIT=1: stop once Ready).
# `cluster-demo.sh down` (make cluster-demo-down) uninstalls both releases,
# with the operator running so that its finalizer lets the Storefront go.
# Managed mode can never be Ready here: its PostgreSQL, Redis and Kafka
# would be kwok pods in which nothing listens.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
DATA_DIR="${STOREFRONT_DATA_DIR:-$ROOT/.data}"
CLUSTER_DIR="$DATA_DIR/cluster"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-storefront-system}"
SHOP_NAMESPACE="${SHOP_NAMESPACE:-storefront-demo}"
OPERATOR_LISTEN="${OPERATOR_LISTEN:-127.0.0.1:18081}"
RELEASE=storefront-operator # the chart's full name, and so its ServiceAccount's
ADMIN_URL="postgres://storefront:storefront@127.0.0.1:${PG_PORT:-55432}/postgres"

log() { printf '==> %s\n' "$*" >&2; }

bash hack/cluster/up.sh >/dev/null
export KUBECONFIG="$CLUSTER_DIR/kubeconfig" PATH="$CLUSTER_DIR/bin:$PATH"
sa_kubeconfig="$CLUSTER_DIR/run/cluster-demo-operator.kubeconfig"
operator_log="$DATA_DIR/logs/cluster-demo-operator.log"
operator_bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/storefront-operator"

start_operator() {
  mkdir -p "$DATA_DIR/logs"
  KUBECONFIG="$sa_kubeconfig" POD_NAME=cluster-demo POD_NAMESPACE="$OPERATOR_NAMESPACE" \
    LOG_FORMAT=text "$operator_bin" run --listen="$OPERATOR_LISTEN" --watch-namespace="$SHOP_NAMESPACE" \
    >>"$operator_log" 2>&1 &
  operator_pid=$!
  trap 'kill "$operator_pid" 2>/dev/null || true; wait "$operator_pid" 2>/dev/null || true' EXIT
  log "operator running (pid $operator_pid, log $operator_log, metrics http://$OPERATOR_LISTEN/metrics)"
}

if [[ "${1:-up}" == down ]]; then
  if helm status shop -n "$SHOP_NAMESPACE" >/dev/null 2>&1; then
    [[ -x "$operator_bin" && -f "$sa_kubeconfig" ]] && start_operator
    helm uninstall shop -n "$SHOP_NAMESPACE" --wait --timeout 2m
  fi
  if helm status "$RELEASE" -n "$OPERATOR_NAMESPACE" >/dev/null 2>&1; then
    helm uninstall "$RELEASE" -n "$OPERATOR_NAMESPACE" --wait --timeout 2m
  fi
  kubectl delete namespace "$SHOP_NAMESPACE" "$OPERATOR_NAMESPACE" --ignore-not-found --wait=false
  # The operator never drops databases (a Storefront's deletion keeps the
  # data); the demo's are dropped here.
  prefix="sf_${SHOP_NAMESPACE//-/_}_shop_"
  if command -v psql >/dev/null; then
    for db in $(psql "$ADMIN_URL" -Atc "SELECT datname FROM pg_database WHERE starts_with(datname, '$prefix')"); do
      psql "$ADMIN_URL" -qc "DROP DATABASE \"$db\" WITH (FORCE)" -c "DROP ROLE IF EXISTS \"$db\""
    done
  fi
  log "cluster demo removed (releases, namespaces, topics, databases $prefix*)"
  exit 0
fi

bash hack/infra-up.sh >/dev/null

log "installing charts/storefront-operator into $OPERATOR_NAMESPACE (watching $SHOP_NAMESPACE)"
for ns in "$OPERATOR_NAMESPACE" "$SHOP_NAMESPACE"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
helm upgrade --install "$RELEASE" charts/storefront-operator -n "$OPERATOR_NAMESPACE" \
  --set watchNamespace="$SHOP_NAMESPACE" --wait --timeout 2m >/dev/null

log "installing charts/storefront as Storefront shop in $SHOP_NAMESPACE (external mode)"
helm upgrade --install shop charts/storefront -n "$SHOP_NAMESPACE" \
  --set postgres.mode=external --set postgres.external.host=127.0.0.1 \
  --set postgres.external.port="${PG_PORT:-55432}" --set postgres.external.sslMode=disable \
  --set postgres.external.createAdminSecret=true \
  --set postgres.external.adminUsername=storefront --set postgres.external.adminPassword=storefront \
  --set redis.mode=external --set redis.external.url="redis://127.0.0.1:${REDIS_PORT:-56379}" \
  --set kafka.mode=external --set kafka.external.bootstrapServers="127.0.0.1:${KAFKA_PORT:-59092}" \
  --set kafka.topics.deletionPolicy=Delete >/dev/null

log "building the operator"
bash hack/install-build-deps.sh >/dev/null
cargo build -q -p storefront-operator --bin storefront-operator

# A kubeconfig with the ServiceAccount's token and the cluster's CA.
mkdir -p "$(dirname "$sa_kubeconfig")"
server="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
token="$(kubectl create token "$RELEASE" -n "$OPERATOR_NAMESPACE" --duration=24h)"
rm -f "$sa_kubeconfig"
(
  umask 077
  sa=(kubectl --kubeconfig="$sa_kubeconfig" config)
  "${sa[@]}" set-cluster storefront --server="$server" >/dev/null
  "${sa[@]}" set clusters.storefront.certificate-authority-data "$ca" >/dev/null
  "${sa[@]}" set-credentials "$RELEASE" --token="$token" >/dev/null
  "${sa[@]}" set-context demo --cluster=storefront --user="$RELEASE" --namespace="$SHOP_NAMESPACE" >/dev/null
  "${sa[@]}" use-context demo >/dev/null
)
log "the operator acts as $(kubectl --kubeconfig="$sa_kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username}')"

start_operator

if ! kubectl -n "$SHOP_NAMESPACE" wait --for=condition=Ready sf/shop --timeout="${READY_TIMEOUT:-180s}"; then
  kubectl -n "$SHOP_NAMESPACE" get sf shop -o yaml >&2
  tail -n 40 "$operator_log" >&2
  exit 1
fi
kubectl -n "$SHOP_NAMESPACE" get sf shop -o wide
kubectl -n "$SHOP_NAMESPACE" get deploy
if [[ "${CLUSTER_DEMO_EXIT:-0}" == 1 ]]; then
  log "Storefront shop is Ready; stopping the operator (CLUSTER_DEMO_EXIT=1)"
  exit 0
fi
log "Storefront shop is Ready. The operator keeps reconciling until Ctrl-C; try:"
log "  export KUBECONFIG=$KUBECONFIG"
log "  helm upgrade shop charts/storefront -n $SHOP_NAMESPACE --reuse-values --set services.checkout.replicas=3"
log "  kubectl -n $SHOP_NAMESPACE get sf,deploy"
wait "$operator_pid"
