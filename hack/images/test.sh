#!/usr/bin/env bash
# Runs the images hack/images/build.sh makes, for real, with runc: each one
# from its OCI archive (umoci unpack), as the Storefront operator's pods run
# it (its user, fsGroup-like volume, capabilities dropped, no new privileges),
# in a network namespace of its own, checked from the host through
# `ip netns exec`. Nothing listens outside those namespaces.
#
#   hack/images/test.sh [--no-build] [--profile debug|release] [NAME...]
#
# NAME: images to test (default: every one build.sh builds; coredns needs
# COREDNS_BIN, as for build.sh). Without --no-build, build.sh runs first
# (cached images cost nothing). If /tmp/nodebin/containerd and
# /tmp/nodebin/ctr exist (override: IMAGES_TEST_CONTAINERD, IMAGES_TEST_CTR),
# a private containerd (root, state and socket under /tmp/images-ctrd) then
# imports every archive and the names are checked; it is stopped afterwards.
#
# Everything it makes (containers, network namespaces, bundles, the private
# containerd) is removed on exit, also on failure; IMAGES_TEST_KEEP=1 keeps
# the bundles and each container's console.log under /tmp/sf-images-test.*.
set -euo pipefail

SF_IMAGES_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/common.sh
source "$SF_IMAGES_SRC/../lib/common.sh"
# shellcheck source=hack/images/lib.sh
source "$SF_IMAGES_SRC/lib.sh"

BUILD=1
BUILD_ARGS=()
NAMES=()
while (($# > 0)); do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --profile) BUILD_ARGS+=(--profile "${2:-}"); shift 2 || sf_die "--profile needs a value" ;;
    --profile=* | --release) BUILD_ARGS+=("$1"); shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) sf_die "unknown option $1 (see --help)" ;;
    *) sf_image_ref "$1" >/dev/null || exit 1; NAMES+=("$1"); shift ;;
  esac
done

sf_is_root || sf_die "test.sh runs as root (runc, network namespaces)"
for tool in runc umoci jq ip ss; do
  command -v "$tool" >/dev/null 2>&1 || sf_die "$tool is missing (apt-get install runc umoci jq iproute2)"
done

CONTAINERD_BIN="${IMAGES_TEST_CONTAINERD:-/tmp/nodebin/containerd}"
CTR_BIN="${IMAGES_TEST_CTR:-/tmp/nodebin/ctr}"
CTRD_DIR=/tmp/images-ctrd
POD_IP=192.0.2.10 # TEST-NET-1, on a veth inside each namespace
PSQL=/usr/lib/postgresql/15/bin/psql
RUN_ID="sfimg$$"
TEST_DIR="$(mktemp -d /tmp/sf-images-test.XXXXXX)"
RUNC=(runc --root "$TEST_DIR/runc")
CONTAINERS=()
NETNSES=()
NS=""
CTRD_PID=""
RESULTS=()

