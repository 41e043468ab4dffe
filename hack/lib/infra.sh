# shellcheck shell=bash
#
# Storefront local infrastructure: PostgreSQL, Redis and a single-node Kafka
# (KRaft), all bound to 127.0.0.1, data under $STOREFRONT_DATA_DIR.
#
# Source this file; it defines one start/stop implementation per component:
#   sf_pg_start    sf_pg_stop
#   sf_redis_start sf_redis_stop
#   sf_kafka_start sf_kafka_stop
#   sf_infra_summary
# Every *_start is idempotent ("already running" when up) and every *_stop is
# idempotent ("not running" when down). Errors exit the calling script.
#
# Tunables (environment): see hack/infra-env.sh for ports and directories, and
#   KAFKA_VERSION          Apache Kafka version resolved from Maven Central
#   PG_START_TIMEOUT       seconds (default 60)
#   REDIS_START_TIMEOUT    seconds (default 30)
#   KAFKA_START_TIMEOUT    seconds (default 90)
#   KAFKA_STOP_TIMEOUT     seconds before SIGKILL (default 60)
#   KAFKA_JVM_OPTS         broker JVM flags (default heap -Xms256m -Xmx512m)

# Pinned Apache Kafka version (org.apache.kafka:kafka_2.13 and kafka-tools must
# both exist on Maven Central in this version). Keep hack/kafka/pom.xml in sync.
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"

[[ -n "${_SF_INFRA_SH:-}" ]] && return 0
_SF_INFRA_SH=1

_SF_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/common.sh
source "$_SF_LIB_DIR/common.sh"
# shellcheck source=hack/infra-env.sh
source "$_SF_LIB_DIR/../infra-env.sh"

PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-30}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:--Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"

SF_LOG_DIR="$STOREFRONT_DATA_DIR/logs"

# PostgreSQL layout.
PG_OS_USER="${PG_OS_USER:-postgres}"
PG_DATA="$STOREFRONT_DATA_DIR/postgres"
PG_SOCKET_DIR="$STOREFRONT_DATA_DIR/pg-socket"
PG_LOG="$SF_LOG_DIR/postgres.log"
STOREFRONT_DATABASES=(product cart inventory payment orders checkout)

# Redis layout.
REDIS_DIR="$STOREFRONT_DATA_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$SF_LOG_DIR/redis.log"

# Kafka layout.
KAFKA_HOME="$STOREFRONT_CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_STAMP="$KAFKA_HOME/.resolved"
KAFKA_POM="$STOREFRONT_ROOT/hack/kafka/pom.xml"
KAFKA_DIR="$STOREFRONT_DATA_DIR/kafka"
KAFKA_LOG_DIRS="$KAFKA_DIR/data"
KAFKA_CONFIG="$KAFKA_DIR/server.properties"
KAFKA_LOG4J="$KAFKA_DIR/log4j2.xml"
KAFKA_TOOLS_LOG4J="$KAFKA_DIR/tools-log4j2.xml"
KAFKA_ADMIN_CONFIG="$KAFKA_DIR/admin.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster-id"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_SERVER_LOG="$SF_LOG_DIR/kafka-server.log"
KAFKA_STDOUT_LOG="$SF_LOG_DIR/kafka.out"
# name:partitions (replication factor is always 1 on this single node).
KAFKA_TOPICS=(checkout-events:3 order-events:3 checkout-events.dlq:1 order-events.dlq:1)

sf_ensure_data_dirs() {
  mkdir -p "$STOREFRONT_DATA_DIR" "$SF_LOG_DIR"
  # The postgres system user must be able to traverse these.
  chmod 0755 "$STOREFRONT_DATA_DIR" "$SF_LOG_DIR"
}

# Dies with a clear message if something (not ours) already listens on $1.
_sf_require_free_port() {
  local port="$1" what="$2"
  if sf_port_open "$port"; then
    sf_die "$what: port 127.0.0.1:$port is already in use by another process:
$(sf_port_owner "$port")
Stop it, or choose another port (see hack/infra-env.sh)."
  fi
}

