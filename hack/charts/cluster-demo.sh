#!/usr/bin/env bash
# `make cluster-demo`: the shop as a user installs it, on this machine's
# test cluster with its real node (hack/cluster/node.sh):
#   1. starts the control plane and the real node (hack/cluster/up.sh),
#      builds this checkout's shop and operator and loads their images and
#      the stores' stand-ins into the node (hack/cluster/images.sh);
#   2. installs charts/storefront-operator into storefront-system: the
#      operator runs as a pod from its image, with the chart's RBAC;
#   3. applies examples/storefront.yaml (managed PostgreSQL, Redis and Kafka)
#      into storefront-demo, with the images built here: this checkout's
#      shop and the stores' test stand-ins (hack/images/README.md), and no
#      tracing endpoint (the example's collector is not installed here);
#   4. waits until the Storefront is Ready, forwards 127.0.0.1:18080 to its
#      gateway Service and 127.0.0.1:18081 to its web Service (the demo turns
#      the development sign-in on), and prints how to shop and get a token.
# CLUSTER_DEMO_EXIT=1 returns once the shop answers through that forward and
# leaves everything installed. `cluster-demo.sh down` (make
# cluster-demo-down) deletes the shop, uninstalls the operator and deletes
# both namespaces.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
DATA_DIR="${STOREFRONT_DATA_DIR:-$ROOT/.data}"
CLUSTER_DIR="$DATA_DIR/cluster"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-storefront-system}"
SHOP_NAMESPACE="${SHOP_NAMESPACE:-storefront-demo}"
DEMO_PORT="${DEMO_PORT:-18080}"
DEMO_WEB_PORT="${DEMO_WEB_PORT:-18081}"
READY_TIMEOUT="${READY_TIMEOUT:-300s}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '==> %s\n' "$*" >&2; }

bash hack/cluster/up.sh >/dev/null
export KUBECONFIG="$CLUSTER_DIR/kubeconfig" PATH="$CLUSTER_DIR/bin:$PATH"

if [[ "${1:-up}" == down ]]; then
  kubectl -n "$SHOP_NAMESPACE" delete storefront shop --ignore-not-found --wait --timeout=3m
  if helm status storefront-operator -n "$OPERATOR_NAMESPACE" >/dev/null 2>&1; then
    helm uninstall storefront-operator -n "$OPERATOR_NAMESPACE" --wait --timeout 2m
  fi
  kubectl delete namespace "$SHOP_NAMESPACE" "$OPERATOR_NAMESPACE" --ignore-not-found --wait --timeout=3m
  log "cluster demo removed (the shop, its volumes, the operator, both namespaces)"
  exit 0
fi

log "building the shop and the operator, and loading the images into the node"
bash hack/install-build-deps.sh >/dev/null
cargo build -q -p storefront -p storefront-operator --bins
bash hack/cluster/images.sh

# Both namespaces' pods run on the real node.
for ns in "$OPERATOR_NAMESPACE" "$SHOP_NAMESPACE"; do
  kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
  kubectl annotate namespace "$ns" --overwrite \
    scheduler.alpha.kubernetes.io/node-selector=storefront.dev/node=real >/dev/null
done

log "installing charts/storefront-operator into $OPERATOR_NAMESPACE (the operator as a pod)"
helm upgrade --install storefront-operator charts/storefront-operator -n "$OPERATOR_NAMESPACE" \
  --set image.repository=docker.io/library/storefront-operator --set image.tag=dev \
  --wait --timeout 3m >/dev/null
kubectl -n "$OPERATOR_NAMESPACE" get pods -o wide

log "applying examples/storefront.yaml into $SHOP_NAMESPACE (with the images built here)"
started=$SECONDS
kubectl patch --local -f examples/storefront.yaml --type merge -o yaml -p '{
  "spec": {
    "image": { "repository": "docker.io/library/storefront", "tag": "dev" },
    "postgres": { "managed": { "image": "docker.io/storefront-test/postgres:15" } },
    "redis": { "managed": { "image": "docker.io/storefront-test/redis:7" } },
    "kafka": { "managed": { "image": "docker.io/storefront-test/kafka:4" } },
    "web": { "publicUrl": "http://127.0.0.1:'"$DEMO_WEB_PORT"'", "signIn": { "dev": true } },
    "tracing": null
  }
}' | kubectl -n "$SHOP_NAMESPACE" apply -f - >/dev/null