cleanup() {
  local rc=$? id ns
  set +e
  for id in "${CONTAINERS[@]}"; do
    "${RUNC[@]}" kill "$id" KILL >/dev/null 2>&1
    "${RUNC[@]}" delete --force "$id" >/dev/null 2>&1
  done
  for ns in "${NETNSES[@]}"; do
    ip netns delete "$ns" >/dev/null 2>&1
  done
  _stop_containerd
  if [[ -n "${IMAGES_TEST_KEEP:-}" ]]; then
    sf_info "kept $TEST_DIR (bundles and console.log of each container)"
  else
    rm -rf "$TEST_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

_pass() {
  RESULTS+=("PASS  $*")
  sf_info "ok: $*"
}

# Fails the run: message, then the tail of container log $2 if given.
_fail() {
  RESULTS+=("FAIL  $1")
  printf 'FAIL: %s\n' "$1" >&2
  [[ -z "${2:-}" ]] || sf_tail_log "$2" 60
  _summary
  exit 1
}

_summary() {
  sf_log "hack/images/test.sh summary"
  local line
  for line in "${RESULTS[@]}"; do
    printf '    %s\n' "$line" >&2
  done
}

# --- bundles, namespaces, containers -------------------------------------------

# Unpacks image $1's archive into a new bundle; prints the bundle directory.
_bundle() {
  local name="$1" archive ref dir
  archive="$(sf_image_archive "$name")"
  ref="$(sf_image_ref "$name")"
  [[ -f "$archive" ]] || sf_die "$archive is missing (hack/images/build.sh $name)"
  dir="$(mktemp -d "$TEST_DIR/$name.XXXX")"
  mkdir "$dir/layout"
  tar -xf "$archive" -C "$dir/layout"
  [[ "$(jq -r '.manifests[0].annotations["io.containerd.image.name"]' "$dir/layout/index.json")" == "$ref" ]] ||
    _fail "$name: the archive's index does not name $ref"
  umoci unpack --image "$dir/layout:${ref##*:}" "$dir/bundle" >/dev/null 2>"$dir/umoci.log" ||
    _fail "$name: umoci unpack failed" "$dir/umoci.log"
  rm -rf "$dir/layout"
  printf '%s\n' "$dir/bundle"
}

# A network namespace with lo and eth0 holding $POD_IP (a non-loopback
# address, so "listens on every address" and "no protected mode" are tested
# for real; eth0 is one end of a veth pair whose other end stays in the
# namespace too). Sets NS to its name (no subshell: cleanup must see it).
_netns() {
  local ns="$RUN_ID-$1"
  NETNSES+=("$ns")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name eth0-peer
  ip -n "$ns" addr add "$POD_IP/24" dev eth0
  ip -n "$ns" link set eth0-peer up
  ip -n "$ns" link set eth0 up
  NS="$ns"
}

# A directory like a volume under fsGroup $1: group $1, setgid, group-writable.
_volume() {
  local dir
  dir="$(mktemp -d "$TEST_DIR/volume.XXXX")"
  chown "0:$1" "$dir"
  chmod 2775 "$dir"
  printf '%s\n' "$dir"
}

# Rewrites bundle $1's config.json like a pod's container. Settings come from
# variables: C_USER (uid, also gid and supplementary group: runAsUser,
# runAsGroup, fsGroup), C_NETNS, C_READONLY (true/false), C_CAPS (JSON list,
# default none: capabilities drop ALL), C_ARGS (JSON list; replaces the
# process args), C_ENV (JSON list, appended), C_MOUNTS (JSON list of
# {dst,src,ro}). Volumes umoci turned into tmpfs mounts are dropped (the
# test mounts its own).
_configure() {
  local bundle="$1" hosts="$1/hosts"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n%s\tsf-test\n' "$POD_IP" >"$hosts"
  jq --argjson uid "${C_USER:-null}" --arg netns "${C_NETNS:-}" --argjson ro "${C_READONLY:-false}" \
    --argjson caps "${C_CAPS:-[]}" --argjson args "${C_ARGS:-null}" --argjson env "${C_ENV:-[]}" \
    --argjson mounts "${C_MOUNTS:-[]}" --arg hosts "$hosts" '
      .process.terminal = false
      | (if $uid == null then . else .process.user = {uid: $uid, gid: $uid, additionalGids: [$uid]} end)
      | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps, inheritable: [], ambient: []}
      | .process.noNewPrivileges = true
      | del(.process.rlimits)
      | (if $args == null then . else .process.args = $args end)
      | .process.env += $env
      | .hostname = "sf-test"
      | .root.readonly = $ro
      | .mounts |= map(select(.source != "none"))
      | .mounts += [{destination: "/etc/hosts", type: "bind", source: $hosts, options: ["rbind", "ro"]}]
      | .mounts += ($mounts | map({destination: .dst, type: "bind", source: .src,
                                   options: ["rbind", (if .ro then "ro" else "rw" end)]}))
      | (if $netns == "" then . else
           .linux.namespaces |= map(if .type == "network" then . + {path: ("/var/run/netns/" + $netns)} else . end)
         end)' "$bundle/config.json" >"$bundle/config.json.new"
  mv "$bundle/config.json.new" "$bundle/config.json"
}

