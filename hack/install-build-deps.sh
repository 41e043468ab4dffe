#!/usr/bin/env bash
# Installs (idempotently) the Debian packages needed to build the Storefront
# Rust code. Does nothing, not even `apt-get update`, when all are present.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/common.sh
source "$HACK_DIR/lib/common.sh"

export DEBIAN_FRONTEND=noninteractive

BUILD_DEPS=(build-essential cmake pkg-config libssl-dev libcurl4-openssl-dev)

missing=()
for pkg in "${BUILD_DEPS[@]}"; do
  sf_pkg_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  sf_log "Build dependencies already installed: ${BUILD_DEPS[*]}"
  exit 0
fi

sf_apt_install "${missing[@]}" || sf_die "could not install: ${missing[*]}"
sf_log "Build dependencies installed: ${missing[*]}"
