#!/usr/bin/env bash
# `make run`: the whole shop on this machine. Starts the local infrastructure,
# builds the `storefront` binary, runs every service in one process on
# 127.0.0.1, prints one line when all of them answer their health checks, and
# stays up until Ctrl-C. Every service setting can be overridden from the
# environment (see `storefront all --help`).
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
export PRODUCT_LISTEN="${PRODUCT_LISTEN:-127.0.0.1:50051}"
export INVENTORY_LISTEN="${INVENTORY_LISTEN:-127.0.0.1:50053}"
export PAYMENT_LISTEN="${PAYMENT_LISTEN:-127.0.0.1:50054}"
export PRODUCT_DATABASE_URL="${PRODUCT_DATABASE_URL:-sqlite://$STOREFRONT_DATA_DIR/product.db?mode=rwc}"
export INVENTORY_DATABASE_URL="${INVENTORY_DATABASE_URL:-$pg/inventory}"
export PAYMENT_DATABASE_URL="${PAYMENT_DATABASE_URL:-$pg/payment}"

"$bin" all &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' INT TERM

servers=("http://$PRODUCT_LISTEN" "http://$INVENTORY_LISTEN" "http://$PAYMENT_LISTEN")
deadline=$((SECONDS + 60))
until "$bin" healthcheck "${servers[@]}" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    echo "ERROR: storefront exited during start-up (see the log above)" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "ERROR: storefront not healthy within 60 s" >&2
    kill -TERM "$pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done

echo "Storefront is up: product $PRODUCT_LISTEN, inventory $INVENTORY_LISTEN, payment $PAYMENT_LISTEN (gRPC with reflection), metrics http://$METRICS_LISTEN/metrics. Ctrl-C stops it."
wait "$pid"