# Starts bundle $2 as container $1 in the background; its output goes to
# $2/../console.log.
_start() {
  local id="$RUN_ID-$1" bundle="$2"
  CONTAINERS+=("$id")
  "${RUNC[@]}" run --detach --bundle "$bundle" "$id" >"$bundle/../console.log" 2>&1 </dev/null ||
    _fail "$1: runc run failed" "$bundle/../console.log"
}

# Runs bundle $2 as container $1 in the foreground; output in $2/../console.log.
_run() {
  local id="$RUN_ID-$1" bundle="$2"
  CONTAINERS+=("$id")
  "${RUNC[@]}" run --bundle "$bundle" "$id" >"$bundle/../console.log" 2>&1 </dev/null
}

_status() {
  "${RUNC[@]}" state "$RUN_ID-$1" 2>/dev/null | jq -r .status 2>/dev/null || echo gone
}

# Runs a command in container $1 (as its user, like an exec probe).
_exec() {
  local id="$RUN_ID-$1"
  shift
  "${RUNC[@]}" exec "$id" "$@"
}

# Waits up to $2 s until `$3...` succeeds, while container $1 runs.
_wait_for() {
  local name="$1" timeout="$2" deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [[ "$(_status "$name")" == running ]] || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# Sends SIGTERM to container $1 and waits (up to $2 s) for it to stop; sets
# STOP_SECONDS. Then deletes it.
_term() {
  local name="$1" timeout="$2" start=$SECONDS
  "${RUNC[@]}" kill "$RUN_ID-$name" TERM
  while [[ "$(_status "$name")" == running ]]; do
    ((SECONDS - start < timeout)) || return 1
    sleep 0.2
  done
  STOP_SECONDS=$((SECONDS - start))
  "${RUNC[@]}" delete "$RUN_ID-$name" >/dev/null 2>&1 || true
}

_image_user() {
  jq -r '"\(.process.user.uid):\(.process.user.gid)"' "$1/config.json"
}

_image_args() {
  jq -c .process.args "$1/config.json"
}

_in_ns() {
  local ns="$1"
  shift
  ip netns exec "$ns" "$@"
}

_tcp_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash.
  ip netns exec "$1" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null
}

# --- the images ----------------------------------------------------------------------

# storefront / storefront-operator: the image's own user and command, a
# read-only root filesystem, no capabilities; --help must run (every shared
# library is there).
_test_shop_binary() {
  local name="$1" bin="$2" cmd="$3" bundle
  bundle="$(_bundle "$name")"
  [[ "$(_image_user "$bundle")" == 65532:65532 ]] || _fail "$name: image user is $(_image_user "$bundle"), not 65532:65532"
  [[ "$(_image_args "$bundle")" == "[\"/usr/local/bin/$bin\",\"$cmd\"]" ]] ||
    _fail "$name: entrypoint+cmd is $(_image_args "$bundle")"
  _pass "$name: user 65532:65532, command /usr/local/bin/$bin $cmd"
  C_READONLY=true C_ARGS="[\"/usr/local/bin/$bin\",\"--help\"]" _configure "$bundle"
  _run "$name" "$bundle" || _fail "$name: $bin --help failed" "$bundle/../console.log"
  grep -q 'Usage:' "$bundle/../console.log" || _fail "$name: $bin --help printed no usage" "$bundle/../console.log"
  "${RUNC[@]}" delete "$RUN_ID-$name" >/dev/null 2>&1 || true
  _pass "$name: '$bin --help' runs as 65532 on a read-only root filesystem"
}

_test_storefront() { _test_shop_binary storefront storefront all; }
_test_storefront_operator() { _test_shop_binary storefront-operator storefront-operator run; }

