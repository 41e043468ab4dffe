# Storefront developer commands. `make run` and `make test` are all a fresh
# machine needs; both install and start what they use.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

.PHONY: help run test bench soak lint crds fmt build infra-up infra-down infra-purge cluster-build cluster-up cluster-down cluster-purge cluster-images

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## The whole shop on this machine (infrastructure + every service) until Ctrl-C
	@bash hack/run.sh

test: ## Every test, against real PostgreSQL, Redis and Kafka started by the scripts
	@bash hack/test.sh

bench: ## Release-build load test through the gateway; report in bench/results/latest.json
	@bash hack/bench.sh

soak: ## Chaos soak: 10,000 checkouts through the gateway, a fault every 10 s, invariants checked; report in bench/results/soak.json
	@bash hack/soak.sh

lint: ## rustfmt, clippy with warnings as errors, shellcheck
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null; then shellcheck -x hack/*.sh hack/lib/*.sh hack/cluster/*.sh hack/charts/*.sh hack/images/*.sh .ci/run; else echo "shellcheck not installed; skipped"; fi

crds: ## Regenerate crds/storefront.yaml from the operator's Rust types (and the operator chart's copy)
	cargo run -q -p storefront-operator -- crd > crds/storefront.yaml
	cp crds/storefront.yaml charts/storefront-operator/crds/storefront.yaml

fmt: ## Format the code
	cargo fmt --all

build: ## Build every crate
	bash hack/install-build-deps.sh
	cargo build --workspace

infra-up: ## Start PostgreSQL, Redis and Kafka on loopback (installs them if missing)
	@bash hack/infra-up.sh

infra-down: ## Stop them (data is kept)
	@bash hack/infra-down.sh

infra-purge: ## Stop them and delete their data
	@bash hack/infra-down.sh --purge

cluster-build: ## Build the pinned Kubernetes control plane (etcd, apiserver, kwok, helm...) once, into the cache
	@bash hack/cluster/build.sh

cluster-up: ## Start the Kubernetes control plane on loopback and its real node (needs root; CLUSTER_REAL_NODE=0: kwok only); kubeconfig in .data/cluster/kubeconfig
	@bash hack/cluster/up.sh

cluster-down: ## Stop it and undo what the real node made on the host (data is kept)
	@bash hack/cluster/down.sh

cluster-images: ## Build hack/images (this checkout's shop and operator, the stores' stand-ins) and load them into the real node
	@bash hack/cluster/images.sh

cluster-purge: ## Stop it and delete its data
	@bash hack/cluster/down.sh --purge

.PHONY: images
images: ## OCI archives (no Docker) of the shop, the operator and the test stand-ins for the real test node (hack/images/README.md)
	@bash hack/images/build.sh

# --- packaging (issue 7): Helm charts, images, Compose, kind ------------------------
.PHONY: charts lint-packaging kind-up kind-test kind-down cluster-demo cluster-demo-down

charts: ## helm lint --strict and helm template of both charts; their CRD is crds/'s
	@bash hack/charts/check.sh

lint-packaging: ## Dockerfiles, deploy/compose.yaml, deploy/kind.yaml and .github/workflows through their linters
	@bash hack/charts/lint.sh

kind-up: ## (needs Docker and kind) A kind cluster from deploy/kind.yaml
	@bash hack/charts/kind-test.sh up

kind-test: ## (needs Docker, kind, kubectl, helm) CI's kind path: images, charts, Ready, GET /api/v1/products
	@bash hack/charts/kind-test.sh all

kind-down: ## Delete the kind cluster
	@bash hack/charts/kind-test.sh down

cluster-demo: ## Both charts on the test cluster's real node: the operator as a pod, the managed example shop Ready, its pages on 127.0.0.1:18081 and its API on 127.0.0.1:18080 (CLUSTER_DEMO_EXIT=1: return once it answers)
	@bash hack/charts/cluster-demo.sh

cluster-demo-down: ## Uninstall what cluster-demo installed
	@bash hack/charts/cluster-demo.sh down