if ! kubectl -n "$SHOP_NAMESPACE" wait --for=condition=Ready sf/shop --timeout="$READY_TIMEOUT"; then
  kubectl -n "$SHOP_NAMESPACE" get sf shop -o yaml >&2
  kubectl -n "$SHOP_NAMESPACE" get pods -o wide >&2
  kubectl -n "$OPERATOR_NAMESPACE" logs deploy/storefront-operator --tail=40 >&2 || true
  exit 1
fi
log "Storefront shop is Ready after $((SECONDS - started)) s"
kubectl -n "$SHOP_NAMESPACE" get sf shop -o wide
kubectl -n "$SHOP_NAMESPACE" get pods -o wide

log "forwarding 127.0.0.1:$DEMO_PORT to service/shop-gateway and 127.0.0.1:$DEMO_WEB_PORT to service/shop-web"
kubectl -n "$SHOP_NAMESPACE" port-forward --address 127.0.0.1 service/shop-gateway "$DEMO_PORT:8080" \
  >"$CLUSTER_DIR/logs/cluster-demo-port-forward.log" 2>&1 &
forward=$!
kubectl -n "$SHOP_NAMESPACE" port-forward --address 127.0.0.1 service/shop-web "$DEMO_WEB_PORT:8081" \
  >"$CLUSTER_DIR/logs/cluster-demo-port-forward-web.log" 2>&1 &
forward_web=$!
trap 'kill "$forward" "$forward_web" 2>/dev/null || true' EXIT
deadline=$((SECONDS + 60))
until curl -fsS --max-time 3 "http://127.0.0.1:$DEMO_PORT/api/v1/products" >/dev/null 2>&1 &&
  curl -fsS --max-time 3 "http://127.0.0.1:$DEMO_WEB_PORT/" >/dev/null 2>&1; do
  if ((SECONDS >= deadline)) || ! kill -0 "$forward" 2>/dev/null || ! kill -0 "$forward_web" 2>/dev/null; then
    cat "$CLUSTER_DIR/logs/cluster-demo-port-forward.log" "$CLUSTER_DIR/logs/cluster-demo-port-forward-web.log" >&2
    log "the shop does not answer through the forwards"
    exit 1
  fi
  sleep 1
done
log "the shop answers at http://127.0.0.1:$DEMO_WEB_PORT/ (pages) and http://127.0.0.1:$DEMO_PORT/api/v1/products (API)"

cat >&2 <<EOF

The shop runs on the real node. Open http://127.0.0.1:$DEMO_WEB_PORT/ in a browser
(development sign-in: type any name). From this machine:
  export KUBECONFIG=$KUBECONFIG PATH=$CLUSTER_DIR/bin:\$PATH
  curl -s http://127.0.0.1:$DEMO_PORT/api/v1/products
A token: the gateway's JWT secret is in the Secret the operator made.
  secret=\$(kubectl -n $SHOP_NAMESPACE get secret shop-jwt -o jsonpath='{.data.secret}' | base64 -d)
  token=\$($TARGET_DIR/debug/storefront token --user alice --secret "\$secret")
  curl -s -X POST -H "Authorization: Bearer \$token" -H 'Content-Type: application/json' \\
    -d '{"product_id":1,"quantity":1}' http://127.0.0.1:$DEMO_PORT/api/v1/cart/items
  curl -s -X POST -H "Authorization: Bearer \$token" -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\
    -d '{"payment_method":"pm_card_visa"}' http://127.0.0.1:$DEMO_PORT/api/v1/checkout
  curl -s -H "Authorization: Bearer \$token" http://127.0.0.1:$DEMO_PORT/api/v1/orders
Remove it all with: make cluster-demo-down
EOF
if [[ "${CLUSTER_DEMO_EXIT:-0}" == 1 ]]; then
  log "CLUSTER_DEMO_EXIT=1: leaving the shop installed; the port-forwards stop here (kubectl -n $SHOP_NAMESPACE port-forward service/shop-web $DEMO_WEB_PORT:8081, and service/shop-gateway $DEMO_PORT:8080, to start them again)"
  exit 0
fi
log "forwarding until Ctrl-C"
wait "$forward"