# pause: PID 1 of its own PID namespace, read-only root; SIGTERM ends it.
_test_pause() {
  local bundle
  bundle="$(_bundle pause)"
  [[ "$(_image_user "$bundle")" == 65535:65535 ]] || _fail "pause: image user is $(_image_user "$bundle")"
  C_READONLY=true _configure "$bundle"
  _start pause "$bundle"
  sleep 1
  [[ "$(_status pause)" == running ]] || _fail "pause: not running after 1 s" "$bundle/../console.log"
  _term pause 5 || _fail "pause: still running 5 s after SIGTERM" "$bundle/../console.log"
  grep -q 'got SIGTERM' "$bundle/../console.log" || _fail "pause: did not report SIGTERM" "$bundle/../console.log"
  _pass "pause: runs as 65535 on a read-only root, exits ${STOP_SECONDS}s after SIGTERM"
}

_pg_psql() {
  local ns="$1" url="$2"
  shift 2
  _in_ns "$ns" "$PSQL" -X -q -At -v ON_ERROR_STOP=1 "$url" "$@"
}

# postgres: the operator's env (POSTGRES_USER/POSTGRES_PASSWORD from its
# Secret, PGDATA below the volume), uid 999 with fsGroup 999; its probe
# (pg_isready -U postgres); a password login over TCP; data kept over a
# restart; a fast stop on SIGTERM. Then POSTGRES_DB with another superuser.
_test_postgres() {
  local ns volume bundle pw user_env url log
  _netns postgres
  ns="$NS"
  volume="$(_volume 999)"
  pw="pw-$RANDOM$RANDOM"
  bundle="$(_bundle postgres)"
  [[ "$(_image_user "$bundle")" == 999:999 ]] || _fail "postgres: image user is $(_image_user "$bundle")"
  user_env="[\"POSTGRES_USER=postgres\",\"POSTGRES_PASSWORD=$pw\",\"PGDATA=/var/lib/postgresql/data/pgdata\"]"
  C_USER=999 C_NETNS="$ns" C_ENV="$user_env" \
    C_MOUNTS="[{\"dst\":\"/var/lib/postgresql/data\",\"src\":\"$volume\",\"ro\":false}]" _configure "$bundle"
  log="$bundle/../console.log"
  _start postgres "$bundle"
  _wait_for postgres 90 _exec postgres pg_isready -U postgres || _fail "postgres: pg_isready -U postgres never succeeded" "$log"
  _pass "postgres: first start (initdb) ready for the probe 'pg_isready -U postgres'"

  url="postgresql://postgres:$pw@$POD_IP:5432/postgres"
  [[ "$(_pg_psql "$ns" "$url" -c 'SELECT current_user')" == postgres ]] ||
    _fail "postgres: password login over TCP ($POD_IP) failed" "$log"
  _pg_psql "$ns" "$url" -c 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)' || _fail "postgres: could not write" "$log"
  if _pg_psql "$ns" "postgresql://postgres:wrong@$POD_IP:5432/postgres" -c 'SELECT 1' 2>/dev/null ||
    _pg_psql "$ns" "postgresql://postgres:wrong@127.0.0.1:5432/postgres" -c 'SELECT 1' 2>/dev/null; then
    _fail "postgres: a wrong password was accepted over TCP" "$log"
  fi
  [[ "$(_pg_psql "$ns" "$url" -c 'SHOW password_encryption')" == scram-sha-256 ]] || _fail "postgres: not scram-sha-256"
  [[ "$(_exec postgres id -u)" == 999 ]] || _fail "postgres: server not running as uid 999"
  _in_ns "$ns" ss -Hltn | grep -q '0.0.0.0:5432' || _fail "postgres: not listening on 0.0.0.0:5432"
  _pass "postgres: psql password login (scram-sha-256) from outside, wrong password refused, listens on 0.0.0.0:5432 as 999"

  _term postgres 20 || _fail "postgres: still running 20 s after SIGTERM" "$log"
  if ! grep -q 'fast shutdown request' "$log" || ! grep -q 'database system is shut down' "$log"; then
    _fail "postgres: SIGTERM did not make a clean fast shutdown" "$log"
  fi
  _pass "postgres: SIGTERM -> fast shutdown, clean, in ${STOP_SECONDS}s"

  # Restart: a new container on the same volume.
  bundle="$(_bundle postgres)"
  C_USER=999 C_NETNS="$ns" C_ENV="$user_env" \
    C_MOUNTS="[{\"dst\":\"/var/lib/postgresql/data\",\"src\":\"$volume\",\"ro\":false}]" _configure "$bundle"
  log="$bundle/../console.log"
  _start postgres "$bundle"
  _wait_for postgres 60 _exec postgres pg_isready -U postgres || _fail "postgres: not ready after a restart" "$log"
  if grep -q 'initializing a cluster' "$log"; then
    _fail "postgres: initdb ran again on existing data" "$log"
  fi
  [[ "$(_pg_psql "$ns" "$url" -c 'SELECT x FROM kept')" == 42 ]] || _fail "postgres: data lost over a restart" "$log"
  _term postgres 20 || _fail "postgres: still running 20 s after SIGTERM (restart)" "$log"
  _pass "postgres: restart on the same volume keeps the data (no second initdb)"

  # POSTGRES_DB and a superuser other than postgres.
  volume="$(_volume 999)"
  bundle="$(_bundle postgres)"
  C_USER=999 C_NETNS="$ns" \
    C_ENV="[\"POSTGRES_USER=admin\",\"POSTGRES_PASSWORD=$pw\",\"POSTGRES_DB=shop\",\"PGDATA=/var/lib/postgresql/data/pgdata\"]" \
    C_MOUNTS="[{\"dst\":\"/var/lib/postgresql/data\",\"src\":\"$volume\",\"ro\":false}]" _configure "$bundle"
  log="$bundle/../console.log"
  _start postgres "$bundle"
  _wait_for postgres 90 _exec postgres pg_isready -U postgres || _fail "postgres: POSTGRES_DB run never ready" "$log"
  [[ "$(_pg_psql "$ns" "postgresql://admin:$pw@$POD_IP:5432/shop" -c 'SELECT current_database() || current_user')" == shopadmin ]] ||
    _fail "postgres: POSTGRES_USER=admin POSTGRES_DB=shop login failed" "$log"
  _term postgres 20 || _fail "postgres: still running 20 s after SIGTERM (POSTGRES_DB)" "$log"
  _pass "postgres: POSTGRES_USER=admin + POSTGRES_DB=shop"
}

# redis: the operator's args (--appendonly yes), uid 999 with fsGroup 999,
# its probe (redis-cli ping), reachable on a non-loopback address (bind all,
# protected mode off), data on /data kept over a restart.
_test_redis() {
  local ns volume bundle log cli
  _netns redis
  ns="$NS"
  volume="$(_volume 999)"
  bundle="$(_bundle redis)"
  [[ "$(_image_user "$bundle")" == 999:999 ]] || _fail "redis: image user is $(_image_user "$bundle")"
  [[ "$(jq -r .process.cwd "$bundle/config.json")" == /data ]] || _fail "redis: working directory is not /data"
  local args
  args="$(jq -c '[.process.args[0], "--appendonly", "yes"]' "$bundle/config.json")"
  C_USER=999 C_NETNS="$ns" C_ARGS="$args" C_MOUNTS="[{\"dst\":\"/data\",\"src\":\"$volume\",\"ro\":false}]" _configure "$bundle"
  log="$bundle/../console.log"
  _start redis "$bundle"
  _wait_for redis 30 _exec redis redis-cli ping || _fail "redis: 'redis-cli ping' never answered" "$log"
  [[ "$(_exec redis redis-cli ping)" == PONG ]] || _fail "redis: probe did not get PONG" "$log"
  cli=(_in_ns "$ns" redis-cli -h "$POD_IP" -p 6379)
  [[ "$("${cli[@]}" ping)" == PONG ]] || _fail "redis: no PONG from $POD_IP:6379 (bind/protected mode)" "$log"
  "${cli[@]}" set kept 42 >/dev/null
  [[ "$("${cli[@]}" config get appendonly | tail -n 1)" == yes ]] || _fail "redis: appendonly is not yes" "$log"
  [[ "$("${cli[@]}" config get protected-mode | tail -n 1)" == no ]] || _fail "redis: protected-mode is on" "$log"
  [[ "$("${cli[@]}" config get dir | tail -n 1)" == /data ]] || _fail "redis: dir is not /data" "$log"
  [[ "$(_exec redis id -u)" == 999 ]] || _fail "redis: not running as uid 999"
  [[ -d "$volume/appendonlydir" ]] || _fail "redis: no appendonlydir on the volume" "$log"
  _pass "redis: '--appendonly yes' passed through, PING/SET from $POD_IP (protected mode off), AOF in /data, uid 999"
  _term redis 15 || _fail "redis: still running 15 s after SIGTERM" "$log"
  grep -q 'ready to exit' "$log" || _fail "redis: no clean exit on SIGTERM" "$log"
  _pass "redis: SIGTERM -> clean exit in ${STOP_SECONDS}s"

  bundle="$(_bundle redis)"
  C_USER=999 C_NETNS="$ns" C_ARGS="$args" C_MOUNTS="[{\"dst\":\"/data\",\"src\":\"$volume\",\"ro\":false}]" _configure "$bundle"
  log="$bundle/../console.log"
  _start redis "$bundle"
  _wait_for redis 30 _exec redis redis-cli ping || _fail "redis: not answering after a restart" "$log"
  [[ "$("${cli[@]}" get kept)" == 42 ]] || _fail "redis: data lost over a restart" "$log"
  _term redis 15 || _fail "redis: still running 15 s after SIGTERM (restart)" "$log"
  _pass "redis: restart on the same volume keeps the data (AOF)"
}

# The env the operator gives its managed Kafka (operator/src/children.rs),
# with an advertised listener that resolves inside the test.
_kafka_env() {
  jq -nc '[
    "KAFKA_NODE_ID=1",
    "KAFKA_PROCESS_ROLES=broker,controller",
    "KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093",
    "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092",
    "KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "KAFKA_CONTROLLER_QUORUM_VOTERS=1@localhost:9093",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE=false",
    "KAFKA_LOG_DIRS=/var/lib/kafka/data/logs"
  ]'
}