# =============================================================================
# PostgreSQL
# =============================================================================

# Prints the PostgreSQL bin directory to use: the one matching an existing
# cluster's PG_VERSION if present, else the newest /usr/lib/postgresql/*/bin
# that has initdb and pg_ctl.
_sf_pg_find_bindir() {
  local want="" dir
  if [[ -r "$PG_DATA/PG_VERSION" ]]; then
    want="$(<"$PG_DATA/PG_VERSION")"
    dir="/usr/lib/postgresql/$want/bin"
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
    return 1
  fi
  local found=""
  while IFS= read -r dir; do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      found="$dir"
    fi
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V)
  [[ -n "$found" ]] || return 1
  printf '%s\n' "$found"
}

sf_pg_ensure_installed() {
  if ! PG_BIN="$(_sf_pg_find_bindir)"; then
    if [[ -r "$PG_DATA/PG_VERSION" ]]; then
      local v
      v="$(<"$PG_DATA/PG_VERSION")"
      sf_log "Cluster in $PG_DATA is PostgreSQL $v; installing postgresql-$v"
      sf_apt_install_no_start "postgresql-$v" || sf_die "could not install postgresql-$v"
    else
      sf_log "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
      sf_apt_install_no_start postgresql || sf_die "could not install postgresql"
    fi
    PG_BIN="$(_sf_pg_find_bindir)" || sf_die "PostgreSQL binaries still missing after install"
  fi
  if sf_is_root && ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    sf_log "Creating system user $PG_OS_USER (PostgreSQL refuses to run as root)"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
}

