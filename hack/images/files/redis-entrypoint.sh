#!/bin/sh
# shellcheck shell=sh
#
# Entrypoint of docker.io/storefront-test/redis:7, the test stand-in for the
# official redis image (busybox sh; see hack/images/README.md).
#
# Like the official image: arguments that start with "-" (the Storefront
# operator passes `--appendonly yes`) or name a *.conf file are given to
# redis-server; anything else is run as a command. Without a config file of
# the caller's, redis-server first reads /usr/local/etc/redis/redis.conf (bind
# every address, protected mode off: what the official image compiles in),
# then the caller's options, which win. The working directory (and so the
# data directory) is /data; redis-server runs in the foreground as PID 1, so
# SIGTERM makes it save (if persistence is on) and exit.
set -eu

case "${1:-}" in
  '' | -* | *.conf) set -- redis-server "$@" ;;
esac

if [ "$1" = redis-server ]; then
  shift
  case "${1:-}" in
    '' | -*) set -- redis-server /usr/local/etc/redis/redis.conf "$@" ;;
    *) set -- redis-server "$@" ;;
  esac
fi

exec "$@"
