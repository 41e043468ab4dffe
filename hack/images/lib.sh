# shellcheck shell=bash
#
# The container images hack/images/build.sh makes, for scripts that import
# them into a containerd (the real test node). Source it; do not execute it.
# It only names things; it builds nothing and needs nothing installed.
#
#   source hack/images/lib.sh
#   sf_image_names                  # storefront storefront-operator postgres ... (one a line)
#   sf_image_ref NAME               # e.g. docker.io/storefront-test/postgres:15
#   sf_image_archive NAME           # the OCI archive build.sh writes for NAME
#   sf_images_list [NAME...]        # "NAME REFERENCE ARCHIVE" a line (all by default)
#   sf_images_build [ARGS...]       # runs hack/images/build.sh ARGS (paths on stdout)
#   sf_image_import NAME CTR...     # runs: CTR... images import <archive of NAME>
#
# e.g. sf_images_build pause coredns &&
#      sf_image_import pause /path/to/ctr --address "$sock" -n k8s.io
#
# Archives live under ${STOREFRONT_CACHE_DIR:-$HOME/.cache/storefront}/images/,
# read when the function is called (not when this file is sourced).

[[ -n "${_SF_IMAGES_LIB_SH:-}" ]] && return 0
_SF_IMAGES_LIB_SH=1

_SF_IMAGES_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

# Every image, in build order. The first two are the shop's own; the rest are
# test stand-ins (see hack/images/README.md).
SF_IMAGE_NAMES=(storefront storefront-operator postgres redis kafka pause coredns)

sf_image_names() {
  printf '%s\n' "${SF_IMAGE_NAMES[@]}"
}

# The reference an image is imported under (what pods name in `image:`).
sf_image_ref() {
  case "${1:-}" in
    storefront) printf '%s\n' docker.io/library/storefront:dev ;;
    storefront-operator) printf '%s\n' docker.io/library/storefront-operator:dev ;;
    postgres) printf '%s\n' docker.io/storefront-test/postgres:15 ;;
    redis) printf '%s\n' docker.io/storefront-test/redis:7 ;;
    kafka) printf '%s\n' docker.io/storefront-test/kafka:4 ;;
    pause) printf '%s\n' registry.k8s.io/pause:3.10 ;;
    coredns) printf '%s\n' docker.io/storefront-test/coredns:1.14.7 ;;
    *)
      printf 'sf_image_ref: unknown image %q (known: %s)\n' "${1:-}" "${SF_IMAGE_NAMES[*]}" >&2
      return 1
      ;;
  esac
}

# The directory holding the archives, their stamps and the build's scratch.
sf_images_dir() {
  printf '%s/images\n' "${STOREFRONT_CACHE_DIR:-${HOME:-/root}/.cache/storefront}"
}

# The OCI archive (a tar of an OCI image layout) of image $1. It exists once
# build.sh has built the image.
sf_image_archive() {
  sf_image_ref "${1:-}" >/dev/null || return 1
  printf '%s/%s.oci.tar\n' "$(sf_images_dir)" "$1"
}

# Prints "NAME REFERENCE ARCHIVE" for each image named (all by default).
sf_images_list() {
  local name
  (($# > 0)) || set -- "${SF_IMAGE_NAMES[@]}"
  for name in "$@"; do
    printf '%s %s %s\n' "$name" "$(sf_image_ref "$name")" "$(sf_image_archive "$name")" || return 1
  done
}

# Builds images (all by default; see build.sh --help). Archive paths on stdout.
sf_images_build() {
  bash "$_SF_IMAGES_LIB_DIR/build.sh" "$@"
}

# Imports image $1 with the ctr command line given after it, e.g.
#   sf_image_import storefront ctr --address /run/x/containerd.sock -n k8s.io
sf_image_import() {
  local name="${1:-}" archive
  archive="$(sf_image_archive "$name")" || return 1
  shift
  if (($# == 0)); then
    printf 'sf_image_import: give the ctr command after the image name\n' >&2
    return 1
  fi
  if [[ ! -f "$archive" ]]; then
    printf 'sf_image_import: %s is not built yet (hack/images/build.sh %s)\n' "$archive" "$name" >&2
    return 1
  fi
  "$@" images import "$archive"
}
