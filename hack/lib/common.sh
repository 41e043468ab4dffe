# shellcheck shell=bash
#
# Small helpers shared by the hack/ scripts. Source it; do not execute it.
#
# NOTE: functions that may be called in an `if`/`||` context (where bash
# disables `set -e`) check their own errors explicitly with `|| return 1`.

[[ -n "${_SF_COMMON_SH:-}" ]] && return 0
_SF_COMMON_SH=1

sf_log()  { printf '==> %s\n' "$*" >&2; }
sf_info() { printf '    %s\n' "$*" >&2; }
sf_warn() { printf 'WARNING: %s\n' "$*" >&2; }
sf_die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

sf_is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Prints the last lines of a log file (if any) to stderr, framed.
sf_tail_log() {
  local file="$1" lines="${2:-40}"
  if [[ -s "$file" ]]; then
    printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2 || true
    printf -- '----- end of %s -----\n' "$file" >&2
  else
    printf '(log file %s is missing or empty)\n' "$file" >&2
  fi
}

# True if something accepts TCP connections on 127.0.0.1:$1.
sf_port_open() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash, on purpose.
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# Shows who listens on a TCP port (best effort, for error messages).
sf_port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null || true
  fi
}

# True if process $1 is alive (a zombie counts as dead).
sf_pid_alive() {
  local pid="${1:-}" stat
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# Reads a pid file; prints the pid if the file exists and the process is alive.
sf_read_pidfile() {
  local file="$1" pid
  [[ -f "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  sf_pid_alive "$pid" || return 1
  printf '%s\n' "$pid"
}

# --- Debian packages ---------------------------------------------------------

sf_pkg_installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

_SF_APT_UPDATED=0

# Installs the given Debian packages that are not installed yet. Runs
# `apt-get update` at most once per process, and only if something is missing.
sf_apt_install() {
  local pkg missing=()
  for pkg in "$@"; do
    sf_pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi

  local sudo=()
  if ! sf_is_root; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      sf_warn "missing Debian packages: ${missing[*]} (run as root to install them)"
      return 1
    fi
  fi

  sf_log "Installing Debian packages: ${missing[*]}"
  if ((_SF_APT_UPDATED == 0)); then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || {
      sf_warn "apt-get update failed"
      return 1
    }
    _SF_APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" || {
    sf_warn "apt-get install ${missing[*]} failed"
    return 1
  }
}

# Like sf_apt_install, but prevents the packages' maintainer scripts from
# starting system services (e.g. redis-server on 6379, a postgres "main"
# cluster on 5432), using the standard /usr/sbin/policy-rc.d mechanism.
# An existing policy-rc.d is left untouched.
sf_apt_install_no_start() {
  local pkg missing=()
  for pkg in "$@"; do
    sf_pkg_installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]} > 0)) || return 0

  local policy=/usr/sbin/policy-rc.d created=0 rc=0
  if [[ ! -e "$policy" ]] && sf_is_root; then
    printf '#!/bin/sh\n# temporary, written by storefront hack/lib/common.sh\nexit 101\n' >"$policy" || return 1
    chmod 0755 "$policy" || return 1
    created=1
  fi
  sf_apt_install "${missing[@]}" || rc=$?
  if ((created)); then
    rm -f "$policy"
  fi
  return "$rc"
}
