# shellcheck shell=bash
#
# The local Kubernetes control plane for tests, without containers: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok (a fake
# node whose pods become Running and Ready), plus kubectl and helm. Source it;
# do not execute it. Used by build.sh, up.sh, down.sh and env.sh.
#
# Versions are pinned by hack/cluster/tools/go.mod (one Go module, so every
# binary shares one set of Kubernetes libraries); binaries are built once into
#   $STOREFRONT_CACHE_DIR/cluster/<versions>/bin
# and the running cluster keeps its state under
#   $STOREFRONT_DATA_DIR/cluster        (admin kubeconfig: .../cluster/kubeconfig)
#
# Tunables (environment):
#   ETCD_PORT (52379) ETCD_PEER_PORT (52380) KUBE_APISERVER_PORT (56443)
#   KUBE_CONTROLLER_MANAGER_PORT (56257) KUBE_SCHEDULER_PORT (56259)
#   KWOK_PORT (56247)                     all on 127.0.0.1
#   CLUSTER_START_TIMEOUT  seconds each component may take to get healthy (120)
#   CLUSTER_STOP_TIMEOUT   seconds before SIGKILL (20)
#   CLUSTER_BUILD_JOBS     go build -p (2); builds run under nice -n 10
#   STOREFRONT_GOTOOLCHAIN GOTOOLCHAIN for the build (auto: the local go if
#                          it is new enough, else the one go.mod asks for)

[[ -n "${_SF_CLUSTER_SH:-}" ]] && return 0
_SF_CLUSTER_SH=1

CLUSTER_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/lib/common.sh
source "$CLUSTER_SCRIPT_DIR/../lib/common.sh"

STOREFRONT_ROOT="${STOREFRONT_ROOT:-$(cd "$CLUSTER_SCRIPT_DIR/../.." && pwd -P)}"
STOREFRONT_DATA_DIR="${STOREFRONT_DATA_DIR:-$STOREFRONT_ROOT/.data}"
STOREFRONT_CACHE_DIR="${STOREFRONT_CACHE_DIR:-${HOME:-/root}/.cache/storefront}"

ETCD_PORT="${ETCD_PORT:-52379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-52380}"
KUBE_APISERVER_PORT="${KUBE_APISERVER_PORT:-56443}"
KUBE_CONTROLLER_MANAGER_PORT="${KUBE_CONTROLLER_MANAGER_PORT:-56257}"
KUBE_SCHEDULER_PORT="${KUBE_SCHEDULER_PORT:-56259}"
KWOK_PORT="${KWOK_PORT:-56247}"
CLUSTER_START_TIMEOUT="${CLUSTER_START_TIMEOUT:-120}"
CLUSTER_STOP_TIMEOUT="${CLUSTER_STOP_TIMEOUT:-20}"
CLUSTER_BUILD_JOBS="${CLUSTER_BUILD_JOBS:-2}"
CLUSTER_SERVICE_CIDR="10.96.0.0/16"
CLUSTER_SERVICE_IP="10.96.0.1"
CLUSTER_NODE_NAME="kwok-node-0"

# --- versions and build layout -------------------------------------------------

CLUSTER_TOOLS_DIR="$CLUSTER_SCRIPT_DIR/tools"

# Prints the version go.mod pins for module $1.
_sf_cluster_mod_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$CLUSTER_TOOLS_DIR/go.mod"
}

K8S_VERSION="$(_sf_cluster_mod_version k8s.io/kubernetes)"
ETCD_VERSION="$(_sf_cluster_mod_version go.etcd.io/etcd/server/v3)"
KWOK_VERSION="$(_sf_cluster_mod_version sigs.k8s.io/kwok)"
HELM_VERSION="$(_sf_cluster_mod_version helm.sh/helm/v3)"
[[ -n "$K8S_VERSION" && -n "$ETCD_VERSION" && -n "$KWOK_VERSION" && -n "$HELM_VERSION" ]] ||
  sf_die "cannot read the pinned versions from $CLUSTER_TOOLS_DIR/go.mod"
K8S_MINOR="$(cut -d. -f2 <<<"$K8S_VERSION")"

