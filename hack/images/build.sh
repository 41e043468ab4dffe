#!/usr/bin/env bash
# Builds the container images the real test node runs, without Docker: root
# filesystems assembled from this host's files (Debian packages, the cargo
# build, the Kafka jars from Maven Central), packed with umoci into OCI
# archives that `ctr -n k8s.io images import <archive>` names correctly.
#
#   hack/images/build.sh [--profile debug|release] [--cargo-build] [--force] [NAME...]
#   hack/images/build.sh --list
#
# NAME is one of: storefront storefront-operator postgres redis kafka pause
# coredns (all by default; hack/images/lib.sh has their references). Prints
# the archive of each image on stdout, one a line; progress goes to stderr.
# An image is rebuilt only when its inputs change (the stamp next to the
# archive: the binary's sha256, the copied host files, package versions, the
# scripts used). See hack/images/README.md.
#
# Environment:
#   STOREFRONT_CACHE_DIR  cache root (default ~/.cache/storefront); images in <it>/images
#   CARGO_TARGET_DIR      where cargo put the shop's binaries (default <repo>/target)
#   COREDNS_BIN           the CoreDNS binary for the coredns image (skipped if unset,
#                         unless coredns is named explicitly)
set -euo pipefail

SF_IMAGES_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# infra.sh: common.sh, STOREFRONT_ROOT/STOREFRONT_CACHE_DIR and the Kafka
# download (sf_kafka_ensure_installed) that the kafka image reuses.
# shellcheck source=hack/lib/infra.sh
source "$SF_IMAGES_SRC/../lib/infra.sh"
# shellcheck source=hack/images/lib.sh
source "$SF_IMAGES_SRC/lib.sh"
# shellcheck source=hack/images/rootfs.sh
source "$SF_IMAGES_SRC/rootfs.sh"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

PROFILE=debug
CARGO_BUILD=0
FORCE=0
REQUESTED=()
while (($# > 0)); do
  case "$1" in
    --profile) PROFILE="${2:-}"; shift 2 || sf_die "--profile needs a value" ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --release) PROFILE=release; shift ;;
    --cargo-build) CARGO_BUILD=1; shift ;;
    --force) FORCE=1; shift ;;
    --list)
      sf_images_list | column -t
      exit 0
      ;;
    -h | --help) usage; exit 0 ;;
    -*) sf_die "unknown option $1 (see --help)" ;;
    *) sf_image_ref "$1" >/dev/null || exit 1; REQUESTED+=("$1"); shift ;;
  esac
