#!/bin/sh
# shellcheck shell=sh
#
# kafka-run-class.sh CLASS [ARGS...]: runs a Kafka class with the image's JRE
# and jars (the kafka-*.sh tools of docker.io/storefront-test/kafka:4 call it).
# KAFKA_TOOL_OPTS replaces the default JVM flags (small heap, fast start);
# logging goes to stderr at WARN.
set -eu
if [ "$#" -lt 1 ]; then
  echo "usage: kafka-run-class.sh CLASS [ARGS...]" >&2
  exit 2
fi
# shellcheck disable=SC2086 # KAFKA_TOOL_OPTS is a list of words.
exec java ${KAFKA_TOOL_OPTS:--Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true} \
  -Dlog4j2.configurationFile=/opt/kafka/etc/tools-log4j2.xml -cp "/opt/kafka/libs/*" "$@"
