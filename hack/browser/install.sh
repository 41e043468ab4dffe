#!/usr/bin/env bash
# Installs what the browser tests (services/storefront/tests/browser.rs) need,
# idempotently: Debian's chromium and chromium-driver, and axe-core from npm
# into a cache outside the repository. Says what it did on stderr and prints
# the environment the tests read on stdout, as `export` lines:
#
#   eval "$(bash hack/browser/install.sh)"
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=hack/lib/common.sh
source "$HACK_DIR/lib/common.sh"

AXE_VERSION="${AXE_VERSION:-4.14.1}"
CACHE_DIR="${STOREFRONT_CACHE_DIR:-${HOME:-/root}/.cache/storefront}/browser"
AXE_DIR="$CACHE_DIR/axe-core-$AXE_VERSION"
AXE_JS="$AXE_DIR/node_modules/axe-core/axe.min.js"
PACKAGES=(chromium chromium-driver)

# Another apt or dpkg run (e.g. one started by hand) holds the dpkg lock;
# installing now would fail, so wait for it (at most 20 minutes).
wait_for_apt() {
  local waited=0
  while pgrep -x 'apt|apt-get|dpkg|unattended-upgr' >/dev/null; do
    ((waited % 30 == 0)) && sf_log "Waiting for a running apt/dpkg to finish ($(pgrep -ax 'apt|apt-get|dpkg' | head -1))"
    ((waited < 1200)) || sf_die "apt/dpkg still running after 20 minutes"
    sleep 5
    waited=$((waited + 5))
  done
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  sf_pkg_installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  sf_log "Already installed: ${PACKAGES[*]} ($(dpkg-query -W -f='${Version}' chromium))"
else
  wait_for_apt
  sf_apt_install "${missing[@]}" || sf_die "could not install: ${missing[*]}"
  sf_log "Installed: ${missing[*]}"
fi
for bin in /usr/bin/chromium /usr/bin/chromedriver; do
  [[ -x "$bin" ]] || sf_die "$bin is missing although its package is installed"
done

if [[ -s "$AXE_JS" ]]; then
  sf_log "axe-core $AXE_VERSION already in $AXE_DIR"
else
  command -v npm >/dev/null || sf_apt_install npm || sf_die "npm is needed to fetch axe-core"
  # Into a temporary folder first, so an interrupted install never leaves a
  # half-filled cache that the next run would take as done.
  mkdir -p "$CACHE_DIR"
  tmp="$(mktemp -d "$CACHE_DIR/.axe-core-$AXE_VERSION.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  npm install --prefix "$tmp" --no-save --no-audit --no-fund --no-package-lock \
    --loglevel=error "axe-core@$AXE_VERSION" >&2 || sf_die "npm install axe-core@$AXE_VERSION failed"
  [[ -s "$tmp/node_modules/axe-core/axe.min.js" ]] || sf_die "axe-core $AXE_VERSION has no axe.min.js"
  rm -rf "$AXE_DIR"
  mv "$tmp" "$AXE_DIR"
  trap - EXIT
  sf_log "Installed axe-core $AXE_VERSION into $AXE_DIR"
fi

printf 'export STOREFRONT_CHROMIUM=%q\n' /usr/bin/chromium
printf 'export STOREFRONT_CHROMEDRIVER=%q\n' /usr/bin/chromedriver
printf 'export STOREFRONT_AXE_JS=%q\n' "$AXE_JS"
