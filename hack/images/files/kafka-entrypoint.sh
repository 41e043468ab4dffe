#!/bin/sh
# shellcheck shell=sh
#
# Entrypoint of docker.io/storefront-test/kafka:4, the test stand-in for the
# apache/kafka image (busybox sh; see hack/images/README.md).
#
# With arguments, runs them (e.g. `kafka-topics.sh --bootstrap-server ...`).
# Without, runs one KRaft node in the foreground:
#   1. server.properties from the environment, as apache/kafka does: every
#      KAFKA_FOO_BAR=v becomes foo.bar=v (lower case; "__" becomes "_" and
#      "___" becomes "-"), except the JVM/launcher variables listed in
#      `skip` below. Keys not given get single-node defaults (`defaults`).
#   2. On first start (a log dir without meta.properties) the storage is
#      formatted: cluster id from CLUSTER_ID, else the one already in another
#      log dir, else a new random one.
#   3. exec java ... kafka.Kafka server.properties: the JVM is PID 1, SIGTERM
#      runs Kafka's controlled shutdown. Heap: KAFKA_HEAP_OPTS (default
#      -Xmx384m -Xms384m); KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS and
#      KAFKA_LOG4J_OPTS as in Kafka's own scripts. Logs go to stdout.
set -eu

if [ "$#" -gt 0 ]; then
  exec "$@"
fi

die() {
  printf 'kafka-entrypoint: %s\n' "$*" >&2
  exit 1
}

KAFKA_DIR=/opt/kafka
conf_dir="$KAFKA_DIR/config"
if ! [ -w "$conf_dir" ]; then
  conf_dir="$(mktemp -d)" || die "neither $KAFKA_DIR/config nor a temporary directory is writable"
fi
props="$conf_dir/server.properties"

awk '
BEGIN {
  split("HEAP_OPTS OPTS JVM_PERFORMANCE_OPTS GC_LOG_OPTS LOG4J_OPTS JMX_OPTS JMX_PORT JMX_HOSTNAME " \
        "DEBUG DEBUG_SUSPEND_FLAG LOG4J_ROOT_LOGLEVEL LOG4J_LOGGERS TOOLS_LOG4J_LOGLEVEL " \
        "TOOL_OPTS VERSION HOME", names, " ")
  for (i in names) skip["KAFKA_" names[i]] = 1

  defaults["node.id"] = "1"
  defaults["process.roles"] = "broker,controller"
  defaults["listeners"] = "PLAINTEXT://:9092,CONTROLLER://:9093"
  defaults["advertised.listeners"] = "PLAINTEXT://localhost:9092"
  defaults["controller.listener.names"] = "CONTROLLER"
  defaults["listener.security.protocol.map"] = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  defaults["controller.quorum.voters"] = "1@localhost:9093"
  defaults["offsets.topic.replication.factor"] = "1"
  defaults["transaction.state.log.replication.factor"] = "1"
  defaults["transaction.state.log.min.isr"] = "1"
  defaults["share.coordinator.state.topic.replication.factor"] = "1"
  defaults["share.coordinator.state.topic.min.isr"] = "1"
  defaults["group.initial.rebalance.delay.ms"] = "0"
  defaults["log.dirs"] = "/var/lib/kafka/data"

  for (name in ENVIRON) {
    if ((name !~ /^KAFKA_[A-Z0-9_]+$/) || (name in skip)) continue
    # Kubernetes service links of a Service named "kafka" (never configs).
    if (name ~ /^KAFKA_PORT/ || name ~ /^KAFKA_SERVICE_/) continue
    key = tolower(substr(name, 7))
    gsub(/___/, "-", key)
    gsub(/__/, "#", key)
    gsub(/_/, ".", key)
    gsub(/#/, "_", key)
    conf[key] = ENVIRON[name]
  }
  if ("controller.quorum.bootstrap.servers" in conf) delete defaults["controller.quorum.voters"]
  if ("log.dir" in conf) delete defaults["log.dirs"]
  for (key in defaults) if (!(key in conf)) conf[key] = defaults[key]
  for (key in conf) {
    value = conf[key]
    gsub(/\\/, "\\\\", value)
    gsub(/\n/, "\\n", value)
    print key "=" value
  }
}' | sort >"$props.new" || die "could not write $props"
mv -f "$props.new" "$props"
echo "kafka-entrypoint: $props:"
sed 's/^\([^=]*\(password\|secret\)[^=]*\)=.*/\1=[hidden]/; s/^/    /' "$props"

prop() {
  sed -n "s/^$1=//p" "$props" | tail -n 1
}

# The directories `kafka-storage format` writes: every log dir and the metadata dir.
dirs="$(prop log.dirs)"
[ -n "$dirs" ] || dirs="$(prop log.dir)"
meta_dir="$(prop metadata.log.dir)"
[ -z "$meta_dir" ] || dirs="$dirs,$meta_dir"

unformatted=""
existing_id=""
old_ifs="$IFS"
IFS=,
for dir in $dirs; do
  [ -n "$dir" ] || continue
  if [ -f "$dir/meta.properties" ]; then
    [ -n "$existing_id" ] || existing_id="$(sed -n 's/^cluster\.id=//p' "$dir/meta.properties")"
  else
    unformatted="$unformatted $dir"
  fi
done
IFS="$old_ifs"

if [ -n "$unformatted" ]; then
  cluster_id="${CLUSTER_ID:-$existing_id}"
  if [ -z "$cluster_id" ]; then
    cluster_id="$(kafka-storage.sh random-uuid)" || die "kafka-storage random-uuid failed"
  fi
  set -- format --config "$props" --cluster-id "$cluster_id" --ignore-formatted
  # A dynamic quorum (no static voters) starts from this node alone.
  if [ -z "$(prop controller.quorum.voters)" ] && prop process.roles | grep -q controller; then
    set -- "$@" --standalone
  fi
  echo "kafka-entrypoint: formatting${unformatted} (cluster id $cluster_id)"
  kafka-storage.sh "$@" || die "kafka-storage format failed"
fi

# shellcheck disable=SC2086 # the *_OPTS variables are lists of words.
exec java ${KAFKA_HEAP_OPTS:--Xmx384m -Xms384m} \
  ${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true} \
  -XX:+ExitOnOutOfMemoryError \
  ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$KAFKA_DIR/etc/log4j2.xml} \
  ${KAFKA_OPTS:-} \
  -cp "$KAFKA_DIR/libs/*" kafka.Kafka "$props"
