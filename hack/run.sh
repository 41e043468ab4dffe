#!/usr/bin/env bash
# `make run`: the whole shop on this machine. Starts the local infrastructure,
# builds the `storefront` binary, runs every service in one process on
# 127.0.0.1, prints one line when all of them answer their health checks, and
# stays up until Ctrl-C. Every service setting can be overridden from the
# environment (see `storefront all --help`). Traces go to an OTLP collector
# when OTEL_EXPORTER_OTLP_ENDPOINT is set, e.g.
#   make run OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317
# (OTLP/gRPC; OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf with :4318 for HTTP).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/infra-env.sh
source "$HACK_DIR/infra-env.sh"
cd "$STOREFRONT_ROOT"

bash hack/install-build-deps.sh
bash hack/infra-up.sh

PROFILE="${PROFILE:-dev}"
echo "==> building storefront ($PROFILE profile)" >&2
cargo build --profile "$PROFILE" --bin storefront
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin_dir="$PROFILE"; [[ "$PROFILE" == dev ]] && bin_dir=debug
bin="$target_dir/$bin_dir/storefront"

pg="postgres://storefront:storefront@127.0.0.1:$PG_PORT"
export LOG_FORMAT="${LOG_FORMAT:-text}"
export METRICS_LISTEN="${METRICS_LISTEN:-127.0.0.1:9464}"
if [[ -z "${JWT_SECRET:-}" ]]; then
  JWT_SECRET="storefront-dev-secret-change-me"
  echo "==> JWT_SECRET not set; using the development secret \"$JWT_SECRET\"" >&2
fi
export JWT_SECRET
export GATEWAY_LISTEN="${GATEWAY_LISTEN:-127.0.0.1:8080}"
export PRODUCT_LISTEN="${PRODUCT_LISTEN:-127.0.0.1:50051}"
export CART_LISTEN="${CART_LISTEN:-127.0.0.1:50052}"
export INVENTORY_LISTEN="${INVENTORY_LISTEN:-127.0.0.1:50053}"
export PAYMENT_LISTEN="${PAYMENT_LISTEN:-127.0.0.1:50054}"
export ORDERS_LISTEN="${ORDERS_LISTEN:-127.0.0.1:50055}"
export CHECKOUT_LISTEN="${CHECKOUT_LISTEN:-127.0.0.1:50056}"
export WEB_LISTEN="${WEB_LISTEN:-127.0.0.1:8081}"
export WEB_PUBLIC_URL="${WEB_PUBLIC_URL:-http://$WEB_LISTEN}"
# The development sign-in (a name, no password) is on here, never in the charts.
export WEB_DEV_SIGN_IN="${WEB_DEV_SIGN_IN:-true}"
# The web passes its visitors' addresses on to the gateway's rate limits.
export GATEWAY_TRUSTED_PROXIES="${GATEWAY_TRUSTED_PROXIES:-127.0.0.1}"
export PRODUCT_DATABASE_URL="${PRODUCT_DATABASE_URL:-sqlite://$STOREFRONT_DATA_DIR/product.db?mode=rwc}"
export CART_DATABASE_URL="${CART_DATABASE_URL:-$pg/cart}"
export INVENTORY_DATABASE_URL="${INVENTORY_DATABASE_URL:-$pg/inventory}"
export PAYMENT_DATABASE_URL="${PAYMENT_DATABASE_URL:-$pg/payment}"
export ORDERS_DATABASE_URL="${ORDERS_DATABASE_URL:-$pg/orders}"
export CHECKOUT_DATABASE_URL="${CHECKOUT_DATABASE_URL:-$pg/checkout}"
export CART_REDIS_URL="${CART_REDIS_URL:-$REDIS_URL}"
export CART_KAFKA_BOOTSTRAP="${CART_KAFKA_BOOTSTRAP:-$KAFKA_BOOTSTRAP_SERVERS}"
export ORDERS_KAFKA_BOOTSTRAP="${ORDERS_KAFKA_BOOTSTRAP:-$KAFKA_BOOTSTRAP_SERVERS}"
export PAYMENT_KAFKA_BOOTSTRAP="${PAYMENT_KAFKA_BOOTSTRAP:-$KAFKA_BOOTSTRAP_SERVERS}"
export INVENTORY_KAFKA_BOOTSTRAP="${INVENTORY_KAFKA_BOOTSTRAP:-$KAFKA_BOOTSTRAP_SERVERS}"
export CHECKOUT_KAFKA_BOOTSTRAP="${CHECKOUT_KAFKA_BOOTSTRAP:-$KAFKA_BOOTSTRAP_SERVERS}"

if [[ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]]; then
  export OTEL_EXPORTER_OTLP_ENDPOINT
  echo "==> exporting traces over OTLP (${OTEL_EXPORTER_OTLP_PROTOCOL:-grpc}) to $OTEL_EXPORTER_OTLP_ENDPOINT" >&2
  tracing_hint="  traces: open your collector's UI (e.g. Jaeger http://127.0.0.1:16686), service storefront-gateway, operation \"POST /api/v1/checkout\""
else
  tracing_hint="  traces: not exported; restart with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 (see README, Tracing)"
fi

"$bin" all &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' INT TERM

gateway="http://$GATEWAY_LISTEN"
shop="$WEB_PUBLIC_URL"
deadline=$((SECONDS + 90))
until curl -sf -o /dev/null "$gateway/readyz" && curl -sf -o /dev/null "http://$WEB_LISTEN/readyz"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    echo "ERROR: storefront exited during start-up (see the log above)" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "ERROR: storefront not ready within 90 s ($gateway/readyz)" >&2
    kill -TERM "$pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done

cat <<READY
Storefront is up: open $shop/ to shop (development sign-in: type any name). Ctrl-C stops it.
  REST API $gateway (metrics http://$METRICS_LISTEN/metrics)
  token:  TOKEN=\$(JWT_SECRET='$JWT_SECRET' $bin token --user alice)
  browse: curl -s $gateway/api/v1/products
  cart:   curl -s -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"product_id":1,"quantity":1}' $gateway/api/v1/cart/items
$tracing_hint
READY
wait "$pid"
