# shellcheck shell=bash
#
# The real node of the test cluster: containerd 2.x (with Debian's runc),
# kubelet and kube-proxy at the control plane's version, Debian's CNI plugins
# on a bridge of its own, a volume provisioner, and CoreDNS in a pod, so that
# pods really run and Services and cluster DNS work as on kind. Sourced by
# lib.sh (after its own definitions); `sf_cluster_up` calls `sf_node_up`
# unless CLUSTER_REAL_NODE=0, `sf_cluster_down` calls `sf_node_down`.
#
# One node per host: its network (bridge, routes, iptables chains), its
# cgroups and its state under /var/lib and /run are the host's, whichever
# data dir started it (recorded in $NODE_RUN/owner).
#
# Where the pods go: the apiserver's PodNodeSelector admission gives every
# namespace the kwok node by default (its pods run nothing: the operator
# benchmark's 100 shops); a namespace annotated
#   scheduler.alpha.kubernetes.io/node-selector: storefront.dev/node=real
# (`sf_node_namespace NAME`, or `TestNamespace::on_real_node` in Rust) runs its
# pods on this node.
#
# Network (nothing routed or NATed off the host):
#   bridge sfbr0 10.244.0.1/24 (pods 10.244.0.2-254), Services 10.96.0.0/16
#   routed onto the bridge, a FORWARD guard that drops pod traffic to any
#   other interface; the apiserver is reached from pods at 10.96.0.1:443 ->
#   10.244.0.1:$KUBE_APISERVER_PORT (socat to 127.0.0.1); cluster DNS 10.96.0.10.

[[ -n "${_SF_NODE_SH:-}" ]] && return 0
_SF_NODE_SH=1

NODE_NAME="storefront-node-0"
NODE_LABEL="storefront.dev/node=real"
NODE_ROOT="${NODE_ROOT:-/var/lib/storefront-node}"
NODE_RUN="${NODE_RUN:-/run/storefront-node}"
NODE_BRIDGE="sfbr0"
NODE_IP="10.244.0.1"
NODE_POD_CIDR="10.244.0.0/24"
NODE_DNS_IP="10.96.0.10"
NODE_GUARD_CHAIN="SF-NODE-GUARD"
KUBELET_PORT="${KUBELET_PORT:-56250}"
KUBELET_HEALTHZ_PORT="${KUBELET_HEALTHZ_PORT:-56248}"
KUBE_PROXY_HEALTHZ_PORT="${KUBE_PROXY_HEALTHZ_PORT:-56256}"
KUBE_PROXY_METRICS_PORT="${KUBE_PROXY_METRICS_PORT:-56249}"
NODE_CONTAINERD_SOCKET="$NODE_RUN/containerd/containerd.sock"
NODE_CGROUP_ROOT="storefront-node"
# What must be on the host, by command or file, with the Debian package.
NODE_HOST_NEEDS=(
  runc:runc
  /usr/lib/cni/bridge:containernetworking-plugins
  iptables:iptables
  conntrack:conntrack
  socat:socat
  umoci:umoci
  busybox:busybox-static
  ip:iproute2
  nsenter:util-linux
)

# --- build ------------------------------------------------------------------------

NODE_TOOLS_DIR="$CLUSTER_SCRIPT_DIR/node-tools"
COREDNS_TOOLS_DIR="$CLUSTER_SCRIPT_DIR/coredns-tools"
# The version a go.mod requires of module $2 (in a require block or on a
# one-line require).
_sf_node_mod_version() {
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"
}
CONTAINERD_VERSION="$(_sf_node_mod_version "$NODE_TOOLS_DIR" github.com/containerd/containerd/v2)"
COREDNS_VERSION="$(_sf_node_mod_version "$COREDNS_TOOLS_DIR" github.com/coredns/coredns)"
[[ -n "$CONTAINERD_VERSION" && -n "$COREDNS_VERSION" ]] ||
  sf_die "cannot read the pinned containerd and CoreDNS versions from $NODE_TOOLS_DIR and $COREDNS_TOOLS_DIR"
