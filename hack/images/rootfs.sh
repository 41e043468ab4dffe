# shellcheck shell=bash
#
# Helpers of hack/images/build.sh: collect host files (with the shared
# libraries they need), lay out a root filesystem and pack it into an OCI
# archive with umoci. Source it; do not execute it.
#
# Host files keep their host path in the image, with the directory part made
# canonical (Debian bookworm is merged-/usr: /lib/x86_64-linux-gnu/libz.so.1
# is stored as /usr/lib/x86_64-linux-gnu/libz.so.1, and the image gets the
# host's /lib -> usr/lib links). Every symlink met on the way is kept as a
# symlink and its target is collected too.

[[ -n "${_SF_IMAGES_ROOTFS_SH:-}" ]] && return 0
_SF_IMAGES_ROOTFS_SH=1

# The host files the image being planned gets (absolute, canonical dirs).
declare -ga SF_IMG_HOST_FILES=()
declare -gA _SF_IMG_SEEN=()
declare -gA _SF_IMG_CANON=()

sf_img_reset_files() {
  SF_IMG_HOST_FILES=()
  _SF_IMG_SEEN=()
}

# Sets REPLY to the canonical form of directory $1 (cached).
_sf_img_canon_dir() {
  local dir="$1"
  if [[ -z "${_SF_IMG_CANON[$dir]+x}" ]]; then
    _SF_IMG_CANON[$dir]="$(cd "$dir" 2>/dev/null && pwd -P)" || return 1
  fi
  REPLY="${_SF_IMG_CANON[$dir]}"
}

