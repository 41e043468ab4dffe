#!/usr/bin/env bash
# `make bench`: builds the release binaries, starts the whole shop in one
# `storefront all` process on fresh bench databases and its own Kafka topics,
# gives the catalog ample stock, and drives it through the REST gateway with
# `storefront-bench` (GET /products, cart add+get, checkout with payment
# latency 0, checkout->order lag, peak RSS, pgbench as the machine's
# reference). The report is printed and written to bench/results/latest.json.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"
cd "$STOREFRONT_ROOT"

bash hack/install-build-deps.sh
bash hack/infra-up.sh
echo "==> building release binaries" >&2
cargo build --release -p storefront -p storefront-bench
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
export CHECKOUT_LISTEN=127.0.0.1:15056
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
export CART_CHECKOUT_TOPIC="bench-checkout-$run" CART_CONSUMER_GROUP="bench-cart-$run"
export ORDERS_CHECKOUT_TOPIC="bench-checkout-$run" ORDERS_ORDER_TOPIC="bench-order-$run"
export ORDERS_CONSUMER_GROUP="bench-orders-$run" CHECKOUT_TOPIC="bench-checkout-$run"
export PAYMENT_LATENCY=0ms PAYMENT_FAILURE_RATE=0

"$bin" all >"$SF_LOG_DIR/bench-shop.log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
deadline=$((SECONDS + 90))
until curl -sf -o /dev/null "http://$GATEWAY_LISTEN/readyz"; do
  kill -0 "$pid" 2>/dev/null || { tail -20 "$SF_LOG_DIR/bench-shop.log" >&2; exit 1; }
  ((SECONDS < deadline)) || { echo "ERROR: shop not ready" >&2; exit 1; }
  sleep 0.5
done
# Enough stock that checkouts never run out during the run.
PGPASSWORD=storefront psql -h 127.0.0.1 -p "$PG_PORT" -U storefront -d bench_inventory -qc \
  "UPDATE stock SET on_hand = 100000000" >/dev/null

"$bench" --gateway "http://$GATEWAY_LISTEN" --pid "$pid" \
  --checkout-database-url "$pg/bench_checkout" --orders-database-url "$pg/bench_orders" \
  --pgbench-url "$pg/bench_pgbench" --out "${BENCH_OUT:-bench/results/latest.json}" "$@"