# kafka: the operator's env, uid 1000 with fsGroup 1000; its probe (TCP
# 9092); a topic created, listed, written and read with the image's own
# CLI; a clean stop on SIGTERM; a restart on the formatted volume.
_test_kafka() {
  local ns volume bundle log topics bs=localhost:9092
  _netns kafka
  ns="$NS"
  volume="$(_volume 1000)"
  bundle="$(_bundle kafka)"
  [[ "$(_image_user "$bundle")" == 1000:1000 ]] || _fail "kafka: image user is $(_image_user "$bundle")"
  C_USER=1000 C_NETNS="$ns" C_ENV="$(_kafka_env)" \
    C_MOUNTS="[{\"dst\":\"/var/lib/kafka/data\",\"src\":\"$volume\",\"ro\":false}]" _configure "$bundle"
  log="$bundle/../console.log"
  local start=$SECONDS
  _start kafka "$bundle"
  _wait_for kafka 120 _tcp_open "$ns" "$POD_IP" 9092 || _fail "kafka: port 9092 never opened" "$log"
  _pass "kafka: first start (format + broker) opens $POD_IP:9092 (the probe) in $((SECONDS - start))s"
  [[ -f "$volume/logs/meta.properties" ]] || _fail "kafka: no meta.properties in the log dir" "$log"
  grep -qx '    process.roles=broker,controller' "$log" || _fail "kafka: server.properties lacks process.roles" "$log"

  _exec kafka kafka-topics.sh --bootstrap-server "$bs" --create --topic sf-images-test \
    --partitions 3 --replication-factor 1 >/dev/null || _fail "kafka: kafka-topics.sh --create failed" "$log"
  topics="$(_exec kafka kafka-topics.sh --bootstrap-server "$bs" --list)" || _fail "kafka: --list failed" "$log"
  grep -qx sf-images-test <<<"$topics" || _fail "kafka: the topic is not listed: $topics" "$log"
  _exec kafka sh -c "echo hello-from-images-test | kafka-console-producer.sh --bootstrap-server $bs --topic sf-images-test" ||
    _fail "kafka: console producer failed" "$log"
  [[ "$(_exec kafka kafka-console-consumer.sh --bootstrap-server "$bs" --topic sf-images-test --from-beginning \
    --max-messages 1 --timeout-ms 30000 2>/dev/null)" == hello-from-images-test ]] ||
    _fail "kafka: console consumer did not read the message back" "$log"
  [[ "$(_exec kafka id -u)" == 1000 ]] || _fail "kafka: not running as uid 1000"
  _pass "kafka: topic created, listed, produced to and consumed from with the image's CLI, uid 1000"

  _term kafka 60 || _fail "kafka: still running 60 s after SIGTERM" "$log"
  grep -q 'shut down completed' "$log" || _fail "kafka: no clean shutdown on SIGTERM" "$log"
  _pass "kafka: SIGTERM -> controlled shutdown in ${STOP_SECONDS}s"

  bundle="$(_bundle kafka)"
  C_USER=1000 C_NETNS="$ns" C_ENV="$(_kafka_env)" \
    C_MOUNTS="[{\"dst\":\"/var/lib/kafka/data\",\"src\":\"$volume\",\"ro\":false}]" _configure "$bundle"
  log="$bundle/../console.log"
  _start kafka "$bundle"
  _wait_for kafka 120 _tcp_open "$ns" "$POD_IP" 9092 || _fail "kafka: port 9092 never opened after a restart" "$log"
  if grep -q 'kafka-entrypoint: formatting' "$log"; then
    _fail "kafka: storage formatted again on restart" "$log"
  fi
  topics="$(_exec kafka kafka-topics.sh --bootstrap-server "$bs" --list)" || _fail "kafka: --list failed after restart" "$log"
  grep -qx sf-images-test <<<"$topics" || _fail "kafka: topic lost over a restart" "$log"
  _term kafka 60 || _fail "kafka: still running 60 s after SIGTERM (restart)" "$log"
  _pass "kafka: restart on the same volume keeps the topic (no second format)"
}

