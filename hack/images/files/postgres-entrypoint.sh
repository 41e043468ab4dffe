#!/bin/sh
# shellcheck shell=sh
#
# Entrypoint of docker.io/storefront-test/postgres:15, the test stand-in for
# the official postgres image (busybox sh; see hack/images/README.md).
#
# The interface it keeps (the one the Storefront operator relies on):
#   POSTGRES_PASSWORD  the superuser's password (required unless
#                      POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER      the superuser made by initdb (default postgres)
#   POSTGRES_DB        a database made on first start (default: POSTGRES_USER)
#   PGDATA             the cluster directory (default /var/lib/postgresql/data);
#                      made if missing, initdb'd if it holds no cluster yet
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once after initdb.
# TCP from anywhere needs a password (scram-sha-256); the unix socket in
# /var/run/postgresql trusts local users (pg_isready, psql -U postgres).
# The server listens on 0.0.0.0:5432 (and ::). SIGTERM or SIGINT makes it
# stop fast (PostgreSQL's "fast" shutdown: sessions are ended, then a
# checkpoint), instead of the default "smart" shutdown that waits for every
# client to go away.
set -eu

die() {
  printf 'postgres-entrypoint: %s\n' "$*" >&2
  exit 1
}

# `docker run IMAGE -c foo=bar` means postgres -c foo=bar.
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi
shift

[ "$(id -u)" != 0 ] || die "runs as uid 999 (the image's user), not root"
id -un >/dev/null 2>&1 || die "uid $(id -u) has no /etc/passwd entry (initdb needs one): run as uid 999"

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
mkdir -p "$PGDATA" || die "cannot create PGDATA $PGDATA (is its parent writable by uid $(id -u)?)"
chmod 0700 "$PGDATA" 2>/dev/null || true

init_cluster() {
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    die "POSTGRES_PASSWORD is empty: set it (or POSTGRES_HOST_AUTH_METHOD=trust, for tests only)"
  fi
  echo "postgres-entrypoint: initializing a cluster in $PGDATA (superuser $user, host auth $auth)"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words.
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" | initdb -D "$PGDATA" --username="$user" --pwfile=/dev/stdin \
      --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-}
  else
    initdb -D "$PGDATA" --username="$user" \
      --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-}
  fi
  printf '\n# storefront-test/postgres: TCP from anywhere\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "\n# storefront-test/postgres\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  # A private server for POSTGRES_DB and the init scripts: no TCP, and its
  # socket in a directory of its own, so that the readiness probe
  # (pg_isready on /var/run/postgresql) fails until the real server is up.
  init_socket_dir="$(mktemp -d /tmp/postgres-init.XXXXXX)"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$init_socket_dir" -w -t 60 start
  export PGHOST="$init_socket_dir" PGUSER="$user" PGDATABASE=postgres
  if [ "$db" != postgres ]; then
    psql -X -q -v ON_ERROR_STOP=1 -v db="$db" <<'EOF'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
EOF
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    # shellcheck disable=SC1090 # the image user's scripts.
    case "$f" in
      *.sh) echo "postgres-entrypoint: running $f" && . "$f" ;;
      *.sql) echo "postgres-entrypoint: running $f" && psql -X -v ON_ERROR_STOP=1 --dbname "$db" -f "$f" ;;
      *.sql.gz) echo "postgres-entrypoint: running $f" && gunzip -c "$f" | psql -X -v ON_ERROR_STOP=1 --dbname "$db" ;;
      *) echo "postgres-entrypoint: ignoring $f" ;;
    esac
  done
  unset PGHOST PGUSER PGDATABASE
  pg_ctl -D "$PGDATA" -m fast -w -t 60 stop
  rm -rf "$init_socket_dir"
  echo "postgres-entrypoint: cluster ready"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  init_cluster
fi

# postgres runs as a child so that SIGTERM (what Kubernetes and runc send)
# can be turned into SIGINT, PostgreSQL's fast shutdown.
postgres "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null || true' QUIT
set +e
while true; do
  wait "$pid"
  status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
