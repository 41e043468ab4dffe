#!/usr/bin/env bash
# `make soak`: the chaos soak. Starts its own PostgreSQL, Redis and Kafka
# (hack/soak-infra.sh: other ports, other data directory; the shared ones
# are never touched), runs the shop as one `storefront` process per service,
# drives checkouts through the gateway while a fault is injected every
# SOAK_FAULT_EVERY (a service process, PostgreSQL, Redis or Kafka SIGKILLed
# and restarted a few seconds later), lets the shop settle, checks the
# invariants and writes the report. Exit 0 only if every invariant holds.
#
#   hack/soak.sh            the full soak: 10,000 checkouts, a fault every 10 s,
#                           report in bench/results/soak.json
#   hack/soak.sh --short    about 60 s and a few hundred checkouts (make test);
#                           report in the soak's data directory
#   hack/soak.sh [--short] -- FLAGS   extra storefront-soak flags
#
# Environment: SOAK_CHECKOUTS, SOAK_DURATION, SOAK_FAULT_EVERY, SOAK_SETTLE,
# SOAK_CONCURRENCY, SOAK_OUT; STOREFRONT_BIN and SOAK_BIN (built `storefront`
# and `storefront-soak`; default: build them, release when SOAK_RELEASE=1);
# SOAK_KEEP_INFRA=1 leaves the soak's
# infrastructure running afterwards; ports and data directory: hack/soak-infra.sh.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/common.sh
source "$HACK_DIR/lib/common.sh"
cd "$HACK_DIR/.."

short=0
extra=()
while (($#)); do
  case "$1" in
    --short) short=1 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) sf_die "unknown argument '$1' (see hack/soak.sh --help)" ;;
  esac
  shift
done

infra=(bash "$HACK_DIR/soak-infra.sh")
eval "$("${infra[@]}" env)"
soak_data="$SOAK_DATA_DIR"

if ((short)); then
  # Few clients, so that the run lasts its minute and sees about six faults.
  checkouts="${SOAK_CHECKOUTS:-600}" duration="${SOAK_DURATION:-60s}" settle="${SOAK_SETTLE:-120s}"
  concurrency="${SOAK_CONCURRENCY:-6}" out="${SOAK_OUT:-$soak_data/soak-short.json}"
else
  checkouts="${SOAK_CHECKOUTS:-10000}" duration="${SOAK_DURATION:-60m}" settle="${SOAK_SETTLE:-180s}"
  concurrency="${SOAK_CONCURRENCY:-24}" out="${SOAK_OUT:-bench/results/soak.json}"
fi

profile=debug
cargo_flags=()
if [[ "${SOAK_RELEASE:-0}" == 1 ]]; then
  profile=release
  cargo_flags=(--release)
fi
packages=()
[[ -n "${SOAK_BIN:-}" ]] || packages+=(-p storefront-soak)
[[ -n "${STOREFRONT_BIN:-}" ]] || packages+=(-p storefront)
if ((${#packages[@]})); then
  bash "$HACK_DIR/install-build-deps.sh" >/dev/null
  sf_log "building ${packages[*]} ($profile)"
  cargo build -q "${cargo_flags[@]}" "${packages[@]}"
  target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}"
fi
# Copies: a shared target directory may be rebuilt from another checkout
# while the soak runs, and every restart must run the code under test.
mkdir -p "$soak_data.bin"
cp "${STOREFRONT_BIN:-$target_dir/$profile/storefront}" "$soak_data.bin/storefront"
cp "${SOAK_BIN:-$target_dir/$profile/storefront-soak}" "$soak_data.bin/storefront-soak"
bin="$soak_data.bin/storefront"
soak="$soak_data.bin/storefront-soak"

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  if [[ "${SOAK_KEEP_INFRA:-0}" != 1 ]]; then
    "${infra[@]}" down >/dev/null 2>&1 || sf_warn "could not stop the soak's infrastructure"
  fi
}
trap cleanup EXIT

# Every run starts from empty databases and topics.
sf_log "fresh PostgreSQL, Redis and Kafka for the soak in $soak_data"
"${infra[@]}" purge >/dev/null 2>&1
"${infra[@]}" up >/dev/null 2>"$soak_data.up.log" || {
  sf_tail_log "$soak_data.up.log"
  sf_die "the soak's infrastructure did not start"
}

sf_log "soak: $checkouts checkouts, at most $duration, a fault every ${SOAK_FAULT_EVERY:-10s}"
status=0
"$soak" --storefront-bin "$bin" --infra-ctl "$HACK_DIR/soak-infra.sh" \
  --pg-admin-url "$DATABASE_ADMIN_URL" --redis-url "$REDIS_URL" \
  --kafka-bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --data-dir "$soak_data/run" \
  --checkouts "$checkouts" --duration "$duration" --settle "$settle" \
  --concurrency "$concurrency" --fault-every "${SOAK_FAULT_EVERY:-10s}" \
  --out "$out" "${extra[@]}" || status=$?
if ((status == 0)); then
  sf_log "soak passed: every invariant holds (report: $out)"
else
  sf_log "soak FAILED (exit $status; report: $out; logs: $soak_data/run/logs)"
fi
exit "$status"