done
[[ "$PROFILE" == debug || "$PROFILE" == release ]] || sf_die "--profile is debug or release, not '$PROFILE'"
EXPLICIT=$((${#REQUESTED[@]} > 0))
((EXPLICIT)) || REQUESTED=("${SF_IMAGE_NAMES[@]}")

sf_is_root || sf_die "build.sh runs as root (the images hold files owned by several users)"

IMAGES_DIR="$(sf_images_dir)"
WORK_ROOT="$IMAGES_DIR/.work"
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
OCI_SOURCE=https://github.com/storefront-dev/storefront

# --- per-image state, filled by the _plan_<name> functions -------------------------

IMG_INPUTS=()     # stamp lines (binary hashes, package versions, ...)
IMG_CONFIG=()     # umoci config options
IMG_FILES=()      # files of this repository the image is made from (hashed)
IMG_SKELETON=full # full: /etc, certs, users, /tmp...; none: only the image's own files
IMG_SKIP=""       # set by a plan to skip the image, with the reason
SF_IMG_USERS=()   # name:uid:gid:home added to /etc/passwd and /etc/group

_reset_image_state() {
  IMG_INPUTS=()
  IMG_CONFIG=()
  IMG_FILES=()
  IMG_SKELETON=full
  IMG_SKIP=""
  SF_IMG_USERS=()
  sf_img_reset_files
}

_labels() {
  local title="$1" description="$2" licenses="$3"
  IMG_CONFIG+=(
    --config.label "org.opencontainers.image.title=$title"
    --config.label "org.opencontainers.image.description=$description"
    --config.label "org.opencontainers.image.source=$OCI_SOURCE"
    --config.label "org.opencontainers.image.licenses=$licenses"
  )
}

_pkg_versions() {
  local pkg
  for pkg in "$@"; do
    IMG_INPUTS+=("package $pkg $(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || echo none)")
  done
}

_need_tools() {
  local tool pkg missing=()
  for tool in "$@"; do
    pkg="${tool#*:}"
    tool="${tool%%:*}"
    command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) || sf_apt_install "${missing[@]}" || sf_die "could not install ${missing[*]}"
}

# --- the shop's binaries ---------------------------------------------------------

# Sets REPLY to target/<profile>/$1 (building it first with --cargo-build).
_cargo_binary() {
  local bin="$1" target="${CARGO_TARGET_DIR:-$STOREFRONT_ROOT/target}" flags=()
  [[ "$target" == /* ]] || target="$PWD/$target"
  [[ "$PROFILE" == release ]] && flags=(--release)
  if ((CARGO_BUILD)); then
    sf_log "cargo build ${flags[*]} -p $bin --bin $bin (CARGO_TARGET_DIR=$target)"
    (cd "$STOREFRONT_ROOT" && CARGO_TARGET_DIR="$target" cargo build --locked "${flags[@]}" -p "$bin" --bin "$bin") ||
      sf_die "cargo build of $bin failed"
  fi
  REPLY="$target/$PROFILE/$bin"
  [[ -x "$REPLY" ]] || sf_die "$REPLY is missing: build it with
      cargo build${flags[*]:+ ${flags[*]}} -p $bin
  (or run build.sh with --cargo-build; CARGO_TARGET_DIR is honoured)"
}

# The runtime of docker/storefront.Dockerfile and docker/operator.Dockerfile:
# the binary in /usr/local/bin, user nonroot (65532), the CA bundle, and the
# shared libraries the binary needs (distroless has glibc and libgcc; a debug
# build also links libz).
_plan_shop_binary() {
  local bin="$1"
  _cargo_binary "$bin"
  SHOP_BINARY="$REPLY"
  IMG_INPUTS+=("binary $bin $PROFILE $(sha256sum <"$SHOP_BINARY" | cut -d' ' -f1)")
  _pkg_versions ca-certificates
  sf_img_add_libs_of "$SHOP_BINARY"
  IMG_CONFIG+=(
    --config.user 65532:65532
    --config.workingdir /home/nonroot
    --config.env "PATH=$STD_PATH"
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    --config.entrypoint "/usr/local/bin/$bin"
  )
}

_populate_shop_binary() {
  install -D -m 0755 "$SHOP_BINARY" "$1/usr/local/bin/${SHOP_BINARY##*/}"
}

_plan_storefront() {
  _plan_shop_binary storefront
  IMG_CONFIG+=(
    --config.cmd all
    --config.env "PRODUCT_DATABASE_URL=sqlite:///tmp/storefront-product.db?mode=rwc"
  )
  local port
  for port in 8080 50051 50052 50053 50054 50055 50056 9464; do
    IMG_CONFIG+=(--config.exposedports "$port/tcp")
  done
  _labels storefront "Storefront: seven gRPC services and a REST gateway in one binary" Apache-2.0
}
_populate_storefront() { _populate_shop_binary "$1"; }

_plan_storefront_operator() {
  _plan_shop_binary storefront-operator
  IMG_CONFIG+=(--config.cmd run --config.exposedports 8080/tcp)
  _labels storefront-operator "Reconciles Storefront resources into a running shop" Apache-2.0
}
_populate_storefront_operator() { _populate_shop_binary "$1"; }

# --- test stand-ins ------------------------------------------------------------------

_add_busybox() {
  _need_tools "busybox:busybox-static"
  if [[ ! -x "$SF_BUSYBOX" ]] || ldd "$SF_BUSYBOX" >/dev/null 2>&1; then
    sf_die "$SF_BUSYBOX is not a static busybox (apt-get install busybox-static)"
  fi
  _pkg_versions busybox-static
  sf_img_add_file "$SF_BUSYBOX"
}

# PostgreSQL 15 from Debian's postgresql-15, with the interface of the
# official postgres image (files/postgres-entrypoint.sh).
PG_MAJOR=15
_plan_postgres() {
  local lib="/usr/lib/postgresql/$PG_MAJOR"
  if [[ ! -x "$lib/bin/postgres" || ! -x "$lib/bin/psql" ]]; then
    sf_apt_install_no_start "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR" ||
      sf_die "could not install postgresql-$PG_MAJOR"
  fi
  _pkg_versions "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR" tzdata libc-bin
  _add_busybox
  sf_img_add_tree "$lib/bin"
  # JIT (llvmjit.so, and libLLVM with it) is left out: PostgreSQL runs
  # without it (jit is simply unavailable).
  sf_img_add_tree "$lib/lib" -name 'llvmjit*' -o -name bitcode
  sf_img_add_tree "/usr/share/postgresql/$PG_MAJOR" -name man
  sf_img_add_tree /usr/share/zoneinfo
  sf_img_add_tree /usr/lib/locale/C.utf8
  sf_img_add_file /usr/bin/locale # initdb imports the system's collations with `locale -a`
  sf_img_add_libs_of_collected
  IMG_FILES+=(hack/images/files/postgres-entrypoint.sh)
  SF_IMG_USERS+=(postgres:999:999:/var/lib/postgresql)
  IMG_CONFIG+=(
    --config.user 999:999
    --config.env "PATH=$lib/bin:$STD_PATH"
    --config.env "PG_MAJOR=$PG_MAJOR"
    --config.env PGDATA=/var/lib/postgresql/data
    --config.env LANG=C.UTF-8
    --config.entrypoint docker-entrypoint.sh
    --config.cmd postgres
    --config.exposedports 5432/tcp
    --config.volume /var/lib/postgresql/data
    --config.stopsignal SIGINT
    --config.label "org.opencontainers.image.version=$(dpkg-query -W -f '${Version}' "postgresql-$PG_MAJOR")"
  )
  _labels storefront-test/postgres "Test stand-in for the official postgres image: Debian's postgresql-$PG_MAJOR" PostgreSQL
}
_populate_postgres() {
  local rootfs="$1"
  sf_img_busybox "$rootfs"
  install -d -m 3777 -o 999 -g 999 "$rootfs/run/postgresql"
  install -d -m 0755 -o 999 -g 999 "$rootfs/var/lib/postgresql"
  install -d -m 1777 -o 999 -g 999 "$rootfs/var/lib/postgresql/data"
  install -d -m 0755 "$rootfs/docker-entrypoint-initdb.d"
  install -m 0755 "$SF_IMAGES_SRC/files/postgres-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
}

# Redis 7 from Debian's redis-server and redis-tools, with the interface of
# the official redis image (files/redis-entrypoint.sh).
_plan_redis() {
  if [[ ! -x /usr/bin/redis-server || ! -x /usr/bin/redis-cli ]]; then
    sf_apt_install_no_start redis-server redis-tools || sf_die "could not install redis-server"
  fi
  _pkg_versions redis-server redis-tools
  _add_busybox
  local f
  for f in redis-server redis-check-aof redis-check-rdb redis-cli redis-benchmark; do
    sf_img_add_file "/usr/bin/$f"
  done
  sf_img_add_libs_of_collected
  IMG_FILES+=(hack/images/files/redis-entrypoint.sh hack/images/files/redis.conf)
  SF_IMG_USERS+=(redis:999:999:/data)
  IMG_CONFIG+=(
    --config.user 999:999
    --config.workingdir /data
    --config.env "PATH=$STD_PATH"
    --config.entrypoint docker-entrypoint.sh
    --config.cmd redis-server
    --config.exposedports 6379/tcp
    --config.volume /data
    --config.label "org.opencontainers.image.version=$(dpkg-query -W -f '${Version}' redis-server)"
  )
  _labels storefront-test/redis "Test stand-in for the official redis image: Debian's redis-server" BSD-3-Clause
}
_populate_redis() {
  local rootfs="$1"
  sf_img_busybox "$rootfs"
  install -d -m 0755 -o 999 -g 999 "$rootfs/data"
  install -D -m 0644 "$SF_IMAGES_SRC/files/redis.conf" "$rootfs/usr/local/etc/redis/redis.conf"
  install -m 0755 "$SF_IMAGES_SRC/files/redis-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
}

# Kafka: a JRE cut from the host's OpenJDK 17 with jlink (the modules below,
# minus the desktop natives that would pull in X11, sound and font
# libraries), made once per JDK version into $IMAGES_DIR/.jre/<key>.
JDK_HOME=/usr/lib/jvm/java-17-openjdk-amd64
JRE_MODULES=java.base,java.desktop,java.instrument,java.logging,java.management,java.management.rmi,java.naming,java.net.http,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.xml,jdk.crypto.ec,jdk.jfr,jdk.management,jdk.management.agent,jdk.naming.dns,jdk.net,jdk.security.auth,jdk.security.jgss,jdk.unsupported,jdk.zipfs
JRE_DROP=(bin/jrunscript bin/rmiregistry lib/libawt_xawt.so lib/libjawt.so lib/libsplashscreen.so
  lib/libfontmanager.so lib/libjavajpeg.so lib/libjsound.so lib/liblcms.so)

# Sets JRE_DIR to the JRE (building it when missing).
_ensure_jre() {
  if [[ ! -x "$JDK_HOME/bin/jlink" || ! -f "$JDK_HOME/jmods/java.base.jmod" ]]; then
    sf_apt_install openjdk-17-jdk-headless || sf_die "could not install openjdk-17-jdk-headless (jlink and jmods)"
  fi
  local key
  key="$({
    dpkg-query -W -f '${Package} ${Version}\n' openjdk-17-jdk-headless openjdk-17-jre-headless
    printf '%s\n' "$JRE_MODULES" "${JRE_DROP[@]}"
  } | sha256sum | cut -c1-16)"
  JRE_DIR="$IMAGES_DIR/.jre/$key"
  IMG_INPUTS+=("jre $key modules=$JRE_MODULES")
  [[ -x "$JRE_DIR/bin/java" ]] && return 0
  sf_log "kafka: making a JRE with jlink (OpenJDK $(dpkg-query -W -f '${Version}' openjdk-17-jdk-headless))"
  rm -rf "$IMAGES_DIR/.jre"
  mkdir -p "$IMAGES_DIR/.jre"
  "$JDK_HOME/bin/jlink" --add-modules "$JRE_MODULES" --strip-debug --no-man-pages --no-header-files \
    --compress=2 --output "$JRE_DIR.tmp" || sf_die "jlink failed"
  local f
  for f in "${JRE_DROP[@]}"; do
    rm -f "$JRE_DIR.tmp/$f"
  done
  "$JRE_DIR.tmp/bin/java" -version >/dev/null 2>&1 || sf_die "the jlink'd JRE does not run"
  mv "$JRE_DIR.tmp" "$JRE_DIR"
}

KAFKA_TOOLS=(
  kafka-topics.sh:org.apache.kafka.tools.TopicCommand
  kafka-storage.sh:kafka.tools.StorageTool
  kafka-console-producer.sh:org.apache.kafka.tools.ConsoleProducer
  kafka-console-consumer.sh:org.apache.kafka.tools.consumer.ConsoleConsumer
  kafka-consumer-groups.sh:org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
  kafka-broker-api-versions.sh:org.apache.kafka.tools.BrokerApiVersionsCommand
  kafka-metadata-quorum.sh:org.apache.kafka.tools.MetadataQuorumCommand
  kafka-configs.sh:kafka.admin.ConfigCommand
  kafka-get-offsets.sh:org.apache.kafka.tools.GetOffsetShell
  kafka-log-dirs.sh:org.apache.kafka.tools.LogDirsCommand
)

_plan_kafka() {
  sf_kafka_ensure_installed
  _ensure_jre
  _add_busybox
  local jars
  jars="$(cd "$KAFKA_LIBS" && find . -maxdepth 1 -name '*.jar' -printf '%f %s\n' | LC_ALL=C sort)"
  [[ -n "$jars" ]] || sf_die "no jars in $KAFKA_LIBS"
  IMG_INPUTS+=("kafka $KAFKA_VERSION $(cat "$KAFKA_STAMP")" "jars $(sha256sum <<<"$jars" | cut -d' ' -f1)")
  SF_LDD_PATH="$JRE_DIR/lib:$JRE_DIR/lib/server" SF_LDD_SKIP="$JRE_DIR" \
    sf_img_add_libs_of "$JRE_DIR"/bin/* "$JRE_DIR"/lib/*.so "$JRE_DIR"/lib/server/*.so
  IMG_FILES+=(hack/lib/infra.sh hack/kafka/pom.xml hack/images/files/kafka-entrypoint.sh
    hack/images/files/kafka-run-class.sh hack/images/files/kafka-log4j2.xml hack/images/files/kafka-tools-log4j2.xml)
  SF_IMG_USERS+=(appuser:1000:1000:/home/appuser)
  IMG_CONFIG+=(
    --config.user 1000:1000
    --config.workingdir /opt/kafka
    --config.env "PATH=/opt/kafka/bin:/opt/java/openjdk/bin:$STD_PATH"
    --config.env JAVA_HOME=/opt/java/openjdk
    --config.entrypoint /usr/local/bin/docker-entrypoint.sh
    --config.exposedports 9092/tcp
    --config.exposedports 9093/tcp
    --config.volume /var/lib/kafka/data
    --config.label "org.opencontainers.image.version=$KAFKA_VERSION"
  )
  _labels storefront-test/kafka "Test stand-in for apache/kafka: Kafka $KAFKA_VERSION (KRaft) from Maven Central on OpenJDK 17" Apache-2.0
}
_populate_kafka() {
  local rootfs="$1" spec jar classes
  if command -v unzip >/dev/null 2>&1; then
    classes="$(for jar in "$KAFKA_LIBS"/*.jar; do unzip -Z1 "$jar"; done 2>/dev/null)"
    for spec in "${KAFKA_TOOLS[@]}"; do
      grep -qxF "$(tr . / <<<"${spec#*:}").class" <<<"$classes" ||
        sf_die "Kafka $KAFKA_VERSION has no class ${spec#*:} (for ${spec%%:*})"
    done
  fi
  sf_img_busybox "$rootfs"
  install -d -m 0755 "$rootfs/opt/java" "$rootfs/opt/kafka/libs" "$rootfs/opt/kafka/bin" "$rootfs/opt/kafka/etc"
  cp -a "$JRE_DIR" "$rootfs/opt/java/openjdk"
  chown -R 0:0 "$rootfs/opt/java/openjdk"
  install -m 0644 "$KAFKA_LIBS"/*.jar "$rootfs/opt/kafka/libs/"
  install -m 0755 "$SF_IMAGES_SRC/files/kafka-run-class.sh" "$rootfs/opt/kafka/bin/kafka-run-class.sh"
  for spec in "${KAFKA_TOOLS[@]}"; do
    printf '#!/bin/sh\nexec kafka-run-class.sh %s "$@"\n' "${spec#*:}" >"$rootfs/opt/kafka/bin/${spec%%:*}"
    chmod 0755 "$rootfs/opt/kafka/bin/${spec%%:*}"
  done
  install -m 0644 "$SF_IMAGES_SRC/files/kafka-log4j2.xml" "$rootfs/opt/kafka/etc/log4j2.xml"
  install -m 0644 "$SF_IMAGES_SRC/files/kafka-tools-log4j2.xml" "$rootfs/opt/kafka/etc/tools-log4j2.xml"
  install -d -m 0755 -o 1000 -g 1000 "$rootfs/opt/kafka/config" "$rootfs/home/appuser" \
    "$rootfs/var/lib/kafka" "$rootfs/var/lib/kafka/data"
  install -m 0755 "$SF_IMAGES_SRC/files/kafka-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
}

# The pod sandbox: hack/images/pause.c, static, alone in the image (as
# registry.k8s.io/pause is), run as 65535.
_plan_pause() {
  _need_tools gcc:gcc
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || sf_apt_install libc6-dev || sf_die "could not install libc6-dev"
  IMG_INPUTS+=("gcc $(gcc -dumpfullversion) libc6-dev $(dpkg-query -W -f '${Version}' libc6-dev)")
  IMG_FILES+=(hack/images/pause.c)
  IMG_SKELETON=none
  IMG_CONFIG+=(--config.user 65535:65535 --config.entrypoint /pause)
  _labels pause "Pod sandbox: sleeps until SIGINT/SIGTERM, reaps orphans (storefront test node)" Apache-2.0
}
_populate_pause() {
  local rootfs="$1"
  gcc -std=c11 -Os -Wall -Wextra -Werror -static -s -o "$rootfs/pause" "$SF_IMAGES_SRC/pause.c" ||
    sf_die "could not compile pause.c"
  chmod 0755 "$rootfs/pause"
}

# CoreDNS from $COREDNS_BIN (built by hack/cluster). The binary carries the
# file capability cap_net_bind_service (as upstream's image does), so it can
# listen on port 53 as uid 65532 when the pod leaves NET_BIND_SERVICE in its
# bounding set (the usual CoreDNS Deployment adds it; see README.md).
_plan_coredns() {
  if [[ -z "${COREDNS_BIN:-}" || ! -x "${COREDNS_BIN:-}" ]]; then
    local why="COREDNS_BIN is not set"
    [[ -z "${COREDNS_BIN:-}" ]] || why="COREDNS_BIN=$COREDNS_BIN is not an executable file"
    ((EXPLICIT)) && sf_die "coredns: $why (point it at the coredns binary hack/cluster builds)"
    IMG_SKIP="$why (point it at the coredns binary hack/cluster builds)"
    return 0
  fi
  _need_tools setcap:libcap2-bin
  IMG_INPUTS+=("coredns $(sha256sum <"$COREDNS_BIN" | cut -d' ' -f1)")
  sf_img_add_libs_of "$COREDNS_BIN"
  IMG_CONFIG+=(
    --config.user 65532:65532
    --config.env "PATH=$STD_PATH"
    --config.entrypoint /coredns
    --config.exposedports 53/udp
    --config.exposedports 53/tcp
    --config.exposedports 9153/tcp
  )
  _labels storefront-test/coredns "CoreDNS for the storefront test node (built from its Go module by hack/cluster)" Apache-2.0
}
_populate_coredns() {
  local rootfs="$1"
  install -m 0755 "$COREDNS_BIN" "$rootfs/coredns"
  setcap cap_net_bind_service=+ep "$rootfs/coredns" || sf_die "setcap on coredns failed"
}

# --- the driver ----------------------------------------------------------------------

COMMON_FILES=(hack/images/build.sh hack/images/rootfs.sh hack/images/lib.sh hack/lib/common.sh)

# Writes the inputs of the planned image to $2 (the stamp is their sha256).
_write_inputs() {
  local name="$1" out="$2" fn="${1//-/_}" f
  {
    printf 'image %s %s\n' "$name" "$(sf_image_ref "$name")"
    for f in "${COMMON_FILES[@]}" "${IMG_FILES[@]}"; do
      printf 'file %s %s\n' "$f" "$(sha256sum <"$STOREFRONT_ROOT/$f" | cut -d' ' -f1)"
    done
    printf '%s\n' "${IMG_INPUTS[@]}"
    printf 'config %q\n' "${IMG_CONFIG[@]}"
    printf 'users %s\n' "${SF_IMG_USERS[*]}"
    printf 'skeleton %s\n' "$IMG_SKELETON"
    printf 'host-files %s\n' "${#SF_IMG_HOST_FILES[@]}"
    sf_img_host_files_stat | sed 's/^/host /'
  } >"$out"
}

_human() {
  numfmt --to=iec --suffix=B --format=%.1f "$1" 2>/dev/null || printf '%sB' "$1"
}

SUMMARY=()

_build_one() {
  local name="$1" fn="${1//-/_}" ref archive stamp_file info_file work
  ref="$(sf_image_ref "$name")"
  archive="$(sf_image_archive "$name")"
  stamp_file="$IMAGES_DIR/$name.stamp"
  info_file="$IMAGES_DIR/$name.info"
  work="$WORK_ROOT/$name"

  _reset_image_state
  "_plan_$fn"
  if [[ -n "$IMG_SKIP" ]]; then
    sf_warn "$name: skipped: $IMG_SKIP"
    SUMMARY+=("$(printf '%-20s %-45s %s' "$name" "$ref" "skipped ($IMG_SKIP)")")
    return 0
  fi

  rm -rf "$work"
  mkdir -p "$work"
  _write_inputs "$name" "$work/inputs"
  local stamp
  stamp="$(sha256sum <"$work/inputs" | cut -d' ' -f1)"
  if ((!FORCE)) && [[ -f "$archive" && -f "$info_file" && "$(cat "$stamp_file" 2>/dev/null)" == "$stamp" ]]; then
    rm -rf "$work"
    SUMMARY+=("$(printf '%-20s %-45s cached  %s' "$name" "$ref" "$(cat "$info_file")")")
    printf '%s\n' "$archive"
    return 0
  fi

  local start=$SECONDS rootfs="$work/rootfs"
  sf_log "$name: building $ref"
  if [[ "$IMG_SKELETON" == full ]]; then
    sf_img_skeleton "$rootfs"
  else
    install -d -m 0755 "$rootfs"
  fi
  sf_img_copy_host_files "$rootfs"
  "_populate_$fn" "$rootfs"

  local rootfs_bytes
  rootfs_bytes="$(du -sb "$rootfs" | cut -f1)"
  sf_img_pack "$ref" "$rootfs" "$archive" "$work" "${IMG_CONFIG[@]}"
  local layer_bytes
  layer_bytes="$(sf_img_layer_bytes "$archive")"
  printf 'rootfs %s, layer %s (gzip), %s host files\n' "$(_human "$rootfs_bytes")" "$(_human "$layer_bytes")" \
    "${#SF_IMG_HOST_FILES[@]}" >"$info_file"
  cp "$work/inputs" "$IMAGES_DIR/$name.inputs"
  printf '%s\n' "$stamp" >"$stamp_file"
  rm -rf "$work"
  sf_info "$name: $(cat "$info_file") in $((SECONDS - start))s"
  SUMMARY+=("$(printf '%-20s %-45s built %3ss %s' "$name" "$ref" "$((SECONDS - start))" "$(cat "$info_file")")")
  printf '%s\n' "$archive"
}

_need_tools umoci:umoci jq:jq
mkdir -p "$IMAGES_DIR"
exec 9>"$IMAGES_DIR/.lock"
flock -w 900 9 || sf_die "another build.sh holds $IMAGES_DIR/.lock"
trap 'rm -rf "$WORK_ROOT"' EXIT

for name in "${REQUESTED[@]}"; do
  _build_one "$name"
done

sf_log "images ($IMAGES_DIR):"
for line in "${SUMMARY[@]}"; do
  sf_info "$line"
done
