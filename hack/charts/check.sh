#!/usr/bin/env bash
# `make charts`: both charts through `helm lint --strict` and `helm template`
# (with the values the docs and tests use), and the operator chart's CRD
# compared with crds/storefront.yaml. Needs helm: the one hack/cluster builds
# ($STOREFRONT_DATA_DIR/cluster/bin/helm, after `make cluster-up`) or PATH's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
DATA_DIR="${STOREFRONT_DATA_DIR:-$ROOT/.data}"
if [[ -x "$DATA_DIR/cluster/bin/helm" ]]; then
  helm="$DATA_DIR/cluster/bin/helm"
elif command -v helm >/dev/null; then
  helm="$(command -v helm)"
else
  echo "helm not found: run make cluster-build (builds it) or install helm" >&2
  exit 1
fi

operator="$ROOT/charts/storefront-operator"
shop="$ROOT/charts/storefront"
external=(
  --set postgres.mode=external --set postgres.external.host=127.0.0.1
  --set postgres.external.port=55432 --set postgres.external.sslMode=disable
  --set postgres.external.createAdminSecret=true
  --set postgres.external.adminUsername=storefront --set postgres.external.adminPassword=storefront
  --set redis.mode=external --set redis.external.url=redis://127.0.0.1:56379
  --set kafka.mode=external --set kafka.external.bootstrapServers=127.0.0.1:59092
)
web=(
  --set web.signIn.dev=true --set web.publicUrl=https://shop.example.com
  --set web.signIn.oidc.enabled=true --set web.signIn.oidc.issuer=https://id.example.com
  --set web.signIn.oidc.clientId=storefront --set web.signIn.oidc.clientSecretRef.name=storefront-oidc
  --set gateway.ingress.enabled=true
)

if ! cmp -s "$ROOT/crds/storefront.yaml" "$operator/crds/storefront.yaml"; then
  echo "charts/storefront-operator/crds/storefront.yaml differs from crds/storefront.yaml:" >&2
  echo "  cp crds/storefront.yaml charts/storefront-operator/crds/storefront.yaml" >&2
  exit 1
fi

"$helm" lint --strict "$operator"
"$helm" lint --strict "$operator" --set watchNamespace=shops --set replicas=2 --set serviceMonitor.enabled=true
"$helm" lint --strict "$shop"
"$helm" lint --strict "$shop" "${external[@]}"
"$helm" lint --strict "$shop" "${web[@]}"

"$helm" template storefront-operator "$operator" >/dev/null
"$helm" template storefront-operator "$operator" --set watchNamespace=shops --set replicas=2 >/dev/null
"$helm" template shop "$shop" >/dev/null
"$helm" template shop "$shop" "${external[@]}" >/dev/null
"$helm" template shop "$shop" "${web[@]}" | grep -q 'clientId: "storefront"'
echo "charts: lint and template ok; the chart's CRD is crds/storefront.yaml"