# Adds host file $1 (a regular file or a symlink, followed to its end).
sf_img_add_file() {
  local path="$1" dir base target hops=0
  while true; do
    [[ "$path" == /* ]] || sf_die "sf_img_add_file: $path is not an absolute path"
    dir="${path%/*}"
    base="${path##*/}"
    _sf_img_canon_dir "${dir:-/}" || sf_die "no directory ${dir:-/} (for $1)"
    path="${REPLY%/}/$base"
    [[ -z "${_SF_IMG_SEEN[$path]+x}" ]] || return 0
    if [[ -L "$path" ]]; then
      _SF_IMG_SEEN[$path]=1
      SF_IMG_HOST_FILES+=("$path")
      target="$(readlink "$path")"
      [[ "$target" == /* ]] || target="${path%/*}/$target"
      path="$target"
      ((++hops < 40)) || sf_die "symlink loop at $1"
    elif [[ -f "$path" ]]; then
      _SF_IMG_SEEN[$path]=1
      SF_IMG_HOST_FILES+=("$path")
      return 0
    elif [[ -d "$path" ]]; then
      sf_img_add_tree "$path"
      return 0
    else
      sf_die "missing host file $path (for $1)"
    fi
  done
}

# Adds every file and symlink under host directory $1; further arguments are
# `find` tests that exclude (e.g. -name 'llvmjit*' -o -path '*/bitcode').
sf_img_add_tree() {
  local top="$1" path
  shift
  _sf_img_canon_dir "$top" || sf_die "missing host directory $top"
  top="$REPLY"
  local -a prune=()
  if (($# > 0)); then
    prune=(\( "$@" \) -prune -o)
  fi
  while IFS= read -r -d '' path; do
    sf_img_add_file "$path"
  done < <(find "$top" "${prune[@]}" \( -type f -o -type l \) -print0)
}

# Adds the shared libraries (and dynamic loader) the ELF files among the
# arguments load, as ldd resolves them on this host. With SF_LDD_PATH set,
# ldd also searches there (LD_LIBRARY_PATH), and libraries found under
# SF_LDD_SKIP (a directory prefix) are left out: they are not host files.
sf_img_add_libs_of() {
  (($# > 0)) || return 0
  local out line lib current="" missing=()
  out="$(LD_LIBRARY_PATH="${SF_LDD_PATH:-}" ldd "$@" 2>&1)" || true
  while IFS= read -r line; do
    case "$line" in
      /*:) current="${line%:}" ;;
      *"=> not found"*) missing+=("$current needs ${line%% *}") ;;
      *"=> /"*)
        lib="${line#*=> }"
        lib="${lib%% (*}"
        [[ -n "${SF_LDD_SKIP:-}" && "$lib" == "$SF_LDD_SKIP"/* ]] || sf_img_add_file "$lib"
        ;;
      [[:space:]]/*" (0x"*)
        lib="${line#"${line%%/*}"}"
        lib="${lib%% (*}"
        sf_img_add_file "$lib"
        ;;
    esac
  done <<<"$out"
  if ((${#missing[@]} > 0)); then
    sf_die "shared libraries not found on this host: ${missing[*]}"
  fi
}

# Adds the libraries of every collected host file that may be ELF (an
# executable file or a *.so*), so that the image's own binaries find theirs.
sf_img_add_libs_of_collected() {
  local path candidates=()
  for path in "${SF_IMG_HOST_FILES[@]}"; do
    [[ -f "$path" && ! -L "$path" ]] || continue
    if [[ -x "$path" || "${path##*/}" == *.so* ]]; then
      candidates+=("$path")
    fi
  done
  sf_img_add_libs_of "${candidates[@]}"
}

# Prints one line per collected host file: path, size, mtime, mode (for the
# stamp: any change of a copied file rebuilds the image).
sf_img_host_files_stat() {
  ((${#SF_IMG_HOST_FILES[@]} > 0)) || return 0
  printf '%s\n' "${SF_IMG_HOST_FILES[@]}" | LC_ALL=C sort | tr '\n' '\0' |
    xargs -0 stat -c '%n %s %Y %f'
}

# Copies the collected host files into root filesystem $1 (same paths).
sf_img_copy_host_files() {
  local rootfs="$1"
  ((${#SF_IMG_HOST_FILES[@]} > 0)) || return 0
  printf '%s\0' "${SF_IMG_HOST_FILES[@]#/}" |
    tar -C / --null --no-recursion -T - -cf - |
    tar -C "$rootfs" -xpf -
}

# --- the root filesystem -------------------------------------------------------

# Lays out the skeleton every image shares, in new directory $1: the host's
# merged-/usr top-level links, /etc basics, /tmp. Users come from
# SF_IMG_USERS ("name:uid:gid:home", added to root, nobody and nonroot).
sf_img_skeleton() {
  local rootfs="$1" d entry name uid gid home
  install -d -m 0755 "$rootfs"
  for d in bin sbin lib lib64; do
    if [[ -L "/$d" ]]; then
      ln -s "$(readlink "/$d")" "$rootfs/$d"
      install -d -m 0755 "$rootfs/usr/$d"
    fi
  done
  install -d -m 0755 "$rootfs"/{etc,dev,proc,sys,run,var,usr/local/bin,etc/ssl/certs}
  install -d -m 0700 "$rootfs/root"
  install -d -m 1777 "$rootfs/tmp"
  ln -s ../run "$rootfs/var/run"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"

  {
    printf 'root:x:0:0:root:/root:/sbin/nologin\n'
    printf 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n'
    printf 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n'
  } >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
  for entry in "${SF_IMG_USERS[@]}"; do
    IFS=: read -r name uid gid home <<<"$entry"
    printf '%s:x:%s:%s:%s:%s:/sbin/nologin\n' "$name" "$uid" "$gid" "$name" "$home" >>"$rootfs/etc/passwd"
    printf '%s:x:%s:\n' "$name" "$gid" >>"$rootfs/etc/group"
  done
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"

  cat >"$rootfs/etc/nsswitch.conf" <<'EOF'
passwd:    files
group:     files
shadow:    files
hosts:     files dns
networks:  files
protocols: files
services:  files
EOF
  # The runtime (kubelet, runc) normally mounts its own over these.
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
  : >"$rootfs/etc/resolv.conf"
  chmod 0644 "$rootfs/etc/nsswitch.conf" "$rootfs/etc/hosts" "$rootfs/etc/resolv.conf"
}

# Puts busybox (from busybox-static) in root filesystem $1 as /usr/bin/busybox
# with a link for every applet that has no file of its own there (so /bin/sh,
# ls, ps, cat, ... exist; the image's real binaries win).
sf_img_busybox() {
  local rootfs="$1" applet
  install -D -m 0755 "$SF_BUSYBOX" "$rootfs/usr/bin/busybox"
  while IFS= read -r applet; do
    [[ -n "$applet" && "$applet" != busybox ]] || continue
    [[ -e "$rootfs/usr/bin/$applet" || -L "$rootfs/usr/bin/$applet" ]] && continue
    ln -s busybox "$rootfs/usr/bin/$applet"
  done < <("$SF_BUSYBOX" --list)
}

SF_BUSYBOX="${SF_BUSYBOX:-/bin/busybox}"

# --- packing -----------------------------------------------------------------------

# Packs root filesystem $2 as one layer into a new OCI image named $1 (a full
# reference, e.g. docker.io/library/storefront:dev), applies the umoci config
# options that follow (--config.entrypoint=..., ...), and writes the OCI
# archive (a tar of the image layout) to $3 via a temporary file in $4 (a
# scratch directory). The index names the image both ways containerd reads:
# io.containerd.image.name (the full reference) and
# org.opencontainers.image.ref.name (the tag), with its platform.
sf_img_pack() {
  local ref="$1" rootfs="$2" archive="$3" scratch="$4"
  shift 4
  local tag="${ref##*:}" layout="$scratch/layout"
  [[ "$tag" != "$ref" && "$tag" != */* ]] || sf_die "sf_img_pack: $ref has no tag"
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci insert --image "$layout:$tag" --history.created_by "hack/images/build.sh: host files" "$rootfs" /
  umoci config --image "$layout:$tag" --os linux --architecture amd64 --author "storefront hack/images" \
    --history.created_by "hack/images/build.sh: config" "$@"
  umoci gc --layout "$layout"

  local index="$layout/index.json"
  jq --arg ref "$ref" --arg tag "$tag" '
      .manifests |= map(
        .platform = {architecture: "amd64", os: "linux"}
        | .annotations = {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $tag})' \
    "$index" >"$index.new"
  [[ "$(jq '.manifests | length' "$index.new")" == 1 ]] || sf_die "sf_img_pack: expected one manifest in $index"
  mv "$index.new" "$index"

  tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner --mode=u+rw,go+r \
    -cf "$archive.tmp" oci-layout index.json blobs
  mv -f "$archive.tmp" "$archive"
}

# Prints the bytes of the (compressed) layers of OCI archive $1.
sf_img_layer_bytes() {
  local archive="$1" manifest
  manifest="$(tar -xOf "$archive" index.json | jq -r '.manifests[0].digest | sub("sha256:"; "blobs/sha256/")')"
  tar -xOf "$archive" "$manifest" | jq '[.layers[].size] | add'
}
