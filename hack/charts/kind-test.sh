#!/usr/bin/env bash
# The kind path of CI (.github/workflows/kind.yaml runs each step by name)
# and of `make kind-up` / `make kind-test` on a machine with Docker, kind,
# kubectl and helm:
#   up        create the kind cluster from deploy/kind.yaml (idempotent)
#   images    build docker/storefront.Dockerfile and docker/operator.Dockerfile
#   load      kind load docker-image both
#   install   helm install the operator chart, then the shop (managed mode)
#   wait      kubectl wait until Storefront shop is Ready
#   smoke     GET /api/v1/products through a port-forward to the gateway: 200
#   diagnose  print what explains a failure (status, events, logs)
#   down      delete the kind cluster
#   all       up images load install wait smoke (diagnose on failure)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
KIND_CLUSTER="${KIND_CLUSTER:-storefront}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
STOREFRONT_IMAGE="${STOREFRONT_IMAGE:-storefront}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-storefront-operator}"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-storefront-system}"
SHOP_NAMESPACE="${SHOP_NAMESPACE:-shop}"
READY_TIMEOUT="${READY_TIMEOUT:-10m}"
SMOKE_PORT="${SMOKE_PORT:-18080}"

log() { printf '==> %s\n' "$*" >&2; }

up() {
  if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    log "kind cluster $KIND_CLUSTER already exists"
  else
    kind create cluster --name "$KIND_CLUSTER" --config "$ROOT/deploy/kind.yaml" --wait 120s
  fi
  kubectl cluster-info --context "kind-$KIND_CLUSTER" >/dev/null
}

images() {
  docker build -f "$ROOT/docker/storefront.Dockerfile" -t "$STOREFRONT_IMAGE:$IMAGE_TAG" "$ROOT"
  docker build -f "$ROOT/docker/operator.Dockerfile" -t "$OPERATOR_IMAGE:$IMAGE_TAG" "$ROOT"
}

load() {
  kind load docker-image --name "$KIND_CLUSTER" "$STOREFRONT_IMAGE:$IMAGE_TAG" "$OPERATOR_IMAGE:$IMAGE_TAG"
}

install() {
  helm upgrade --install storefront-operator "$ROOT/charts/storefront-operator" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace \
    --set image.repository="$OPERATOR_IMAGE" --set image.tag="$IMAGE_TAG" \
    --set image.pullPolicy=Never \
    --wait --timeout 5m
  # Managed mode: PostgreSQL, Redis and Kafka run as StatefulSets in kind.
  helm upgrade --install shop "$ROOT/charts/storefront" \
    --namespace "$SHOP_NAMESPACE" --create-namespace \
    --set image.repository="$STOREFRONT_IMAGE" --set image.tag="$IMAGE_TAG" \
    --set image.pullPolicy=Never
}

wait_ready() {
  kubectl -n "$SHOP_NAMESPACE" wait --for=condition=Ready sf/shop --timeout="$READY_TIMEOUT"
  kubectl -n "$SHOP_NAMESPACE" get sf shop -o wide
}

smoke() {
  local log pid status
  log="$(mktemp)"
  kubectl -n "$SHOP_NAMESPACE" port-forward svc/shop-gateway "$SMOKE_PORT:8080" >"$log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true' RETURN
  for _ in $(seq 1 30); do
    grep -q 'Forwarding from' "$log" && break
    sleep 1
  done
  status="$(curl -sS -o /tmp/products.json -w '%{http_code}' --retry 10 --retry-all-errors --retry-delay 2 \
    "http://127.0.0.1:$SMOKE_PORT/api/v1/products")"
  cat /tmp/products.json; echo
  if [[ "$status" != 200 ]]; then
    log "GET /api/v1/products answered $status, not 200"
    cat "$log" >&2
    return 1
  fi
  grep -q '"products"' /tmp/products.json || { log "no products in the answer"; return 1; }
  log "GET /api/v1/products: 200"
}

diagnose() {
  set +e
  kubectl -n "$SHOP_NAMESPACE" get sf shop -o yaml
  kubectl get pods,deploy,sts,svc -A -o wide
  kubectl -n "$SHOP_NAMESPACE" get events --sort-by=.lastTimestamp | tail -60
  kubectl -n "$OPERATOR_NAMESPACE" logs deploy/storefront-operator --tail=200
  local deployment
  for deployment in $(kubectl -n "$SHOP_NAMESPACE" get deploy -o name); do
    echo "--- $deployment"
    kubectl -n "$SHOP_NAMESPACE" logs "$deployment" --tail=40
  done
  kubectl -n "$SHOP_NAMESPACE" describe pods | tail -200
}

down() {
  kind delete cluster --name "$KIND_CLUSTER"
}

all() {
  up
  images
  load
  install
  if ! { wait_ready && smoke; }; then
    diagnose
    return 1
  fi
}

case "${1:-all}" in
  up) up ;;
  images) images ;;
  load) load ;;
  install) install ;;
  wait) wait_ready ;;
  smoke) smoke ;;
  diagnose) diagnose ;;
  down) down ;;
  all) all ;;
  *) echo "usage: $0 up|images|load|install|wait|smoke|diagnose|down|all" >&2; exit 2 ;;
esac