# coredns: uid 65532 with only NET_BIND_SERVICE (and no new privileges)
# binds port 53 thanks to the file capability.
_test_coredns() {
  local ns bundle log corefile
  _netns coredns
  ns="$NS"
  bundle="$(_bundle coredns)"
  [[ "$(_image_user "$bundle")" == 65532:65532 ]] || _fail "coredns: image user is $(_image_user "$bundle")"
  corefile="$TEST_DIR/Corefile"
  printf '.:53 {\n    whoami\n}\n' >"$corefile"
  C_NETNS="$ns" C_READONLY=true C_CAPS='["CAP_NET_BIND_SERVICE"]' C_ARGS='["/coredns","-conf","/etc/coredns/Corefile"]' \
    C_MOUNTS="[{\"dst\":\"/etc/coredns/Corefile\",\"src\":\"$corefile\",\"ro\":true}]" _configure "$bundle"
  log="$bundle/../console.log"
  _start coredns "$bundle"
  _wait_for coredns 20 bash -c "ip netns exec '$ns' ss -Hlun | grep -q ':53 '" ||
    _fail "coredns: not listening on udp 53" "$log"
  _term coredns 10 || _fail "coredns: still running 10 s after SIGTERM" "$log"
  _pass "coredns: listens on :53 as 65532 with only NET_BIND_SERVICE (file capability), stops on SIGTERM"
}

