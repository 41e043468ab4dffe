#!/usr/bin/env bash
# `make bench`: builds the release binaries, starts the whole shop in one
# `storefront all` process on fresh bench databases and its own Kafka topics,
# gives the catalog ample stock, and drives it through the REST gateway with
# `storefront-bench` (GET /products and the web storefront's catalog page beside
# it, cart add+get, checkout with payment
# latency 0, checkout->order lag, peak RSS, pgbench as the machine's
# reference). The report is printed and written to bench/results/latest.json.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"
cd "$STOREFRONT_ROOT"

bash hack/install-build-deps.sh
# The GET phases' load generator (wrk, C, one thread) and taskset.
# shellcheck source=hack/lib/common.sh
source "$HACK_DIR/lib/common.sh"
for pkg in wrk util-linux; do
  sf_pkg_installed "$pkg" || sf_apt_install "$pkg" || sf_die "could not install $pkg"
done
bash hack/infra-up.sh
echo "==> building release binaries" >&2
cargo build --release -p storefront -p storefront-bench -p storefront-operator
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/release/storefront"
bench="$target_dir/release/storefront-bench"

psql_admin() { PGPASSWORD=storefront psql -h 127.0.0.1 -p "$PG_PORT" -U storefront -d postgres -qAt "$@"; }
for db in cart inventory payment orders checkout pgbench; do
  psql_admin -c "DROP DATABASE IF EXISTS bench_$db WITH (FORCE)" -c "CREATE DATABASE bench_$db" >/dev/null
done
run="$(date +%s)"
for topic in "bench-checkout-$run" "bench-order-$run"; do
  sf_kafka_topics --create --if-not-exists --topic "$topic" --partitions 3 --replication-factor 1 >/dev/null
  sf_kafka_topics --create --if-not-exists --topic "$topic.dlq" --partitions 1 --replication-factor 1 >/dev/null
done

pg="postgres://storefront:storefront@127.0.0.1:$PG_PORT"
export JWT_SECRET="bench-secret-$run"
export LOG_LEVEL="${LOG_LEVEL:-warn}" METRICS_LISTEN="127.0.0.1:19464"
export GATEWAY_LISTEN=127.0.0.1:18080 PRODUCT_LISTEN=127.0.0.1:15051 CART_LISTEN=127.0.0.1:15052
export INVENTORY_LISTEN=127.0.0.1:15053 PAYMENT_LISTEN=127.0.0.1:15054 ORDERS_LISTEN=127.0.0.1:15055
export CHECKOUT_LISTEN=127.0.0.1:15056 WEB_LISTEN=127.0.0.1:18081
export WEB_GATEWAY_URL=http://$GATEWAY_LISTEN
export GATEWAY_PRODUCT_URL=http://$PRODUCT_LISTEN GATEWAY_CART_URL=http://$CART_LISTEN
export GATEWAY_CHECKOUT_URL=http://$CHECKOUT_LISTEN GATEWAY_ORDERS_URL=http://$ORDERS_LISTEN
export CART_PRODUCT_URL=http://$PRODUCT_LISTEN CHECKOUT_CART_URL=http://$CART_LISTEN
export CHECKOUT_PRODUCT_URL=http://$PRODUCT_LISTEN CHECKOUT_INVENTORY_URL=http://$INVENTORY_LISTEN
export CHECKOUT_PAYMENT_URL=http://$PAYMENT_LISTEN
# Rate limits out of the way: the load comes from a handful of users and one IP.
export GATEWAY_RATE_LIMIT_PER_USER=1000000 GATEWAY_RATE_LIMIT_PER_USER_BURST=1000000
export GATEWAY_RATE_LIMIT_PER_IP=1000000 GATEWAY_RATE_LIMIT_PER_IP_BURST=1000000
export PRODUCT_DATABASE_URL="sqlite://$STOREFRONT_DATA_DIR/bench-product-$run.db?mode=rwc"
export CART_DATABASE_URL=$pg/bench_cart INVENTORY_DATABASE_URL=$pg/bench_inventory
export PAYMENT_DATABASE_URL=$pg/bench_payment ORDERS_DATABASE_URL=$pg/bench_orders
export CHECKOUT_DATABASE_URL=$pg/bench_checkout
export CART_REDIS_URL=$REDIS_URL CART_CACHE_PREFIX="bench-$run"
export CART_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP_SERVERS ORDERS_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP_SERVERS
export CHECKOUT_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP_SERVERS
export PAYMENT_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP_SERVERS INVENTORY_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP_SERVERS
export CART_CHECKOUT_TOPIC="bench-checkout-$run" CART_CONSUMER_GROUP="bench-cart-$run"
export ORDERS_CHECKOUT_TOPIC="bench-checkout-$run" ORDERS_ORDER_TOPIC="bench-order-$run"
export ORDERS_CONSUMER_GROUP="bench-orders-$run" CHECKOUT_TOPIC="bench-checkout-$run"
export PAYMENT_ORDER_TOPIC="bench-order-$run" PAYMENT_CONSUMER_GROUP="bench-payment-$run"
export INVENTORY_ORDER_TOPIC="bench-order-$run" INVENTORY_CONSUMER_GROUP="bench-inventory-$run"
export PAYMENT_LATENCY=0ms PAYMENT_FAILURE_RATE=0

