#!/usr/bin/env bash
# `make test`: installs build dependencies, brings up the local infrastructure
# (PostgreSQL, Redis, Kafka), drops test databases left by earlier runs, and
# runs every test of the workspace against the real components.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"
cd "$STOREFRONT_ROOT"

bash hack/install-build-deps.sh
# Chromium, chromedriver and axe-core for the browser tests
# (services/storefront/tests/browser.rs); an assignment, so set -e sees a failure.
browser_env="$(bash hack/browser/install.sh)"
eval "$browser_env"
# The OpenID provider the sign-in tests run against (hack/oidc, built once).
STOREFRONT_OIDC_PROVIDER="$(bash hack/oidc/build.sh)"
export STOREFRONT_OIDC_PROVIDER
bash hack/infra-up.sh
# The Kubernetes control plane of the operator tests and its real node
# (built once into the cache: ~10 min cold); CLUSTER_REAL_NODE=0 leaves the
# node out, and the end-to-end tests on it then fail saying so.
bash hack/cluster/up.sh >/dev/null
# The images the end-to-end tests install on the real node: this checkout's
# shop and operator (debug build) and the stores' stand-ins (hack/images).
cargo build -q -p storefront -p storefront-operator --bins
if [[ "${CLUSTER_REAL_NODE:-1}" != 0 ]]; then
  bash hack/cluster/images.sh
fi
# Its pinned kubectl and helm, and its admin kubeconfig, for every test.
export PATH="$STOREFRONT_DATA_DIR/cluster/bin:$PATH"
export KUBECONFIG="$STOREFRONT_DATA_DIR/cluster/kubeconfig"

# Each test creates its own database named test_*, and the operator tests'
# Storefronts get databases and roles named sf_*; drop what earlier runs left.
psql_admin() { PGPASSWORD=storefront psql -h 127.0.0.1 -p "$PG_PORT" -U storefront -d postgres "$@"; }
leftovers="$(psql_admin -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%' OR datname LIKE 'sf\_%'")"
if [[ -n "$leftovers" ]]; then
  echo "==> dropping $(wc -l <<<"$leftovers") test databases from earlier runs" >&2
  while read -r db; do
    psql_admin -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
  done <<<"$leftovers"
fi
roles="$(psql_admin -Atc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'sf\_%'")"
if [[ -n "$roles" ]]; then
  while read -r role; do
    psql_admin -qc "DROP ROLE IF EXISTS \"$role\"" >/dev/null
  done <<<"$roles"
fi

# Every shop a test starts gets its own Kafka topics (e2e-*, test-*, bench-*
# with a random suffix); delete what earlier runs left, or the broker's
# partition count, and the time a Kafka restart in the fault tests takes,
# grows with every run on a machine.
sf_kafka_topics --delete --if-exists --topic '(e2e|test|bench)-.*' >/dev/null ||
  sf_warn "could not delete the Kafka topics of earlier test runs"

# Unit and integration tests (doc tests have nothing to run). The closing
# line sums every test binary's result.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --lib --bins --tests --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

# The short chaos soak (about a minute of checkouts with a fault every 10 s,
# on its own PostgreSQL, Redis and Kafka): one more test in the total.
soak_passed=0 soak_failed=0
if bash hack/soak.sh --short; then
  soak_passed=1
else
  soak_failed=1
  ((status != 0)) || status=1
fi
awk -v soak_passed="$soak_passed" -v soak_failed="$soak_failed" \
  '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
   END { passed += soak_passed; failed += soak_failed
         printf "total: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
exit "$status"