# Runs a command as the PostgreSQL OS user (postgres when we are root, since
# initdb/pg_ctl/postgres refuse to run as root; the current user otherwise),
# from / so that an unreadable working directory does not bother it.
sf_as_pg() {
  if sf_is_root; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

# Makes every ancestor of $1 traversable (o+x) for the postgres user.
_sf_pg_make_traversable() {
  sf_is_root || return 0
  local dir="$1"
  while [[ "$dir" != "/" && -n "$dir" ]]; do
    if ! runuser -u "$PG_OS_USER" -- test -x "$dir"; then
      sf_warn "adding o+x to $dir so that user $PG_OS_USER can reach $PG_DATA"
      chmod o+x "$dir"
    fi
    dir="$(dirname "$dir")"
  done
}

_sf_pg_chown() {
  if sf_is_root; then
    chown "$PG_OS_USER:$PG_OS_USER" "$@"
  fi
}

_sf_pg_init() {
  sf_ensure_data_dirs
  mkdir -p "$PG_SOCKET_DIR"
  chmod 0755 "$PG_SOCKET_DIR"
  _sf_pg_chown "$PG_SOCKET_DIR"
  touch "$PG_LOG"
  _sf_pg_chown "$PG_LOG"
  _sf_pg_make_traversable "$STOREFRONT_DATA_DIR"

  if [[ ! -s "$PG_DATA/PG_VERSION" ]]; then
    sf_log "Initializing PostgreSQL cluster in $PG_DATA"
    mkdir -p "$PG_DATA"
    chmod 0700 "$PG_DATA"
    _sf_pg_chown "$PG_DATA"
    if ! sf_as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-host=scram-sha-256 --auth-local=trust >"$SF_LOG_DIR/postgres-initdb.log" 2>&1; then
      sf_tail_log "$SF_LOG_DIR/postgres-initdb.log"
      sf_die "initdb failed (if $PG_DATA holds a broken cluster, remove it or run hack/infra-down.sh --purge)"
    fi
    printf "\n# Storefront overrides (regenerated by hack/lib/infra.sh on every start)\ninclude_if_exists = 'storefront.conf'\n" \
      >>"$PG_DATA/postgresql.conf"
  fi
  _sf_pg_write_config
}

_sf_pg_write_config() {
  cat >"$PG_DATA/storefront.conf" <<EOF
# Generated by hack/lib/infra.sh; edits are overwritten on the next start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 400
shared_buffers = 256MB
EOF
  _sf_pg_chown "$PG_DATA/storefront.conf"
}

sf_pg_is_running() {
  [[ -s "$PG_DATA/PG_VERSION" ]] || return 1
  sf_as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

_sf_pg_is_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

_sf_pg_wait_ready() {
  local deadline=$((SECONDS + PG_START_TIMEOUT))
  until _sf_pg_is_ready; do
    if ((SECONDS >= deadline)); then
      sf_tail_log "$PG_LOG"
      sf_die "PostgreSQL did not accept connections on 127.0.0.1:$PG_PORT within ${PG_START_TIMEOUT}s"
    fi
    sleep 0.5
  done
}

# psql as the bootstrap superuser over the unix socket (local auth = trust).
_sf_pg_psql() {
  sf_as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" \
    -U postgres -d postgres "$@"
}

# Creates the storefront role and databases if they are missing.
_sf_pg_ensure_schema() {
  local exists
  exists="$(_sf_pg_psql -At -c "SELECT 1 FROM pg_roles WHERE rolname = 'storefront'")" ||
    sf_die "could not query PostgreSQL roles"
  if [[ "$exists" != 1 ]]; then
    sf_info "creating role storefront (SUPERUSER LOGIN)"
    _sf_pg_psql -c "CREATE ROLE storefront WITH SUPERUSER LOGIN PASSWORD 'storefront'" ||
      sf_die "could not create role storefront"
  fi

  local list missing db
  list="$(printf "'%s'," "${STOREFRONT_DATABASES[@]}")"
  missing="$(_sf_pg_psql -At -c "SELECT d FROM unnest(ARRAY[${list%,}]) AS d
      WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)")" ||
    sf_die "could not query PostgreSQL databases"
  for db in $missing; do
    sf_info "creating database $db"
    _sf_pg_psql -c "CREATE DATABASE \"$db\" OWNER storefront" ||
      sf_die "could not create database $db"
  done
}

sf_pg_start() {
  sf_pg_ensure_installed
  _sf_pg_init
  if sf_pg_is_running; then
    if _sf_pg_is_ready; then
      sf_info "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    else
      sf_log "PostgreSQL process exists but is not ready yet; waiting"
      _sf_pg_wait_ready
    fi
  else
    _sf_require_free_port "$PG_PORT" PostgreSQL
    sf_log "Starting PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
    if ! _sf_pg_ctl_start; then
      sf_tail_log "$PG_LOG"
      sf_die "pg_ctl start failed"
    fi
    _sf_pg_wait_ready
    sf_info "PostgreSQL started (log: $PG_LOG)"
  fi
  _sf_pg_ensure_schema
}

# pg_ctl start under setsid: the postmaster gets its own session, so it
# survives the calling shell/job; -w waits until the server is up.
_sf_pg_ctl_start() {
  if sf_is_root; then
    (cd / && setsid -w runuser -u "$PG_OS_USER" -- "$PG_BIN/pg_ctl" start -D "$PG_DATA" \
      -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" -s </dev/null)
  else
    (cd / && setsid -w "$PG_BIN/pg_ctl" start -D "$PG_DATA" \
      -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" -s </dev/null)
  fi
}

sf_pg_stop() {
  if [[ ! -s "$PG_DATA/PG_VERSION" ]]; then
    sf_info "PostgreSQL: no cluster in $PG_DATA, nothing to stop"
    return 0
  fi
  PG_BIN="$(_sf_pg_find_bindir)" || sf_die "PostgreSQL binaries for the cluster in $PG_DATA are missing"
  if ! sf_pg_is_running; then
    sf_info "PostgreSQL not running"
    return 0
  fi
  sf_log "Stopping PostgreSQL"
  if ! sf_as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s; then
    sf_tail_log "$PG_LOG"
    sf_die "pg_ctl stop failed"
  fi
  sf_info "PostgreSQL stopped"
}

# =============================================================================
# Redis
# =============================================================================

sf_redis_ensure_installed() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    sf_log "redis-server not found"
    sf_apt_install_no_start redis-server || sf_die "could not install redis-server"
  fi
}

sf_redis_is_running() {
  [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

sf_redis_start() {
  sf_redis_ensure_installed
  if sf_redis_is_running; then
    sf_info "Redis already running on 127.0.0.1:$REDIS_PORT"
    return 0
  fi
  _sf_require_free_port "$REDIS_PORT" Redis
  sf_ensure_data_dirs
  mkdir -p "$REDIS_DIR"
  sf_log "Starting Redis on 127.0.0.1:$REDIS_PORT"
  if ! redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --dir "$REDIS_DIR" --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
    --save "" --appendonly no </dev/null; then
    sf_tail_log "$REDIS_LOG"
    sf_die "redis-server failed to start"
  fi
  local deadline=$((SECONDS + REDIS_START_TIMEOUT))
  until sf_redis_is_running; do
    if ((SECONDS >= deadline)); then
      sf_tail_log "$REDIS_LOG"
      sf_die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within ${REDIS_START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  sf_info "Redis started (log: $REDIS_LOG)"
}

sf_redis_stop() {
  local pid=""
  pid="$(sf_read_pidfile "$REDIS_PIDFILE")" || pid=""
  if ! sf_redis_is_running && [[ -z "$pid" ]]; then
    sf_info "Redis not running"
    return 0
  fi
  sf_log "Stopping Redis"
  if command -v redis-cli >/dev/null 2>&1; then
    timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  local deadline=$((SECONDS + 15)) signalled=0
  while sf_port_open "$REDIS_PORT" || sf_pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      if ((signalled)) || [[ -z "$pid" ]]; then
        sf_tail_log "$REDIS_LOG"
        sf_die "Redis did not stop (port 127.0.0.1:$REDIS_PORT: $(sf_port_owner "$REDIS_PORT"))"
      fi
      sf_warn "Redis ignored SHUTDOWN; sending SIGKILL to pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
      signalled=1
      deadline=$((SECONDS + 5))
    fi
    sleep 0.2
  done
  rm -f "$REDIS_PIDFILE"
  sf_info "Redis stopped"
}

# =============================================================================
# Kafka (KRaft, one node acting as broker and controller)
# =============================================================================

sf_kafka_ensure_installed() {
  if ! command -v java >/dev/null 2>&1; then
    sf_log "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
    sf_apt_install openjdk-17-jre-headless || sf_die "could not install a Java runtime"
  fi
  if [[ -f "$KAFKA_STAMP" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
    return 0
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    sf_log "mvn not found (needed once to fetch Kafka from Maven Central)"
    sf_apt_install maven || sf_die "could not install maven"
  fi
  [[ -f "$KAFKA_POM" ]] || sf_die "missing $KAFKA_POM"
  sf_log "Resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_HOME"
  local tmp="$KAFKA_HOME/libs.tmp.$$" mvn_log="$KAFKA_HOME/mvn.log"
  rm -rf "$tmp"
  if ! mvn -q -B -f "$KAFKA_POM" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$mvn_log" 2>&1; then
    rm -rf "$tmp"
    sf_tail_log "$mvn_log"
    sf_die "could not resolve Kafka $KAFKA_VERSION with Maven (log: $mvn_log)"
  fi
  compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null ||
    sf_die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is not in $tmp"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  printf 'kafka_2.13 %s resolved %s\n' "$KAFKA_VERSION" "$(date -u +%FT%TZ)" >"$KAFKA_STAMP"
  sf_info "$(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

# Runs a Kafka CLI class (quiet logging, fast-starting JVM, bounded runtime).
sf_kafka_tool() {
  timeout "${KAFKA_TOOL_TIMEOUT:-60}" java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto \
    -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "$KAFKA_LIBS/*" "$@"
}

# Runs org.apache.kafka.tools.TopicCommand against the local broker.
sf_kafka_topics() {
  sf_kafka_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --command-config "$KAFKA_ADMIN_CONFIG" "$@"
}

_sf_kafka_write_config() {
  mkdir -p "$KAFKA_DIR" "$KAFKA_LOG_DIRS"
  # Note: the controller endpoint is recorded in the KRaft log at format time;
  # changing KAFKA_CONTROLLER_PORT later needs `hack/infra-down.sh --purge`.
  cat >"$KAFKA_CONFIG" <<EOF
# Generated by hack/lib/infra.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
log.dirs=$KAFKA_LOG_DIRS
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF

  cat >"$KAFKA_LOG4J" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by hack/lib/infra.sh. Broker logging (Log4j 2). shutdownHook is
     disabled so Kafka's own shutdown messages still reach the file. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="server" fileName="$KAFKA_SERVER_LOG" filePattern="$KAFKA_SERVER_LOG.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
  </Loggers>
</Configuration>
EOF

  cat >"$KAFKA_TOOLS_LOG4J" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by hack/lib/infra.sh. Kafka CLI tools: warnings to stderr only. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
    <Logger name="org.apache.kafka" level="ERROR"/>
  </Loggers>
</Configuration>
EOF

  cat >"$KAFKA_ADMIN_CONFIG" <<'EOF'
# Admin client settings for the CLI tools: fail fast instead of retrying for minutes.
request.timeout.ms=10000
default.api.timeout.ms=15000
EOF
}

# Formats the KRaft storage once (cluster id kept in $KAFKA_CLUSTER_ID_FILE).
_sf_kafka_format() {
  [[ -f "$KAFKA_LOG_DIRS/meta.properties" ]] && return 0
  local cluster_id
  if [[ -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    cluster_id="$(<"$KAFKA_CLUSTER_ID_FILE")"
  else
    cluster_id="$(sf_kafka_tool kafka.tools.StorageTool random-uuid)" ||
      sf_die "kafka.tools.StorageTool random-uuid failed"
    printf '%s\n' "$cluster_id" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  sf_log "Formatting KRaft storage in $KAFKA_LOG_DIRS (cluster id $cluster_id)"
  local log="$SF_LOG_DIR/kafka-format.log"
  if ! sf_kafka_tool kafka.tools.StorageTool format --config "$KAFKA_CONFIG" \
    --cluster-id "$cluster_id" --standalone >"$log" 2>&1; then
    sf_tail_log "$log"
    sf_die "Kafka storage format failed"
  fi
}

# True if /proc/$1 is our broker (java ... kafka.Kafka $KAFKA_CONFIG).
_sf_kafka_is_our_broker() {
  local cmdline
  # (2>/dev/null first: the process may vanish between listing and reading.)
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$cmdline" == *" kafka.Kafka $KAFKA_CONFIG"* ]]
}

# Prints the broker's pid if it is running (pid file first, then /proc scan).
sf_kafka_pid() {
  local pid
  if pid="$(sf_read_pidfile "$KAFKA_PIDFILE")" && _sf_kafka_is_our_broker "$pid"; then
    printf '%s\n' "$pid"
    return 0
  fi
  local dir
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    if sf_pid_alive "$pid" && _sf_kafka_is_our_broker "$pid"; then
      printf '%s\n' "$pid" 2>/dev/null >"$KAFKA_PIDFILE" || true
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 1
}

# Waits (bounded) until the broker answers TopicCommand --list; the topic
# list is left in _SF_KAFKA_TOPIC_LIST.
_sf_kafka_wait_ready() {
  local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT)) out
  _SF_KAFKA_TOPIC_LIST=""
  while true; do
    if ! sf_pid_alive "$pid"; then
      sf_tail_log "$KAFKA_STDOUT_LOG" 20
      sf_tail_log "$KAFKA_SERVER_LOG" 60
      sf_die "the Kafka JVM (pid $pid) exited during startup"
    fi
    if sf_port_open "$KAFKA_PORT"; then
      if out="$(sf_kafka_topics --list 2>/dev/null)"; then
        _SF_KAFKA_TOPIC_LIST="$out"
        return 0
      fi
    fi
    if ((SECONDS >= deadline)); then
      sf_tail_log "$KAFKA_SERVER_LOG" 60
      sf_die "Kafka did not answer on $KAFKA_BOOTSTRAP_SERVERS within ${KAFKA_START_TIMEOUT}s"
    fi
    sleep 1
  done
}

_sf_kafka_ensure_topics() {
  local spec name partitions
  for spec in "${KAFKA_TOPICS[@]}"; do
    name="${spec%%:*}"
    partitions="${spec##*:}"
    if grep -qxF -- "$name" <<<"$_SF_KAFKA_TOPIC_LIST"; then
      continue
    fi
    sf_info "creating topic $name (partitions=$partitions, replication-factor=1)"
    sf_kafka_topics --create --if-not-exists --topic "$name" \
      --partitions "$partitions" --replication-factor 1 >/dev/null ||
      sf_die "could not create Kafka topic $name"
  done
}

sf_kafka_start() {
  sf_kafka_ensure_installed
  sf_ensure_data_dirs
  local pid
  if pid="$(sf_kafka_pid)"; then
    if sf_port_open "$KAFKA_PORT"; then
      sf_info "Kafka already running on $KAFKA_BOOTSTRAP_SERVERS (pid $pid)"
      return 0
    fi
    sf_log "Kafka process $pid exists but is not listening yet; waiting"
  else
    _sf_require_free_port "$KAFKA_PORT" Kafka
    _sf_require_free_port "$KAFKA_CONTROLLER_PORT" "Kafka controller"
    _sf_kafka_write_config
    _sf_kafka_format
    sf_log "Starting Kafka $KAFKA_VERSION (KRaft) on $KAFKA_BOOTSTRAP_SERVERS"
    local -a jvm_opts
    read -r -a jvm_opts <<<"$KAFKA_JVM_OPTS"
    # setsid: own session, so the broker survives the calling shell/job.
    nohup setsid java "${jvm_opts[@]}" \
      -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$SF_LOG_DIR" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG" \
      >>"$KAFKA_STDOUT_LOG" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
  fi
  _sf_kafka_wait_ready "$pid"
  _sf_kafka_ensure_topics
  sf_info "Kafka started (pid $pid, log: $KAFKA_SERVER_LOG)"
}

sf_kafka_stop() {
  local pid
  if ! pid="$(sf_kafka_pid)"; then
    rm -f "$KAFKA_PIDFILE"
    sf_info "Kafka not running"
    return 0
  fi
  sf_log "Stopping Kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while sf_pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      sf_warn "Kafka did not stop within ${KAFKA_STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      local kill_deadline=$((SECONDS + 10))
      while sf_pid_alive "$pid"; do
        ((SECONDS < kill_deadline)) || sf_die "Kafka pid $pid survived SIGKILL"
        sleep 0.2
      done
      break
    fi
    sleep 0.2
  done
  rm -f "$KAFKA_PIDFILE"
  sf_info "Kafka stopped"
}

# =============================================================================
# Summary
# =============================================================================

sf_infra_summary() {
  printf '\nStorefront local infrastructure:\n'
  printf '  PostgreSQL  postgres://storefront:storefront@127.0.0.1:%s  (databases: %s)\n' \
    "$PG_PORT" "${STOREFRONT_DATABASES[*]}"
  printf '  Redis       redis://127.0.0.1:%s\n' "$REDIS_PORT"
  printf '  Kafka %s  %s  (controller 127.0.0.1:%s; topics: %s)\n' "$KAFKA_VERSION" \
    "$KAFKA_BOOTSTRAP_SERVERS" "$KAFKA_CONTROLLER_PORT" "${KAFKA_TOPICS[*]%%:*}"
  printf '  data: %s   logs: %s\n\n' "$STOREFRONT_DATA_DIR" "$SF_LOG_DIR"
  # shellcheck disable=SC2016 # literal text, not an expansion.
  printf '# Environment (also available via: eval "$(hack/infra-env.sh)")\n'
  storefront_print_env
}