pid=""
sink_pid=""
reference_pid=""
cleanup() {
  local p
  for p in "$pid" "$sink_pid" "$reference_pid"; do
    if [[ -n "$p" ]]; then
      kill -TERM "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  # This run's catalog (the SQLite file and its journal) and topics, made
  # for it alone.
  rm -f "$STOREFRONT_DATA_DIR/bench-product-$run".db*
  sf_kafka_topics --delete --if-exists --topic "bench-(checkout|order)-$run(\\.dlq)?" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# start_shop LOG: `storefront all` in the background ($pid), waits until ready.
start_shop() {
  "$bin" all >"$SF_LOG_DIR/$1" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 90))
  until curl -sf -o /dev/null "http://$GATEWAY_LISTEN/readyz" && curl -sf -o /dev/null "http://$WEB_LISTEN/readyz"; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$SF_LOG_DIR/$1" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "ERROR: shop not ready" >&2; exit 1; }
    sleep 0.5
  done
}
stop_shop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

# Run 1: tracing off (no OTEL_* variables: nothing exported).
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
start_shop bench-shop.log
# Enough stock that checkouts never run out during the run.
PGPASSWORD=storefront psql -h 127.0.0.1 -p "$PG_PORT" -U storefront -d bench_inventory -qc \
  "UPDATE stock SET on_hand = 100000000" >/dev/null

# The bare axum reference for GET /products, measured beside the gateway.
reference_addr=127.0.0.1:18090
"$bench" --reference-server "$reference_addr" >"$SF_LOG_DIR/bench-reference.log" 2>&1 &
reference_pid=$!
until curl -sf -o /dev/null "http://$reference_addr/api/v1/products"; do
  kill -0 "$reference_pid" 2>/dev/null || { cat "$SF_LOG_DIR/bench-reference.log" >&2; exit 1; }
  sleep 0.2
done

out="${BENCH_OUT:-bench/results/latest.json}"
"$bench" --gateway "http://$GATEWAY_LISTEN" --web "http://$WEB_LISTEN" --pid "$pid" \
  --reference "http://$reference_addr" --reference-pid "$reference_pid" \
  --checkout-database-url "$pg/bench_checkout" --orders-database-url "$pg/bench_orders" \
  --pgbench-url "$pg/bench_pgbench" --out "$out" "$@"
stop_shop
kill -TERM "$reference_pid" 2>/dev/null || true
wait "$reference_pid" 2>/dev/null || true
reference_pid=""