NODE_VERSIONS="k8s-${K8S_VERSION}_containerd-${CONTAINERD_VERSION}_coredns-${COREDNS_VERSION}"
NODE_BIN_DIR="$CLUSTER_CACHE_DIR/node_$NODE_VERSIONS/bin"
NODE_STAMP="$CLUSTER_CACHE_DIR/node_$NODE_VERSIONS/.built"
# dir:name:package
NODE_BINARIES=(
  tools:kubelet:k8s.io/kubernetes/cmd/kubelet
  tools:kube-proxy:k8s.io/kubernetes/cmd/kube-proxy
  tools:node-volumes:./cmd/node-volumes
  node-tools:containerd:github.com/containerd/containerd/v2/cmd/containerd
  node-tools:containerd-shim-runc-v2:github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
  node-tools:ctr:github.com/containerd/containerd/v2/cmd/ctr
  coredns-tools:coredns:.
)

_sf_node_build_id() {
  cat "$CLUSTER_TOOLS_DIR"/go.{mod,sum} "$NODE_TOOLS_DIR"/go.{mod,sum} "$COREDNS_TOOLS_DIR"/go.{mod,sum} \
    "$CLUSTER_TOOLS_DIR"/cmd/node-volumes/*.go "$COREDNS_TOOLS_DIR"/*.go | sha256sum | cut -d' ' -f1
}

sf_node_built() {
  [[ -f "$NODE_STAMP" && "$(cat "$NODE_STAMP")" == "$(_sf_node_build_id)" ]] || return 1
  local entry rest
  for entry in "${NODE_BINARIES[@]}"; do
    rest="${entry#*:}"
    [[ -x "$NODE_BIN_DIR/${rest%%:*}" ]] || return 1
  done
}

# Builds the node's binaries once (the Go caches are the control plane's).
sf_node_build() {
  sf_node_built && return 0
  _sf_cluster_go_env
  mkdir -p "$CLUSTER_CACHE_DIR"
  exec 8>"$CLUSTER_CACHE_DIR/build.lock"
  flock -w 3600 8 || sf_die "another build holds $CLUSTER_CACHE_DIR/build.lock (waited an hour)"
  sf_node_built && return 0
  local k8s_pkg=k8s.io/component-base/version started=$SECONDS
  local k8s_ldflags="-s -w -X $k8s_pkg.gitVersion=$K8S_VERSION -X $k8s_pkg.gitMajor=1 -X $k8s_pkg.gitMinor=$K8S_MINOR"
  k8s_ldflags+=" -X $k8s_pkg.gitTreeState=clean -X $k8s_pkg.buildDate=1970-01-01T00:00:00Z"
  local out="$NODE_BIN_DIR.tmp.$$" entry dir rest name pkg ldflags tags
  rm -rf "$out"
  mkdir -p "$out"
  sf_log "Building the real node ($NODE_VERSIONS), -p $CLUSTER_BUILD_JOBS, nice 10"
  for entry in "${NODE_BINARIES[@]}"; do
    dir="${entry%%:*}" rest="${entry#*:}"
    name="${rest%%:*}" pkg="${rest#*:}"
    ldflags="-s -w" tags=""
    [[ "$dir" == tools ]] && ldflags="$k8s_ldflags"
    [[ "$dir" == node-tools ]] && tags="no_btrfs no_devmapper no_zfs"
    sf_info "go build $pkg"
    (cd "$CLUSTER_SCRIPT_DIR/$dir" &&
      nice -n 10 go build -p "$CLUSTER_BUILD_JOBS" -trimpath -tags "$tags" -ldflags="$ldflags" -o "$out/$name" "$pkg") ||
      {
        rm -rf "$out"
        sf_die "building $name ($pkg) failed"
      }
  done
  rm -rf "$NODE_BIN_DIR"
  mv "$out" "$NODE_BIN_DIR"
  _sf_node_build_id >"$NODE_STAMP"
  sf_log "Built the real node in $((SECONDS - started))s: $NODE_BIN_DIR"
}

# --- the host --------------------------------------------------------------------

# Dies, saying what is missing, unless this host can run the node's pods.
sf_node_check_host() {
  local missing=() entry what pkg
  sf_is_root || sf_die "the real node needs root (namespaces, cgroups, mounts, iptables); run as root, or set CLUSTER_REAL_NODE=0 for the kwok node only"
  for entry in "${NODE_HOST_NEEDS[@]}"; do
    what="${entry%%:*}" pkg="${entry#*:}"
    if [[ "$what" == /* ]]; then [[ -e "$what" ]] || missing+=("$pkg"); else command -v "$what" >/dev/null 2>&1 || missing+=("$pkg"); fi
  done
  if ((${#missing[@]})); then
    sf_apt_install "${missing[@]}" || true
  fi
  local problems=()
  for entry in "${NODE_HOST_NEEDS[@]}"; do
    what="${entry%%:*}" pkg="${entry#*:}"
    if [[ "$what" == /* ]]; then [[ -e "$what" ]] || problems+=("$what (Debian package $pkg)"); else command -v "$what" >/dev/null 2>&1 || problems+=("$what (Debian package $pkg)"); fi
  done
  grep -qw overlay /proc/filesystems || problems+=("the overlay filesystem (kernel module overlay)")
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || problems+=("bridge netfilter (kernel module br_netfilter)")
  local controller
  for controller in cpu memory pids cpuset devices freezer; do
    [[ -d "/sys/fs/cgroup/$controller" ]] || grep -qw "$controller" /sys/fs/cgroup/cgroup.controllers 2>/dev/null ||
      problems+=("the $controller cgroup controller")
  done
  unshare --net --mount --pid --fork true 2>/dev/null || problems+=("new network, mount and PID namespaces (unshare --net --mount --pid failed)")
  if ((${#problems[@]})); then
    sf_die "this host cannot run the real test node's containers; missing:
$(printf '  - %s\n' "${problems[@]}")
Fix these, or set CLUSTER_REAL_NODE=0 to run only the control plane and the kwok node (the end-to-end tests with running pods are then skipped)."
  fi
}

# The node must be this data dir's (one node per host).
_sf_node_claim() {
  mkdir -p "$NODE_RUN"
  local owner
  owner="$(cat "$NODE_RUN/owner" 2>/dev/null || true)"
  if [[ -n "$owner" && "$owner" != "$CLUSTER_DATA_DIR" ]] && _sf_node_any_running "$owner"; then
    sf_die "the real node of another cluster ($owner) runs on this host; stop it first (STOREFRONT_DATA_DIR=${owner%/cluster} hack/cluster/down.sh)"
  fi
  echo "$CLUSTER_DATA_DIR" >"$NODE_RUN/owner"
  # The kubelet writes its device-plugin and pod-resources sockets under
  # /var/lib/kubelet whatever its root dir: down removes it if up made it.
  mkdir -p "$NODE_ROOT"
  if [[ ! -e /var/lib/kubelet ]]; then
    touch "$NODE_ROOT/made-var-lib-kubelet"
  fi
}

_sf_node_any_running() {
  local what pid
  for what in kubelet kube-proxy containerd; do
    pid="$(sf_read_pidfile "$1/run/$what.pid")" && return 0
  done
  return 1
}

# Bridge, routes, sysctls and the forward guard (idempotent).
_sf_node_network() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge || sf_die "cannot create the bridge $NODE_BRIDGE"
  fi
  ip addr replace "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Service addresses stay on the bridge when no rule translates them.
  ip route replace "$CLUSTER_SERVICE_CIDR" dev "$NODE_BRIDGE" src "$NODE_IP"
  [[ -s "$NODE_RUN/ip_forward.orig" ]] || cat /proc/sys/net/ipv4/ip_forward >"$NODE_RUN/ip_forward.orig"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  # Pods talk to each other, to Services and to this host; nothing leaves it.
  iptables -w -N "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -w -F "$NODE_GUARD_CHAIN"
  iptables -w -A "$NODE_GUARD_CHAIN" -s "$NODE_POD_CIDR" ! -o "$NODE_BRIDGE" -j DROP
  iptables -w -A "$NODE_GUARD_CHAIN" -d "$NODE_POD_CIDR" ! -i "$NODE_BRIDGE" -j DROP
  iptables -w -C FORWARD -j "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$NODE_GUARD_CHAIN"
  mkdir -p "$NODE_ROOT/cni/net.d" "$NODE_ROOT/cni/networks"
  cat >"$NODE_ROOT/cni/net.d/10-storefront.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "storefront",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_ROOT/cni/networks",
        "ranges": [[{ "subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "loopback" }
  ]
}
EOF
}

# cgroup v1: the kubelet's cgroup root in every controller (cpuset children
# start empty, so they get the parent's CPUs and memory nodes).
_sf_node_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/; do
    [[ -f "$dir/cgroup.procs" ]] || continue
    mkdir -p "$dir$NODE_CGROUP_ROOT"
  done
  if [[ -d /sys/fs/cgroup/cpuset/$NODE_CGROUP_ROOT ]]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$NODE_CGROUP_ROOT/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$NODE_CGROUP_ROOT/cpuset.mems"
  fi
}

# --- credentials and configuration --------------------------------------------------

_sf_node_credentials() {
  local dir="$CLUSTER_PKI_DIR"
  _sf_cluster_cert "node-$NODE_NAME" ca "/O=system:nodes/CN=system:node:$NODE_NAME" client
  _sf_cluster_cert kube-proxy ca "/CN=system:kube-proxy" client
  _sf_cluster_cert node-volumes ca "/O=system:masters/CN=storefront-node-volumes" client
  if [[ ! -s "$dir/kubelet-serving.crt" ]]; then
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME" >"$dir/kubelet-serving.ext"
    {
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/kubelet-serving.key" 2>/dev/null &&
        openssl req -new -key "$dir/kubelet-serving.key" -subj "/CN=$NODE_NAME" -out "$dir/kubelet-serving.csr" 2>/dev/null &&
        openssl x509 -req -in "$dir/kubelet-serving.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
          -days 3650 -sha256 -extfile "$dir/kubelet-serving.ext" -out "$dir/kubelet-serving.crt" 2>/dev/null
    } || sf_die "openssl: cannot make the kubelet's serving certificate"
    rm -f "$dir/kubelet-serving.csr" "$dir/kubelet-serving.ext"
    chmod 0600 "$dir/kubelet-serving.key"
  fi
  _sf_cluster_kubeconfig "$CLUSTER_RUN_DIR/kubelet.kubeconfig" "node-$NODE_NAME" "system:node:$NODE_NAME"
  _sf_cluster_kubeconfig "$CLUSTER_RUN_DIR/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
  _sf_cluster_kubeconfig "$CLUSTER_RUN_DIR/node-volumes.kubeconfig" node-volumes storefront-node-volumes
}

# Writes stdin to file $1 only when it differs: kube-proxy exits when its
# configuration file is rewritten, even with the same content.
_sf_node_write() {
  local content
  content="$(cat)"
  [[ -f "$1" && "$(cat "$1")" == "$content" ]] && return 0
  printf '%s\n' "$content" >"$1.tmp"
  mv "$1.tmp" "$1"
}

_sf_node_config() {
  local pause="$1"
  mkdir -p "$NODE_ROOT/containerd" "$NODE_RUN/containerd" "$NODE_ROOT/kubelet" "$NODE_ROOT/pod-logs" "$NODE_ROOT/volumes"
  _sf_node_write "$CLUSTER_RUN_DIR/containerd.toml" <<EOF
version = 3
root = '$NODE_ROOT/containerd'
state = '$NODE_RUN/containerd'

[grpc]
  address = '$NODE_CONTAINERD_SOCKET'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '$pause'
  # Every registry is a closed port on loopback: an image that was not
  # imported fails to pull at once, and no pull ever leaves this host.
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$NODE_ROOT/registries'

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: runc may not lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  # Pod network namespaces under the state dir, not /run/netns, where an
  # "ip netns add" (which bind-mounts /run/netns over itself) would hide them.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        Root = '$NODE_RUN/runc'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '$NODE_ROOT/cni/net.d'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
EOF
  mkdir -p "$NODE_ROOT/registries/_default"
  cat >"$NODE_ROOT/registries/_default/hosts.toml" <<EOF
server = "http://127.0.0.1:9"
EOF
  # Pods that resolve outside the cluster find no server: nothing leaves the host.
  echo "# the storefront test node has no upstream DNS" >"$NODE_ROOT/resolv.conf"
  _sf_node_write "$CLUSTER_RUN_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1; kubelet only warns with this set.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP_ROOT
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $CLUSTER_PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $CLUSTER_PKI_DIR/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $CLUSTER_PKI_DIR/ca.crt
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$NODE_DNS_IP]
resolvConf: $NODE_ROOT/resolv.conf
containerRuntimeEndpoint: unix://$NODE_CONTAINERD_SOCKET
podLogsDir: $NODE_ROOT/pod-logs
failSwapOn: false
# Images come from no registry: never collect them; never evict for a full disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
serializeImagePulls: false
maxPods: 110
kubeAPIQPS: 50
kubeAPIBurst: 100
EOF
  _sf_node_write "$CLUSTER_RUN_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $CLUSTER_RUN_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
mode: iptables
clusterCIDR: $NODE_POD_CIDR
# NodePorts on the bridge address only (no route_localnet).
nodePortAddresses: ["$NODE_IP/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  syncPeriod: 30s
  minSyncPeriod: 1s
EOF
}

# --- processes ------------------------------------------------------------------------

NODE_COMPONENTS=(containerd apiserver-proxy node-volumes kubelet kube-proxy)

_sf_node_command() {
  local bin="$NODE_BIN_DIR" run="$CLUSTER_RUN_DIR"
  case "$1" in
    containerd)
      printf '%s\n' "$bin/containerd" --config="$run/containerd.toml" --log-level=warn
      ;;
    apiserver-proxy)
      printf '%s\n' "$(command -v socat)" \
        "TCP-LISTEN:$KUBE_APISERVER_PORT,bind=$NODE_IP,reuseaddr,fork" "TCP:127.0.0.1:$KUBE_APISERVER_PORT"
      ;;
    node-volumes)
      printf '%s\n' "$bin/node-volumes" --kubeconfig="$run/node-volumes.kubeconfig" \
        --node="$NODE_NAME" --root="$NODE_ROOT/volumes"
      ;;
    kubelet)
      printf '%s\n' "$bin/kubelet" --config="$run/kubelet.yaml" --kubeconfig="$run/kubelet.kubeconfig" \
        --root-dir="$NODE_ROOT/kubelet" --cert-dir="$NODE_ROOT/kubelet/pki" \
        --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
        --node-labels="$NODE_LABEL,type=real" --v=1
      ;;
    kube-proxy)
      printf '%s\n' "$bin/kube-proxy" --config="$run/kube-proxy.yaml" --v=1
      ;;
  esac
}

_sf_node_healthy() {
  case "$1" in
    containerd) [[ -S "$NODE_CONTAINERD_SOCKET" ]] && "$NODE_BIN_DIR/ctr" --address "$NODE_CONTAINERD_SOCKET" version >/dev/null 2>&1 ;;
    apiserver-proxy) curl -fsS --max-time 3 --cacert "$CLUSTER_PKI_DIR/ca.crt" --cert "$CLUSTER_PKI_DIR/admin.crt" \
      --key "$CLUSTER_PKI_DIR/admin.key" --resolve "kubernetes.default.svc:$KUBE_APISERVER_PORT:$NODE_IP" \
      "https://kubernetes.default.svc:$KUBE_APISERVER_PORT/readyz" 2>/dev/null | grep -qx ok ;;
    node-volumes) true ;;
    kubelet) curl -fsS --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" 2>/dev/null | grep -qx ok ;;
    kube-proxy) curl -fsS --max-time 3 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz" >/dev/null 2>&1 ;;
  esac
}

_sf_node_start() {
  local digest
  digest="$({ cat "$CLUSTER_RUN_DIR/$1".{toml,yaml} 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)"
  sf_component_start "$1" _sf_node_command _sf_node_healthy "$digest"
}

# --- images and cluster add-ons --------------------------------------------------------

_sf_node_ctr() {
  "$NODE_BIN_DIR/ctr" --address "$NODE_CONTAINERD_SOCKET" -n k8s.io "$@" 2> >(grep -v 'support for cgroup v1 is deprecated' >&2)
}

# Imports image $1 of hack/images unless containerd already has its reference with
# the same digest (a stamp under $NODE_ROOT/imported records what was imported).
sf_node_import() {
  local name="$1" ref archive digest
  ref="$(sf_image_ref "$name")" archive="$(sf_image_archive "$name")"
  digest="$(sha256sum "$archive" | cut -d' ' -f1)"
  # (The listing is read whole: `grep -q` on a pipe would stop ctr with
  # SIGPIPE, and pipefail would call the image missing.)
  if [[ "$(cat "$NODE_ROOT/imported/${ref//\//_}" 2>/dev/null)" == "$digest" ]] &&
    grep -qxF "$ref" <<<"$(_sf_node_ctr images ls -q 2>/dev/null)"; then
    return 0
  fi
  sf_info "importing $ref"
  sf_image_import "$name" _sf_node_ctr >/dev/null || sf_die "ctr could not import $archive"
  grep -qxF "$ref" <<<"$(_sf_node_ctr images ls -q)" || sf_die "$archive did not give the image $ref"
  mkdir -p "$NODE_ROOT/imported"
  echo "$digest" >"$NODE_ROOT/imported/${ref//\//_}"
}

# Builds every image of hack/images (the shop's from target/$1, default
# debug) and imports what changed into the node. The shop's image is also
# tagged `dev-next`: the same build under a second tag, for upgrade tests.
sf_node_load_images() {
  local profile="${1:-debug}" name ref
  _sf_node_healthy containerd || sf_die "the real node is not up (hack/cluster/up.sh)"
  # shellcheck source=hack/images/lib.sh
  source "$CLUSTER_SCRIPT_DIR/../images/lib.sh"
  COREDNS_BIN="$NODE_BIN_DIR/coredns" sf_images_build --profile "$profile" >/dev/null
  for name in $(sf_image_names); do
    sf_node_import "$name"
  done
  ref="$(sf_image_ref storefront)"
  _sf_node_ctr images tag --force "$ref" "${ref%:*}:dev-next" >/dev/null
  sf_log "Images on $NODE_NAME:"
  _sf_node_ctr images ls -q | grep -v '^sha256:' | sed 's/^/    /' >&2
}

# Labels a namespace's pods onto the real node (creating the namespace).
sf_node_namespace() {
  sf_kubectl get namespace "$1" >/dev/null 2>&1 || sf_kubectl create namespace "$1" >/dev/null
  sf_kubectl annotate namespace "$1" --overwrite \
    "scheduler.alpha.kubernetes.io/node-selector=$NODE_LABEL" >/dev/null
}

_sf_node_addons() {
  local coredns_image="$1"
  sf_node_namespace kube-system
  # The apiserver listens on loopback; pods reach it through the proxy on the bridge.
  sf_kubectl apply -f - >/dev/null <<EOF || sf_die "could not write the kubernetes Service's endpoints"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: storefront-node
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions: { ready: true }
ports:
- name: https
  port: $KUBE_APISERVER_PORT
  protocol: TCP
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: storefront.dev/node-volumes
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
  sf_kubectl apply -f - >/dev/null <<EOF || sf_die "could not install CoreDNS"
apiVersion: v1
kind: ServiceAccount
metadata: { name: coredns, namespace: kube-system }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: "system:coredns" }
rules:
- apiGroups: [""]
  resources: [services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: "system:coredns" }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns" }
subjects:
- { kind: ServiceAccount, name: coredns, namespace: kube-system }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: coredns, namespace: kube-system }
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loop
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: { k8s-app: kube-dns }
spec:
  replicas: 1
  selector: { matchLabels: { k8s-app: kube-dns } }
  template:
    metadata: { labels: { k8s-app: kube-dns } }
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532 }
      containers:
      - name: coredns
        image: $coredns_image
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - { name: dns, containerPort: 53, protocol: UDP }
        - { name: dns-tcp, containerPort: 53, protocol: TCP }
        readinessProbe: { httpGet: { path: /ready, port: 8181 }, periodSeconds: 2 }
        livenessProbe: { httpGet: { path: /health, port: 8080 }, periodSeconds: 10, failureThreshold: 5 }
        resources: { requests: { cpu: 20m, memory: 30Mi }, limits: { memory: 120Mi } }
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          # As upstream: the binary's file capability needs this in the bounding set.
          capabilities: { add: [NET_BIND_SERVICE], drop: [ALL] }
        volumeMounts: [{ name: config, mountPath: /etc/coredns, readOnly: true }]
      volumes: [{ name: config, configMap: { name: coredns } }]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: { k8s-app: kube-dns }
spec:
  clusterIP: $NODE_DNS_IP
  selector: { k8s-app: kube-dns }
  ports:
  - { name: dns, port: 53, targetPort: 53, protocol: UDP }
  - { name: dns-tcp, port: 53, targetPort: 53, protocol: TCP }
EOF
}

_sf_node_wait_ready() {
  local deadline=$((SECONDS + CLUSTER_START_TIMEOUT))
  sf_cluster_wait_node "$NODE_NAME" "$deadline" kubelet
  until sf_kubectl -n kube-system rollout status deployment/coredns --timeout=5s >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      sf_kubectl -n kube-system describe pods -l k8s-app=kube-dns | tail -n 30 >&2 || true
      sf_die "CoreDNS did not become ready on $NODE_NAME within ${CLUSTER_START_TIMEOUT}s"
    fi
  done
  sf_info "CoreDNS ready at $NODE_DNS_IP"
}

# --- up and down ------------------------------------------------------------------------

sf_node_up() {
  sf_node_check_host
  sf_node_build
  _sf_node_claim
  # What a node that was not stopped left (a killed session, a crash): its
  # containers, mounts, network and cgroups go before a new one starts.
  if ! _sf_node_any_running "$CLUSTER_DATA_DIR" && [[ -e "$NODE_RUN/containerd" ]]; then
    sf_log "Clearing what an earlier real node left behind"
    sf_node_down 0
    _sf_node_claim
  fi
  # shellcheck source=hack/images/lib.sh
  source "$CLUSTER_SCRIPT_DIR/../images/lib.sh"
  local pause coredns
  pause="$(sf_image_ref pause)" coredns="$(sf_image_ref coredns)"
  _sf_node_network
  _sf_node_cgroups
  _sf_node_credentials
  _sf_node_config "$pause"
  _sf_node_start containerd
  COREDNS_BIN="$NODE_BIN_DIR/coredns" sf_images_build pause coredns >/dev/null
  sf_node_import pause
  sf_node_import coredns
  local what
  for what in apiserver-proxy node-volumes kubelet kube-proxy; do
    _sf_node_start "$what"
  done
  _sf_node_addons "$coredns"
  _sf_node_wait_ready
}

# Stops the node's processes and every container, then undoes what it made
# on the host: mounts, network namespaces, the bridge, iptables chains,
# cgroups and sysctls. --purge also deletes its state (images, volumes).
sf_node_down() {
  local purge="${1:-0}" what i pid
  for ((i = ${#NODE_COMPONENTS[@]} - 1; i >= 0; i--)); do
    what="${NODE_COMPONENTS[i]}"
    [[ "$what" == containerd ]] && continue
    sf_cluster_stop "$what"
  done
  # Every container: their processes, then their shims, then containerd.
  _sf_node_kill_cgroup_tasks
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $NODE_CONTAINERD_SOCKET" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # The kubelet makes its pods anew on the next up: forget these.
  if _sf_node_healthy containerd; then
    local ids=()
    mapfile -t ids < <(_sf_node_ctr tasks ls -q 2>/dev/null || true)
    ((${#ids[@]} == 0)) || _sf_node_ctr tasks rm -f "${ids[@]}" >/dev/null 2>&1 || true
    mapfile -t ids < <(_sf_node_ctr containers ls -q 2>/dev/null || true)
    ((${#ids[@]} == 0)) || _sf_node_ctr containers rm "${ids[@]}" >/dev/null 2>&1 || true
  fi
  sf_cluster_stop containerd
  _sf_node_unmount
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link delete "$NODE_BRIDGE" || sf_warn "could not delete the bridge $NODE_BRIDGE"
  fi
  ip route del "$CLUSTER_SERVICE_CIDR" 2>/dev/null || true
  _sf_node_iptables_clean
  _sf_node_cgroups_remove
  if [[ -s "$NODE_RUN/ip_forward.orig" ]]; then
    cat "$NODE_RUN/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
  fi
  rm -rf "$NODE_RUN" /var/lib/cni/results/storefront-* 2>/dev/null || true
  if [[ -e "$NODE_ROOT/made-var-lib-kubelet" ]]; then
    rm -rf /var/lib/kubelet "$NODE_ROOT/made-var-lib-kubelet"
  fi
  find /var/log/containers -maxdepth 1 -lname "$NODE_ROOT/*" -delete 2>/dev/null || true
  if ((purge)); then
    rm -rf "$NODE_ROOT"
  fi
}

_sf_node_kill_cgroup_tasks() {
  local file pid
  for _ in 1 2 3; do
    local found=0
    while read -r file; do
      while read -r pid; do
        [[ -n "$pid" ]] || continue
        found=1
        kill -KILL "$pid" 2>/dev/null || true
        # A cgroup may go away between find and read (its tasks just died):
        # read it through cat, or the failed redirection stops set -e callers.
      done < <(cat "$file" 2>/dev/null)
    done < <(find /sys/fs/cgroup/*/"$NODE_CGROUP_ROOT" -name cgroup.procs 2>/dev/null)
    ((found)) || break
    sleep 0.5
  done
}

