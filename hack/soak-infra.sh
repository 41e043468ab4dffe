#!/usr/bin/env bash
# The chaos soak's own PostgreSQL, Redis and Kafka: the project's infra
# functions (hack/lib/infra.sh) on other loopback ports and another data
# directory, so the soak can kill them without touching the shared instances
# that `make test` and everyone else use.
#
#   hack/soak-infra.sh up | down | purge | env
#   hack/soak-infra.sh kill  postgres|redis|kafka    SIGKILL, as a crash would
#   hack/soak-infra.sh start postgres|redis|kafka    start again (waits until it answers)
#
# Environment: SOAK_DATA_DIR (default $STOREFRONT_DATA_DIR/soak, i.e. .data/soak),
# SOAK_PG_PORT (56432), SOAK_REDIS_PORT (56479), SOAK_KAFKA_PORT (59192),
# SOAK_KAFKA_CONTROLLER_PORT (59193).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$HACK_DIR/.." && pwd -P)"
shared_data_dir="${STOREFRONT_DATA_DIR:-$root/.data}"
export STOREFRONT_DATA_DIR="${SOAK_DATA_DIR:-$shared_data_dir/soak}"
export PG_PORT="${SOAK_PG_PORT:-56432}"
export REDIS_PORT="${SOAK_REDIS_PORT:-56479}"
export KAFKA_PORT="${SOAK_KAFKA_PORT:-59192}"
export KAFKA_CONTROLLER_PORT="${SOAK_KAFKA_CONTROLLER_PORT:-59193}"
# Derived from the ports above, never inherited from a caller whose values
# point at the shared instances.
unset DATABASE_ADMIN_URL REDIS_URL KAFKA_BOOTSTRAP_SERVERS
# shellcheck source=hack/lib/infra.sh
source "$HACK_DIR/lib/infra.sh"

if [[ "$STOREFRONT_DATA_DIR" == "$shared_data_dir" ]]; then
  sf_die "the soak's data directory must not be the shared one ($shared_data_dir)"
fi

# Waits (10 s at most) until nothing listens on 127.0.0.1:$1.
wait_port_closed() {
  local deadline=$((SECONDS + 10))
  while sf_port_open "$1"; do
    ((SECONDS < deadline)) || sf_die "port $1 still open after SIGKILL"
    sleep 0.1
  done
}

kill_postgres() {
  local pid pgid
  pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null)" || pid=""
  if ! sf_pid_alive "$pid"; then
    sf_info "PostgreSQL (soak) not running"
    return 0
  fi
  # The postmaster was started under setsid: its process group is the
  # server and its backends, nothing else. Kill them all at once, as a
  # machine losing power would.
  pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
  if [[ -n "$pgid" && "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]]; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
  else
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait_port_closed "$PG_PORT"
  local deadline=$((SECONDS + 10))
  while sf_pid_alive "$pid"; do
    ((SECONDS < deadline)) || sf_die "PostgreSQL pid $pid survived SIGKILL"
    sleep 0.1
  done
  # Dead, but maybe not yet reaped by init: pg_ctl would take the zombie's
  # pid in the lock file for a running server and wait for it in vain.
  # Same for the socket's lock file.
  rm -f "$PG_DATA/postmaster.pid" "$PG_SOCKET_DIR/.s.PGSQL.$PG_PORT.lock"
  sf_info "PostgreSQL (soak) killed (pid $pid)"
}

kill_redis() {
  local pid
  pid="$(sf_read_pidfile "$REDIS_PIDFILE")" || { sf_info "Redis (soak) not running"; return 0; }
  kill -KILL "$pid" 2>/dev/null || true
  wait_port_closed "$REDIS_PORT"
  sf_info "Redis (soak) killed (pid $pid)"
}

kill_kafka() {
  local pid
  pid="$(sf_kafka_pid)" || { sf_info "Kafka (soak) not running"; return 0; }
  kill -KILL "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while sf_pid_alive "$pid"; do
    ((SECONDS < deadline)) || sf_die "Kafka pid $pid survived SIGKILL"
    sleep 0.1
  done
  rm -f "$KAFKA_PIDFILE"
  sf_info "Kafka (soak) killed (pid $pid)"
}

start_postgres() { sf_pg_start; }
start_redis() { sf_redis_start; }
start_kafka() { sf_kafka_start; }

case "${1:-}" in
  up)
    sf_pg_start
    sf_redis_start
    sf_kafka_start
    ;;
  down)
    sf_kafka_stop
    sf_redis_stop
    sf_pg_stop
    ;;
  purge)
    sf_kafka_stop
    sf_redis_stop
    sf_pg_stop
    sf_log "Purging $STOREFRONT_DATA_DIR"
    rm -rf -- "$STOREFRONT_DATA_DIR"
    ;;
  env)
    # What a caller needs to reach these instances (and to call this script
    # again with the same data directory).
    printf 'export SOAK_DATA_DIR=%q\n' "$STOREFRONT_DATA_DIR"
    printf 'export DATABASE_ADMIN_URL=%q\n' "$DATABASE_ADMIN_URL"
    printf 'export REDIS_URL=%q\n' "$REDIS_URL"
    printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "$KAFKA_BOOTSTRAP_SERVERS"
    ;;
  kill | start)
    case "${2:-}" in
      postgres | redis | kafka) "${1}_$2" ;;
      *) sf_die "expected postgres, redis or kafka after '$1', not '${2:-}'" ;;
    esac
    ;;
  *)
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