# Tracing on vs off: BENCH_TRACING_ROUNDS (3) rounds, each a fresh shop
# process with nothing exported and then one exporting every span (OTLP/gRPC,
# sampling 1.0) to a sink, GET /products and checkout in each; interleaving
# spreads the machine's drift over both sides. The ratio is the median "on"
# throughput over the median "off" one.
if [[ "${BENCH_TRACING:-1}" != 0 ]]; then
  sink_addr=127.0.0.1:14317
  "$bench" --otlp-sink "$sink_addr" >"$SF_LOG_DIR/bench-otlp-sink.log" 2>&1 &
  sink_pid=$!
  rounds="${BENCH_TRACING_ROUNDS:-3}"
  tracing_dir="$(mktemp -d)"
  for ((round = 1; round <= rounds; round++)); do
    for mode in off on; do
      echo "==> tracing $mode, round $round of $rounds" >&2
      if [[ "$mode" == on ]]; then
        OTEL_EXPORTER_OTLP_ENDPOINT="http://$sink_addr" OTEL_TRACES_SAMPLER=always_on \
          start_shop "bench-shop-tracing-$mode.log"
      else
        start_shop "bench-shop-tracing-$mode.log"
      fi
      "$bench" --gateway "http://$GATEWAY_LISTEN" --pid "$pid" --phases products,checkout \
        --out "$tracing_dir/$mode-$round.json" "$@"
      stop_shop
    done
  done
  kill -TERM "$sink_pid" 2>/dev/null || true
  wait "$sink_pid" 2>/dev/null || true
  sink_pid=""
  cat "$SF_LOG_DIR/bench-otlp-sink.log" >&2
  python3 - "$out" "$tracing_dir" "$rounds" "$SF_LOG_DIR/bench-otlp-sink.log" <<'PY'
import json, re, statistics, sys
out, tracing_dir, rounds, sink_log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
report = json.load(open(out))
def throughput(r, name):
    return next((p["throughput_per_s"] for p in r["phases"] if p.get("phase") == name), None)
runs = {mode: [json.load(open(f"{tracing_dir}/{mode}-{i}.json")) for i in range(1, rounds + 1)]
        for mode in ("off", "on")}
spans = re.findall(r"(\d+) spans received", open(sink_log).read())
tracing = {"exporter": "otlp grpc, sampler always_on", "target_ratio": 0.9, "rounds": rounds,
           "spans_exported": int(spans[-1]) if spans else None, "phases": {}}
for name in ("products", "checkout"):
    off = [throughput(r, name) for r in runs["off"]]
    on = [throughput(r, name) for r in runs["on"]]
    off_m, on_m = statistics.median(off), statistics.median(on)
    ratio = on_m / off_m if off_m else None
    tracing["phases"][name] = {"off_per_s": off, "on_per_s": on, "off_median_per_s": off_m,
                               "on_median_per_s": on_m, "ratio": ratio}
    print(f"tracing {name:<9} off {' '.join(f'{t:.0f}' for t in off)} op/s (median {off_m:.0f})  "
          f"on {' '.join(f'{t:.0f}' for t in on)} op/s (median {on_m:.0f})  "
          f"ratio {ratio or 0:.2f} (target >= 0.9)")
    report.setdefault("targets", []).append({"measure": f"tracing on/off, {name}", "value": ratio,
                                             "target": ">= 0.9", "met": (ratio or 0) >= 0.9})
report["tracing"] = tracing
json.dump(report, open(out, "w"), indent=2)
PY
  rm -rf "$tracing_dir"
fi

# The operator: 100 managed Storefronts at once on the local control plane
# (started here if it is not up; built from its Go modules once, ~10 min
# cold). Report: bench/results/operator.json (BENCH_OPERATOR=0 skips it).
if [[ "${BENCH_OPERATOR:-1}" != 0 ]]; then
  echo "==> operator: 100 Storefronts on the local control plane" >&2
  bash hack/cluster/up.sh >/dev/null
  KUBECONFIG="$STOREFRONT_DATA_DIR/cluster/kubeconfig" "$target_dir/release/storefront-operator-bench" \
    --operator "$target_dir/release/storefront-operator" \
    --out "${BENCH_OPERATOR_OUT:-bench/results/operator.json}"
fi

# The shop on the real node of the test cluster (release images): the time
# from applying a managed Storefront (both charts, stand-in stores) to Ready,
# and the requests that failed during a `helm upgrade` of the image tag.
# Report: bench/results/cluster.json (BENCH_CLUSTER=0 skips it).
if [[ "${BENCH_CLUSTER:-1}" != 0 ]]; then
  echo "==> the shop on the real node: apply -> Ready, and an upgrade under traffic" >&2
  bash hack/cluster/up.sh >/dev/null
  bash hack/cluster/images.sh --profile release
  cluster_out="${BENCH_CLUSTER_OUT:-bench/results/cluster.json}"
  STOREFRONT_E2E_FIGURES="$(realpath -m "$cluster_out")" cargo test -q --release -p storefront-e2e --test real_node -- --nocapture
  cat "$cluster_out"
fi