# --- containerd import -------------------------------------------------------------

_stop_containerd() {
  [[ -n "$CTRD_PID" ]] || return 0
  kill -TERM "$CTRD_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while sf_pid_alive "$CTRD_PID" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  sf_pid_alive "$CTRD_PID" && kill -KILL "$CTRD_PID" 2>/dev/null
  CTRD_PID=""
  # Snapshot mounts are not left after an import; unmount anything anyway.
  grep -o " $CTRD_DIR/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$CTRD_DIR"
}

_test_containerd_import() {
  local names=("$@") sock="$CTRD_DIR/containerd.sock" name ref listed
  [[ -x "$CONTAINERD_BIN" && -x "$CTR_BIN" ]] || {
    sf_warn "no $CONTAINERD_BIN or $CTR_BIN: containerd import not tested"
    RESULTS+=("SKIP  containerd import (no $CONTAINERD_BIN / $CTR_BIN)")
    return 0
  }
  sf_log "importing into a private containerd ($("$CONTAINERD_BIN" --version | awk '{print $3}'))"
  rm -rf "$CTRD_DIR"
  mkdir -p "$CTRD_DIR"
  # CRI and NRI stay off: no streaming port, no CNI, nothing in /var/run/nri.
  cat >"$CTRD_DIR/config.toml" <<EOF
version = 3
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.runtime",
  "io.containerd.cri.v1.images",
  "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
EOF
  "$CONTAINERD_BIN" --config "$CTRD_DIR/config.toml" >"$CTRD_DIR/containerd.log" 2>&1 </dev/null &
  CTRD_PID=$!
  local deadline=$((SECONDS + 30))
  until "$CTR_BIN" --address "$sock" version >/dev/null 2>&1; do
    sf_pid_alive "$CTRD_PID" || _fail "containerd exited at start" "$CTRD_DIR/containerd.log"
    ((SECONDS < deadline)) || _fail "containerd did not answer on $sock" "$CTRD_DIR/containerd.log"
    sleep 0.3
  done
  local ctr=("$CTR_BIN" --address "$sock" -n k8s.io)
  for name in "${names[@]}"; do
    ref="$(sf_image_ref "$name")"
    "${ctr[@]}" images import "$(sf_image_archive "$name")" >"$CTRD_DIR/import.log" 2>&1 ||
      _fail "ctr images import of $name failed" "$CTRD_DIR/import.log"
  done
  listed="$("${ctr[@]}" images ls -q 2>>"$CTRD_DIR/ctr.log")"
  for name in "${names[@]}"; do
    ref="$(sf_image_ref "$name")"
    grep -qxF "$ref" <<<"$listed" || _fail "ctr images ls has no $ref (it has: $(tr '\n' ' ' <<<"$listed"))"
  done
  [[ "$(wc -l <<<"$listed")" == "${#names[@]}" ]] || _fail "ctr images ls has extra names: $(tr '\n' ' ' <<<"$listed")"
  "${ctr[@]}" images check 2>>"$CTRD_DIR/ctr.log" | awk 'NR > 1 && $4 != "complete" { bad = 1 } END { exit bad }' ||
    _fail "ctr images check: not every image is complete: $("${ctr[@]}" images check 2>&1)"
  [[ "$("${ctr[@]}" snapshots ls 2>>"$CTRD_DIR/ctr.log" | wc -l)" -gt 1 ]] || _fail "ctr import unpacked nothing"
  _pass "containerd $("$CONTAINERD_BIN" --version | awk '{print $3}'): ctr -n k8s.io images import names all ${#names[@]} images as expected, complete and unpacked"
  "${ctr[@]}" images ls 2>>"$CTRD_DIR/ctr.log" | sed 's/^/    /' >&2
  _stop_containerd
}

# --- main ---------------------------------------------------------------------------

if ((${#NAMES[@]} == 0)); then
  for name in "${SF_IMAGE_NAMES[@]}"; do
    if [[ "$name" == coredns && -z "${COREDNS_BIN:-}" ]]; then
      sf_warn "coredns: not tested (COREDNS_BIN is not set)"
      RESULTS+=("SKIP  coredns (COREDNS_BIN is not set)")
      continue
    fi
    NAMES+=("$name")
  done
fi
if ((BUILD)); then
  bash "$SF_IMAGES_SRC/build.sh" "${BUILD_ARGS[@]}" "${NAMES[@]}" >/dev/null || sf_die "build.sh failed"
fi

TOTAL_START=$SECONDS
for name in "${NAMES[@]}"; do
  sf_log "testing $name ($(sf_image_ref "$name"))"
  "_test_${name//-/_}"
done
_test_containerd_import "${NAMES[@]}"
_summary
sf_log "all image tests passed in $((SECONDS - TOTAL_START))s"