CLUSTER_CACHE_DIR="$STOREFRONT_CACHE_DIR/cluster"
CLUSTER_GO_DIR="$CLUSTER_CACHE_DIR/go"
CLUSTER_VERSIONS="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
CLUSTER_BIN_DIR="$CLUSTER_CACHE_DIR/$CLUSTER_VERSIONS/bin"
CLUSTER_STAMP="$CLUSTER_CACHE_DIR/$CLUSTER_VERSIONS/.built"
# kwok's "fast" Stages (node initialize + heartbeat with leases, pod ready,
# complete, delete), copied from the pinned kwok module: kwok has no stages
# of its own without a --config file (or its Stage CRDs).
CLUSTER_KWOK_STAGES="$CLUSTER_CACHE_DIR/$CLUSTER_VERSIONS/kwok-stages.yaml"
KWOK_STAGE_DIRS=(node/fast node/heartbeat-with-lease pod/fast)
# name:package, built from $CLUSTER_TOOLS_DIR (kubectl is added when needed).
CLUSTER_BINARIES=(
  etcd:go.etcd.io/etcd/server/v3
  kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver
  kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager
  kube-scheduler:k8s.io/kubernetes/cmd/kube-scheduler
  kwok:sigs.k8s.io/kwok/cmd/kwok
  helm:helm.sh/helm/v3/cmd/helm
)

# What the stamp records: the pinned sources (go.mod and go.sum).
_sf_cluster_build_id() {
  cat "$CLUSTER_TOOLS_DIR/go.mod" "$CLUSTER_TOOLS_DIR/go.sum" |
    sha256sum | cut -d' ' -f1
}

sf_cluster_built() {
  _sf_cluster_binaries_built && [[ -s "$CLUSTER_KWOK_STAGES" ]] && { ! sf_cluster_real_node || sf_node_built; }
}

_sf_cluster_binaries_built() {
  [[ -f "$CLUSTER_STAMP" && "$(cat "$CLUSTER_STAMP")" == "$(_sf_cluster_build_id)" ]] || return 1
  local entry
  for entry in "${CLUSTER_BINARIES[@]}" kubectl:; do
    [[ -x "$CLUSTER_BIN_DIR/${entry%%:*}" ]] || return 1
  done
}

# Minor version of the kubectl on PATH, if there is one.
_sf_system_kubectl_minor() {
  local kubectl
  kubectl="$(command -v kubectl 2>/dev/null)" || return 1
  "$kubectl" version --client -o json 2>/dev/null |
    sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n1
}

# The Go environment of every build: caches under the cache dir (CI keeps it).
_sf_cluster_go_env() {
  export GOPATH="$CLUSTER_GO_DIR"
  export GOMODCACHE="$CLUSTER_GO_DIR/pkg/mod"
  export GOCACHE="$CLUSTER_GO_DIR/cache"
  export GOFLAGS=-mod=mod
  export GOTOOLCHAIN="${STOREFRONT_GOTOOLCHAIN:-auto}"
  export CGO_ENABLED=0
  export GOMAXPROCS="${GOMAXPROCS:-$CLUSTER_BUILD_JOBS}"
}