# Unmounts everything under the node's directories, deepest first.
_sf_node_unmount() {
  local mount
  awk -v root="$NODE_ROOT" -v run="$NODE_RUN" \
    'index($5, root) == 1 || index($5, run) == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
  done
}

# Removes kube-proxy's and the kubelet's KUBE-* chains and the guard chain.
_sf_node_iptables_clean() {
  local table chain rule
  for table in filter nat mangle; do
    # Rules in any chain that jump to one of ours.
    iptables-save -t "$table" 2>/dev/null |
      awk -v guard="$NODE_GUARD_CHAIN" '$1 == "-A" && $2 !~ ("^(KUBE-|" guard ")") && $0 ~ (" -j (KUBE-|" guard ")") { $1 = "-D"; print }' |
      while read -r rule; do
        # The rule as iptables-save quotes it (comments have spaces).
        eval "iptables -w -t $table $rule" 2>/dev/null || true
      done
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -n "s/^:\(KUBE-[^ ]*\|$NODE_GUARD_CHAIN\) .*/\1/p"); do
      iptables -w -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -n "s/^:\(KUBE-[^ ]*\|$NODE_GUARD_CHAIN\) .*/\1/p"); do
      iptables -w -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

_sf_node_cgroups_remove() {
  local dir
  for dir in /sys/fs/cgroup/*/"$NODE_CGROUP_ROOT"; do
    [[ -d "$dir" ]] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}