# Writes $CLUSTER_KWOK_STAGES from the pinned kwok module's kustomize/stage.
_sf_cluster_kwok_stages() {
  local dir file sub out="$CLUSTER_KWOK_STAGES.tmp"
  dir="$(cd "$CLUSTER_TOOLS_DIR" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)" ||
    sf_die "cannot locate the sigs.k8s.io/kwok module source"
  mkdir -p "$(dirname "$out")"
  : >"$out"
  for sub in "${KWOK_STAGE_DIRS[@]}"; do
    for file in "$dir/kustomize/stage/$sub"/*.yaml; do
      [[ "$(basename "$file")" == kustomization.yaml ]] && continue
      printf -- '---\n# %s\n' "${file#"$dir"/}" >>"$out"
      cat "$file" >>"$out"
    done
  done
  grep -q '^kind: Stage' "$out" || sf_die "no kwok Stage found under $dir/kustomize/stage"
  mv "$out" "$CLUSTER_KWOK_STAGES"
  sf_info "kwok stages: $CLUSTER_KWOK_STAGES"
}

# Builds the binaries once; a second call with the same go.mod/go.sum is a no-op.
sf_cluster_build() {
  if sf_cluster_built; then
    sf_info "cluster binaries $CLUSTER_VERSIONS already built ($CLUSTER_BIN_DIR)"
    return 0
  fi
  command -v go >/dev/null 2>&1 || sf_die "go is not installed (needed to build the control plane)"
  _sf_cluster_go_env
  # One build at a time (e.g. two CI jobs sharing the cache); then re-check.
  mkdir -p "$CLUSTER_CACHE_DIR"
  exec 8>"$CLUSTER_CACHE_DIR/build.lock"
  flock -w 3600 8 || sf_die "another build holds $CLUSTER_CACHE_DIR/build.lock (waited an hour)"
  if sf_cluster_built; then
    sf_info "cluster binaries $CLUSTER_VERSIONS already built ($CLUSTER_BIN_DIR)"
    return 0
  fi
  if _sf_cluster_binaries_built; then
    [[ -s "$CLUSTER_KWOK_STAGES" ]] || _sf_cluster_kwok_stages
    ! sf_cluster_real_node || sf_node_build
    return 0
  fi
  local started=$SECONDS binaries=("${CLUSTER_BINARIES[@]}") kubectl_minor
  kubectl_minor="$(_sf_system_kubectl_minor)" || kubectl_minor=""
  if [[ -n "$kubectl_minor" ]] && ((kubectl_minor >= K8S_MINOR - 1 && kubectl_minor <= K8S_MINOR + 1)); then
    sf_info "using $(command -v kubectl) (1.$kubectl_minor, within one minor of $K8S_VERSION)"
  else
    sf_info "kubectl on PATH is ${kubectl_minor:+1.}${kubectl_minor:-missing}, not within one minor of $K8S_VERSION: building it"
    kubectl_minor=""
    binaries+=(kubectl:k8s.io/kubernetes/cmd/kubectl)
  fi

  local k8s_pkg=k8s.io/component-base/version client_pkg=k8s.io/client-go/pkg/version
  local ldflags="-s -w"
  ldflags+=" -X $k8s_pkg.gitVersion=$K8S_VERSION -X $k8s_pkg.gitMajor=1 -X $k8s_pkg.gitMinor=$K8S_MINOR"
  ldflags+=" -X $k8s_pkg.gitTreeState=clean -X $k8s_pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X $client_pkg.gitVersion=$K8S_VERSION -X $client_pkg.gitMajor=1 -X $client_pkg.gitMinor=$K8S_MINOR"
  ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

  local out="$CLUSTER_BIN_DIR.tmp.$$" entry name pkg
  rm -rf "$out"
  mkdir -p "$out" "$CLUSTER_GO_DIR"
  sf_log "Building the control plane ($CLUSTER_VERSIONS) with $(go version | cut -d' ' -f3), -p $CLUSTER_BUILD_JOBS, nice 10 (cold: about 10 minutes on 2 cores)"
  for entry in "${binaries[@]}"; do
    name="${entry%%:*}" pkg="${entry#*:}"
    sf_info "go build $pkg"
    (cd "$CLUSTER_TOOLS_DIR" &&
      nice -n 10 go build -p "$CLUSTER_BUILD_JOBS" -trimpath -ldflags="$ldflags" -o "$out/$name" "$pkg") ||
      {
        rm -rf "$out"
        sf_die "building $name ($pkg) failed"
      }
  done
  _sf_cluster_kwok_stages
  if [[ -n "$kubectl_minor" ]]; then
    ln -sf "$(command -v kubectl)" "$out/kubectl"
  fi
  rm -rf "$CLUSTER_BIN_DIR"
  mv "$out" "$CLUSTER_BIN_DIR"
  _sf_cluster_build_id >"$CLUSTER_STAMP"
  sf_log "Built the control plane in $((SECONDS - started))s: $CLUSTER_BIN_DIR"
  ! sf_cluster_real_node || sf_node_build
}

# Whether up brings the real node (CLUSTER_REAL_NODE, default 1).
sf_cluster_real_node() { [[ "${CLUSTER_REAL_NODE:-1}" != 0 ]]; }

sf_cluster_require_built() {
  sf_cluster_built || sf_die "the control plane is not built ($CLUSTER_VERSIONS); run hack/cluster/build.sh (or make cluster-build)"
}

# --- runtime layout --------------------------------------------------------------

CLUSTER_DATA_DIR="$STOREFRONT_DATA_DIR/cluster"
CLUSTER_PKI_DIR="$CLUSTER_DATA_DIR/pki"
CLUSTER_LOG_DIR="$CLUSTER_DATA_DIR/logs"
CLUSTER_RUN_DIR="$CLUSTER_DATA_DIR/run"
CLUSTER_KUBECONFIG="$CLUSTER_DATA_DIR/kubeconfig"
CLUSTER_SERVER="https://127.0.0.1:$KUBE_APISERVER_PORT"
# Start order; down stops them in reverse.
CLUSTER_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

_sf_cluster_port() {
  case "$1" in
    etcd) echo "$ETCD_PORT" ;;
    kube-apiserver) echo "$KUBE_APISERVER_PORT" ;;
    kube-controller-manager) echo "$KUBE_CONTROLLER_MANAGER_PORT" ;;
    kube-scheduler) echo "$KUBE_SCHEDULER_PORT" ;;
    kwok) echo "$KWOK_PORT" ;;
    *) sf_die "unknown component $1" ;;
  esac
}

_sf_cluster_pidfile() { echo "$CLUSTER_RUN_DIR/$1.pid"; }
_sf_cluster_log() { echo "$CLUSTER_LOG_DIR/$1.log"; }

# --- credentials -------------------------------------------------------------------

# Makes a CA (key + self-signed certificate) named $1 unless it exists.
_sf_cluster_ca() {
  local name="$1" dir="$CLUSTER_PKI_DIR"
  [[ -s "$dir/$name.crt" && -s "$dir/$name.key" ]] && return 0
  {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$name.key" 2>/dev/null &&
      openssl req -x509 -new -key "$dir/$name.key" -subj "/CN=storefront-$name" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$dir/$name.crt" 2>/dev/null
  } || sf_die "openssl: cannot make the CA $name"
}

# Makes a key and a certificate signed by a CA unless they exist:
#   _sf_cluster_cert NAME CA SUBJECT server|client
_sf_cluster_cert() {
  local name="$1" ca="$2" subject="$3" usage="$4" dir="$CLUSTER_PKI_DIR" ext
  [[ -s "$dir/$name.crt" && -s "$dir/$name.key" ]] && return 0
  ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment"
  if [[ "$usage" == server ]]; then
    ext+="
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$CLUSTER_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  else
    ext+="
extendedKeyUsage=clientAuth"
  fi
  printf '%s\n' "$ext" >"$dir/$name.ext"
  {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$name.key" 2>/dev/null &&
      openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null &&
      openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  } || sf_die "openssl: cannot make the certificate $name"
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# Writes a kubeconfig with embedded credentials: _sf_cluster_kubeconfig FILE CERT_NAME USER
_sf_cluster_kubeconfig() {
  local file="$1" cert="$2" user="$3" dir="$CLUSTER_PKI_DIR"
  (umask 077 && cat >"$file.tmp") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: storefront
  cluster:
    server: $CLUSTER_SERVER
    certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$dir/$cert.crt")
    client-key-data: $(base64 -w0 "$dir/$cert.key")
contexts:
- name: storefront
  context:
    cluster: storefront
    user: $user
current-context: storefront
EOF
  mv "$file.tmp" "$file"
}

# Generates what is missing of: the cluster CA, the apiserver's serving
# certificate, one client certificate per user, the front-proxy CA and client
# (request-header authentication of aggregated APIs), the service-account key
# pair. Then writes the kubeconfigs (on every up, so a port change applies).
sf_cluster_credentials() {
  command -v openssl >/dev/null 2>&1 || sf_apt_install openssl || sf_die "openssl is required"
  local dir="$CLUSTER_PKI_DIR"
  mkdir -p "$dir"
  chmod 0700 "$dir"
  [[ -s "$dir/sa.pub" ]] || sf_log "Generating the cluster CA, certificates and service-account keys in $dir"
  _sf_cluster_ca ca
  _sf_cluster_cert apiserver ca "/CN=kube-apiserver" server
  _sf_cluster_cert admin ca "/O=system:masters/CN=storefront-admin" client
  _sf_cluster_cert kube-controller-manager ca "/CN=system:kube-controller-manager" client
  _sf_cluster_cert kube-scheduler ca "/CN=system:kube-scheduler" client
  # kwok updates nodes, pods and leases of any name: simplest as a master.
  _sf_cluster_cert kwok ca "/O=system:masters/CN=kwok-controller" client
  # The apiserver's client certificate towards kubelets (logs, exec, port-forward).
  _sf_cluster_cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" client
  _sf_cluster_ca front-proxy-ca
  _sf_cluster_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" client
  if [[ ! -s "$dir/sa.pub" ]]; then
    {
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key" 2>/dev/null &&
        openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
    } || sf_die "openssl: cannot make the service-account key pair"
  fi
  chmod 0600 "$dir"/*.key
  _sf_cluster_kubeconfig "$CLUSTER_KUBECONFIG" admin storefront-admin
  local who
  for who in kube-controller-manager kube-scheduler kwok; do
    _sf_cluster_kubeconfig "$CLUSTER_RUN_DIR/$who.kubeconfig" "$who" "$who"
  done
  # Pods go to the kwok node unless their namespace names another
  # (scheduler.alpha.kubernetes.io/node-selector; see node.sh).
  cat >"$CLUSTER_RUN_DIR/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodNodeSelector
  configuration:
    podNodeSelectorPluginConfig:
      clusterDefaultNodeSelector: type=kwok
EOF
}

# --- processes -------------------------------------------------------------------------

# The command line of component $1 (one word per line).
_sf_cluster_command() {
  local bin="$CLUSTER_BIN_DIR" pki="$CLUSTER_PKI_DIR" run="$CLUSTER_RUN_DIR"
  case "$1" in
    etcd)
      printf '%s\n' "$bin/etcd" --name=storefront --data-dir="$CLUSTER_DATA_DIR/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="storefront=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --quota-backend-bytes=4294967296 --log-level=warn
      ;;
    kube-apiserver)
      printf '%s\n' "$bin/kube-apiserver" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$KUBE_APISERVER_PORT" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --service-cluster-ip-range="$CLUSTER_SERVICE_CIDR" \
        --authorization-mode=Node,RBAC --allow-privileged=true \
        --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$pki/front-proxy-client.crt" \
        --proxy-client-key-file="$pki/front-proxy-client.key" \
        --endpoint-reconciler-type=none \
        --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
        --enable-admission-plugins=NodeRestriction,PodNodeSelector \
        --admission-control-config-file="$run/admission.yaml" --profiling=false
      ;;
    kube-controller-manager)
      printf '%s\n' "$bin/kube-controller-manager" \
        --kubeconfig="$run/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$run/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$run/kube-controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$KUBE_CONTROLLER_MANAGER_PORT" \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --use-service-account-credentials=true --controllers='*' --leader-elect=false \
        --service-cluster-ip-range="$CLUSTER_SERVICE_CIDR" --cluster-name=storefront --profiling=false \
        --kube-api-qps=200 --kube-api-burst=400 --concurrent-deployment-syncs=20 \
        --concurrent-replicaset-syncs=20 --concurrent-statefulset-syncs=20
      ;;
    kube-scheduler)
      printf '%s\n' "$bin/kube-scheduler" \
        --kubeconfig="$run/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$run/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$run/kube-scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$KUBE_SCHEDULER_PORT" --leader-elect=false --profiling=false \
        --kube-api-qps=200 --kube-api-burst=400
      ;;
    kwok)
      printf '%s\n' "$bin/kwok" \
        --kubeconfig="$run/kwok.kubeconfig" --config="$CLUSTER_KWOK_STAGES" \
        --manage-all-nodes=false \
        --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --cidr=10.245.0.1/16 --node-ip=127.0.0.1 --node-lease-duration-seconds=40 \
        --server-address="127.0.0.1:$KWOK_PORT"
      ;;
  esac
}

# True if component $1 answers its health check.
_sf_cluster_healthy() {
  local port
  port="$(_sf_cluster_port "$1")"
  case "$1" in
    etcd)
      curl -fsS --max-time 3 "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"health":"true"'
      ;;
    kube-apiserver)
      curl -fsS --max-time 3 --cacert "$CLUSTER_PKI_DIR/ca.crt" \
        --cert "$CLUSTER_PKI_DIR/admin.crt" --key "$CLUSTER_PKI_DIR/admin.key" \
        "https://127.0.0.1:$port/readyz" 2>/dev/null | grep -qx ok
      ;;
    kube-controller-manager | kube-scheduler)
      curl -fsSk --max-time 3 "https://127.0.0.1:$port/healthz" 2>/dev/null | grep -qx ok
      ;;
    kwok)
      curl -fsS --max-time 3 "http://127.0.0.1:$port/healthz" 2>/dev/null | grep -qx ok
      ;;
  esac
}

# Starts component $1 unless it already runs healthy; waits until it is healthy.
sf_cluster_start() {
  local port
  port="$(_sf_cluster_port "$1")"
  sf_component_start "$1" _sf_cluster_command _sf_cluster_healthy "" "$port"
}

# Starts a component of the cluster (the control plane's, or the real
# node's) unless it already runs healthy with this checkout's command line
# and configuration (else it is restarted); waits until it is healthy.
#   sf_component_start NAME COMMAND_FN HEALTHY_FN CONFIG_DIGEST [PORT]
# COMMAND_FN NAME prints the command line (a word per line); HEALTHY_FN NAME
# succeeds once it serves; a PORT on 127.0.0.1 must be free before a start.
sf_component_start() {
  local what="$1" command_fn="$2" healthy_fn="$3" digest="$4" port="${5:-}"
  local pidfile log pid="" where=""
  pidfile="$(_sf_cluster_pidfile "$what")"
  log="$(_sf_cluster_log "$what")"
  [[ -z "$port" ]] || where=" on 127.0.0.1:$port"
  pid="$(sf_read_pidfile "$pidfile")" || pid=""
  local cmd=() fingerprint
  mapfile -t cmd < <("$command_fn" "$what")
  fingerprint="${cmd[*]}${digest:+ $digest}"
  if [[ -n "$pid" && "$(cat "$pidfile.cmd" 2>/dev/null)" != "$fingerprint" ]]; then
    sf_log "$what runs with other flags or configuration than this checkout's: restarting it"
    sf_cluster_stop "$what"
    pid=""
  fi
  if [[ -n "$pid" ]] && "$healthy_fn" "$what"; then
    sf_info "$what already running (pid $pid$where)"
    return 0
  fi
  if [[ -z "$pid" && -n "$port" ]] && sf_port_open "$port"; then
    sf_die "$what: port 127.0.0.1:$port is already in use by another process:
$(sf_port_owner "$port")
Stop it, or choose another port (see hack/cluster/lib.sh)."
  fi
  if [[ -z "$pid" ]]; then
    sf_log "Starting $what$where"
    printf '%s' "$fingerprint" >"$pidfile.cmd"
    printf '\n===== %s starting: %s\n' "$(date -u +%FT%TZ)" "${cmd[*]}" >>"$log"
    # Without the lock fds (8, 9) of build and up, which must not outlive us.
    setsid "${cmd[@]}" </dev/null >>"$log" 2>&1 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$pidfile"
  else
    sf_log "Waiting for $what (pid $pid) to become healthy"
  fi
  local deadline=$((SECONDS + CLUSTER_START_TIMEOUT))
  until "$healthy_fn" "$what"; do
    if ! sf_pid_alive "$pid"; then
      sf_tail_log "$log"
      sf_die "$what exited during start (log: $log)"
    fi
    if ((SECONDS >= deadline)); then
      sf_tail_log "$log"
      sf_die "$what did not become healthy$where within ${CLUSTER_START_TIMEOUT}s (pid $pid, log: $log)"
    fi
    sleep 0.5
  done
  sf_info "$what healthy (pid $pid, log: $log)"
}

# Stops component $1 (SIGTERM, then SIGKILL after CLUSTER_STOP_TIMEOUT). Idempotent.
sf_cluster_stop() {
  local what="$1" pidfile pid
  pidfile="$(_sf_cluster_pidfile "$what")"
  pid="$(sf_read_pidfile "$pidfile")" || {
    rm -f "$pidfile"
    sf_info "$what not running"
    return 0
  }
  sf_log "Stopping $what (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + CLUSTER_STOP_TIMEOUT))
  while sf_pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      sf_warn "$what ignored SIGTERM for ${CLUSTER_STOP_TIMEOUT}s; sending SIGKILL to pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  sf_pid_alive "$pid" && sf_die "$what (pid $pid) did not stop"
  rm -f "$pidfile"
}

# kubectl against the cluster, as the admin.
sf_kubectl() {
  "$CLUSTER_BIN_DIR/kubectl" --kubeconfig="$CLUSTER_KUBECONFIG" "$@"
}

# Waits until node $1 is Ready, until SECONDS reaches $2; else dies with the
# tail of component $3's log and the hint $4.
sf_cluster_wait_node() {
  local node="$1" deadline="$2" component="$3" hint="${4:-}"
  until [[ "$(sf_kubectl get node "$node" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; do
    if ((SECONDS >= deadline)); then
      sf_tail_log "$(_sf_cluster_log "$component")"
      sf_die "node $node did not become Ready within ${CLUSTER_START_TIMEOUT}s$hint"
    fi
    sleep 0.5
  done
  sf_info "node $node Ready"
}

# Registers the fake node kwok manages (idempotent) and waits until it is Ready.
sf_cluster_node() {
  sf_kubectl apply -f - >/dev/null <<EOF || sf_die "could not create node $CLUSTER_NODE_NAME"
apiVersion: v1
kind: Node
metadata:
  name: $CLUSTER_NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $CLUSTER_NODE_NAME
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
spec: {}
EOF
  # Room for the operator benchmark's 100 shops (1,000 pods) and the tests'.
  sf_kubectl patch node "$CLUSTER_NODE_NAME" --subresource=status --type=merge -p \
    '{"status":{"allocatable":{"cpu":"64","memory":"256Gi","pods":"4000","ephemeral-storage":"1Ti"},"capacity":{"cpu":"64","memory":"256Gi","pods":"4000","ephemeral-storage":"1Ti"}}}' \
    >/dev/null || sf_die "could not set the capacity of node $CLUSTER_NODE_NAME"
  local deadline=$((SECONDS + CLUSTER_START_TIMEOUT))
  sf_cluster_wait_node "$CLUSTER_NODE_NAME" "$deadline" kwok " (is kwok managing it?)"
  # The controllers work once the service-account controller has made the
  # default ServiceAccount (pods cannot be created before).
  until sf_kubectl -n default get serviceaccount default >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      sf_tail_log "$(_sf_cluster_log kube-controller-manager)"
      sf_die "kube-controller-manager made no default ServiceAccount within ${CLUSTER_START_TIMEOUT}s"
    fi
    sleep 0.5
  done
}

sf_cluster_up() {
  sf_cluster_require_built
  command -v curl >/dev/null 2>&1 || sf_apt_install curl || sf_die "curl is required"
  mkdir -p "$CLUSTER_DATA_DIR" "$CLUSTER_LOG_DIR" "$CLUSTER_RUN_DIR"
  # One up (or down) at a time.
  exec 9>"$CLUSTER_DATA_DIR/.lock"
  flock -w 600 9 || sf_die "another up/down holds $CLUSTER_DATA_DIR/.lock (waited 10 min)"
  # The binaries of this build, where tests find kubectl and helm.
  ln -sfn "$CLUSTER_BIN_DIR" "$CLUSTER_DATA_DIR/bin"
  sf_cluster_credentials
  local what
  for what in "${CLUSTER_COMPONENTS[@]}"; do
    sf_cluster_start "$what"
  done
  sf_cluster_node
  if sf_cluster_real_node; then
    sf_node_up
  else
    sf_info "CLUSTER_REAL_NODE=0: no real node (pods only on the kwok node)"
  fi
  sf_log "Kubernetes $K8S_VERSION is up at $CLUSTER_SERVER"
  sf_info "kubeconfig: $CLUSTER_KUBECONFIG"
  sf_info "export KUBECONFIG=$CLUSTER_KUBECONFIG PATH=$CLUSTER_DATA_DIR/bin:\$PATH"
  printf '%s\n' "$CLUSTER_KUBECONFIG"
}

# Stops everything; `sf_cluster_down 1` also deletes the real node's state
# (its images and volumes).
sf_cluster_down() {
  local i purge="${1:-0}" owner
  if [[ -d "$CLUSTER_DATA_DIR" ]]; then
    exec 9>"$CLUSTER_DATA_DIR/.lock"
    flock -w 600 9 || sf_die "another up/down holds $CLUSTER_DATA_DIR/.lock (waited 10 min)"
  fi
  # The real node, if this cluster's (it is the host's: see node.sh).
  owner="$(cat "$NODE_RUN/owner" 2>/dev/null || true)"
  if [[ "$owner" == "$CLUSTER_DATA_DIR" ]] || { [[ -z "$owner" ]] && ip link show "$NODE_BRIDGE" >/dev/null 2>&1; }; then
    sf_node_down "$purge"
  fi
  for ((i = ${#CLUSTER_COMPONENTS[@]} - 1; i >= 0; i--)); do
    sf_cluster_stop "${CLUSTER_COMPONENTS[i]}"
  done
}

# shellcheck source=hack/cluster/node.sh
source "$CLUSTER_SCRIPT_DIR/node.sh"
