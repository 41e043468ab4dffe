#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The Helm charts (`charts/`) and the packaging around them, against the
//! local control plane (`make cluster-up`) and the local PostgreSQL, Redis
//! and Kafka (`make infra-up`).
//!
//! - both charts pass `helm lint --strict`, render, and the rendering is
//!   accepted by the API server (`kubectl apply --dry-run=server`); a value
//!   the schema forbids is refused;
//! - the chart's CRD is `crds/storefront.yaml`, byte for byte;
//! - installed with its default ClusterRole, and with `watchNamespace` (a
//!   Role), the operator chart's ServiceAccount is all the operator needs:
//!   the operator binary runs here as a local process with that
//!   ServiceAccount's token (not the admin's) and brings a Storefront
//!   installed by the storefront chart (external mode, on the local
//!   PostgreSQL, Redis and Kafka) to `Ready=True`, while requests outside
//!   its rules are refused with 403; `helm upgrade` of a service's replicas
//!   reaches the Deployment, and children no longer wanted (Ingress, HPA)
//!   are pruned; `helm uninstall` leaves nothing labelled with the
//!   instance behind (topics deleted, namespaced objects garbage-collected,
//!   no ClusterRole left);
//! - the Dockerfiles, the Compose file, the kind config and the GitHub
//!   workflow pass their linters (installed by hack/charts/install-tools.sh).
//!
//! Pods are simulated by kwok, so the shop itself never answers: `Ready`
//! here means databases and topics provisioned for real and every
//! Deployment available as kwok reports it.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use storefront_kube_testing::{
    TestNamespace, cluster_dir, conditions, kubeconfig_path, kubectl_path, wait_for,
};
use storefront_operator::Storefront;
use storefront_operator::names::{self, SERVICES};
use storefront_runtime::testing::{admin_database_url, kafka_bootstrap_servers};

/// The local PostgreSQL's port (`make infra-up`; `DATABASE_ADMIN_URL`).
fn postgres_port() -> String {
    let url = admin_database_url();
    let authority = url
        .split_once('@')
        .map_or(url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    authority
        .rsplit_once(':')
        .map_or("5432".to_owned(), |(_, port)| port.to_owned())
}

/// The local Redis (`make infra-up`; `REDIS_URL`).
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".to_owned())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart(name: &str) -> String {
    repo().join("charts").join(name).display().to_string()
}

fn helm_path() -> PathBuf {
    cluster_dir().join("bin/helm")
}

/// Runs a command to completion; fails the test with its output unless it
/// succeeds. Returns its stdout.
fn run(program: &Path, args: &[&str]) -> String {
    let output = command(program, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{stdout}\n{}",
        program.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs a command; returns (success, stdout + stderr).
fn try_run(program: &Path, args: &[&str]) -> (bool, String) {
    let output = command(program, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// helm and kubectl talk to the test cluster as admin; helm keeps its
/// caches under the target dir, not in $HOME.
fn command(program: &Path, args: &[&str]) -> Command {
    let helm_home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm");
    let mut command = Command::new(program);
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .stdin(Stdio::null());
    command
}

/// [`run`] off the async threads.
async fn run_blocking(program: PathBuf, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&program, &args)
    })
    .await
    .unwrap()
}

async fn helm(args: Vec<String>) -> String {
    run_blocking(helm_path(), args).await
}

async fn kubectl(args: Vec<String>) -> String {
    run_blocking(kubectl_path(), args).await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The CRD is cluster-scoped and shared by every test: applied (server-side,
/// so idempotent and safe to race) from crds/, then Established.
async fn ensure_crd() {
    let crd = repo().join("crds/storefront.yaml");
    kubectl(strings(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=storefront-charts-test",
        "-f",
        &crd.display().to_string(),
    ]))
    .await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(storefront_kube_testing::client().await);
    wait_for(
        &crds,
        "storefronts.shop.storefront.dev",
        Duration::from_secs(30),
        conditions::crd_established,
    )
    .await
    .unwrap();
}

/// `--set` arguments that put the shop on the local PostgreSQL, Redis and
/// Kafka, with the admin Secret made by the chart and topics deleted with
/// the Storefront (so the test leaves none).
fn external_shop_values() -> Vec<String> {
    [
        "postgres.mode=external".to_owned(),
        "postgres.external.host=127.0.0.1".to_owned(),
        format!("postgres.external.port={}", postgres_port()),
        "postgres.external.sslMode=disable".to_owned(),
        "postgres.external.createAdminSecret=true".to_owned(),
        "postgres.external.adminUsername=storefront".to_owned(),
        "postgres.external.adminPassword=storefront".to_owned(),
        "redis.mode=external".to_owned(),
        format!("redis.external.url={}", redis_url()),
        "kafka.mode=external".to_owned(),
        format!(
            "kafka.external.bootstrapServers={}",
            kafka_bootstrap_servers()
        ),
        "kafka.topics.deletionPolicy=Delete".to_owned(),
    ]
    .into_iter()
    .flat_map(|v| ["--set".to_owned(), v])
    .collect()
}

#[test]
fn the_charts_crd_is_the_generated_crd() {
    let generated = std::fs::read_to_string(repo().join("crds/storefront.yaml")).unwrap();
    let copy =
        std::fs::read_to_string(repo().join("charts/storefront-operator/crds/storefront.yaml"))
            .unwrap();
    assert!(
        generated == copy,
        "charts/storefront-operator/crds/storefront.yaml differs from crds/storefront.yaml: \
         cp crds/storefront.yaml charts/storefront-operator/crds/storefront.yaml"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_charts_lint_strict_render_and_pass_server_side_dry_run() {
    let ns = TestNamespace::new("charts-render").await.unwrap();
    let name = ns.name().to_owned();
    ensure_crd().await;

    let operator = chart("storefront-operator");
    let shop = chart("storefront");
    let mut external = strings(&["lint", "--strict", &shop]);
    external.extend(external_shop_values());
    for args in [
        strings(&["lint", "--strict", &operator]),
        strings(&[
            "lint",
            "--strict",
            &operator,
            "--set",
            &format!("watchNamespace={name}"),
            "--set",
            "replicas=2",
            "--set",
            "serviceMonitor.enabled=true",
        ]),
        strings(&["lint", "--strict", &shop]),
        external,
    ] {
        helm(args).await;
    }

    // Every rendering the tests and the docs use, applied as a dry run: the
    // API server checks each object against its schema (the Storefront
    // against the CRD's, CEL rules included).
    let mut renders = vec![
        strings(&["template", "op", &operator, "-n", &name]),
        strings(&[
            "template",
            "op",
            &operator,
            "-n",
            &name,
            "--set",
            &format!("watchNamespace={name}"),
            "--set",
            "replicas=2",
        ]),
        strings(&["template", "shop", &shop, "-n", &name]),
        strings(&[
            "template",
            "shop",
            &shop,
            "-n",
            &name,
            "--set",
            "postgres.managed.deletionPolicy=Retain",
        ]),
    ];
    let mut external = strings(&["template", "shop", &shop, "-n", &name]);
    external.extend(external_shop_values());
    external.extend(strings(&[
        "--set",
        "gateway.ingress.enabled=true",
        "--set",
        "services.cart.autoscaling.minReplicas=1",
        "--set",
        "services.cart.autoscaling.maxReplicas=4",
        "--set",
        "gateway.rateLimits.perUser=20",
        "--set",
        "tracing.enabled=true",
        "--set",
        "tracing.samplingRatio=0.25",
    ]));
    renders.push(external);
    for args in renders {
        let manifest = helm(args).await;
        let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-render.yaml"));
        std::fs::write(&file, &manifest).unwrap();
        let applied = kubectl(strings(&[
            "apply",
            "--dry-run=server",
            "-n",
            &name,
            "-f",
            &file.display().to_string(),
        ]))
        .await;
        assert!(applied.contains("(server dry run)"), "{applied}");
    }
    let manifest = helm(strings(&["template", "op", &operator, "-n", &name])).await;
    assert!(
        manifest.contains("kind: ClusterRole\n") && !manifest.contains("kind: Role\n"),
        "{manifest}"
    );
    let manifest = helm(strings(&[
        "template",
        "op",
        &operator,
        "-n",
        &name,
        "--set",
        "watchNamespace=shops",
    ]))
    .await;
    assert!(
        !manifest.contains("kind: ClusterRole") && manifest.contains("--watch-namespace=shops"),
        "{manifest}"
    );
    assert!(
        !manifest.contains("--leader-elect"),
        "one replica needs no election: {manifest}"
    );
    let manifest = helm(strings(&[
        "template",
        "op",
        &operator,
        "-n",
        &name,
        "--set",
        "replicas=2",
    ]))
    .await;
    assert!(
        manifest.contains("--leader-elect") && manifest.contains("leader-election"),
        "{manifest}"
    );

    // values.schema.json refuses what the templates cannot render.
    for bad in [
        "replicas=many",
        "unknownKey=1",
        "watchNamespace=Not_A_Namespace",
        "cleanupTimeout=soon",
    ] {
        let (ok, out) = try_run(&helm_path(), &["template", "op", &operator, "--set", bad]);
        assert!(!ok, "{bad} was accepted:\n{out}");
    }
    for bad in [
        "postgres.mode=external",
        "postgres.mode=elsewhere",
        "kafka.topics.deletionPolicy=Sometimes",
        "postgres.managed.deletionPolicy=Sometimes",
        "gateway.serviceType=LoadBalancer,gateway.ingress.enabled=true",
    ] {
        let (ok, out) = try_run(&helm_path(), &["template", "shop", &shop, "--set", bad]);
        assert!(!ok, "{bad} was accepted:\n{out}");
    }
    ns.cleanup().await.unwrap();
}

/// A kubeconfig that authenticates as the chart's ServiceAccount with a
/// token from `kubectl create token` (never the admin's certificate).
fn service_account_kubeconfig(namespace: &str, service_account: &str) -> PathBuf {
    let token = run(
        &kubectl_path(),
        &[
            "create",
            "token",
            service_account,
            "-n",
            namespace,
            "--duration=30m",
        ],
    );
    let admin = Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let cluster = admin.clusters[0].cluster.clone().unwrap();
    let mut cluster_json = json!({ "server": cluster.server });
    if let Some(ca) = cluster.certificate_authority_data {
        cluster_json["certificate-authority-data"] = json!(ca);
    }
    if let Some(ca) = cluster.certificate_authority {
        cluster_json["certificate-authority"] = json!(ca);
    }
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "test", "cluster": cluster_json }],
        "users": [{ "name": service_account, "user": { "token": token.trim() } }],
        "contexts": [{ "name": "sa", "context": { "cluster": "test", "user": service_account, "namespace": namespace } }],
        "current-context": "sa",
    });
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{namespace}-sa.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec_pretty(&kubeconfig).unwrap()).unwrap();
    path
}

async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The operator binary as a local process, as it would run in the chart's
/// pod: same arguments, the pod's environment, the ServiceAccount's token.
struct OperatorProcess {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl OperatorProcess {
    /// `chart_env`: the plain environment of the chart's operator container
    /// ([`chart_env`]); the downward API's values and the test's log
    /// settings are set here.
    fn start(
        kubeconfig: &Path,
        namespace: &str,
        identity: &str,
        args: &[&str],
        chart_env: &[(String, String)],
    ) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{namespace}-operator.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_storefront-operator"))
            .arg("run")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .args(args)
            .env_clear()
            .envs(chart_env.iter().map(|(k, v)| (k, v)))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", namespace)
            .env("LOG_FORMAT", "text")
            .env("LOG_LEVEL", "info,storefront_operator=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// GET on the operator's endpoint; the status code, if it answered.
    fn get(&self, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get("/readyz") != Some(200) {
            assert!(
                Instant::now() < deadline,
                "the operator never answered /readyz 200; its log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, as the kubelet would; SIGKILL if it does not stop in time.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The environment the operator chart gives its container, the plain values
/// (not the downward API's).
async fn chart_env(ns: &TestNamespace, release: &str) -> Vec<(String, String)> {
    let deployment = ns
        .api::<Deployment>()
        .get(&format!("{release}-storefront-operator"))
        .await
        .unwrap();
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let env: Vec<(String, String)> = env
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect();
    assert!(
        env.iter().any(|(k, _)| k == "OPERATOR_POD_LABELS"),
        "{env:?}"
    );
    env
}

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref status)) if status.code == 403)
}

/// Whether the ServiceAccount may do `verb` on `resource` cluster-wide
/// (asked as that ServiceAccount: a SelfSubjectAccessReview).
async fn may_cluster_wide(client: &Client, verb: &str, group: &str, resource: &str) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

async fn wait_storefront_ready(
    api: &Api<Storefront>,
    name: &str,
    operator: &OperatorProcess,
) -> Storefront {
    match wait_for(api, name, Duration::from_secs(90), |sf| {
        sf.status.as_ref().is_some_and(|s| {
            s.observed_generation == sf.metadata.generation
                && conditions::condition_true(&s.conditions, "Ready")
        })
    })
    .await
    {
        Ok(sf) => sf,
        Err(error) => panic!("{error:#}\noperator log:\n{}", operator.log_tail()),
    }
}

/// Every namespaced object labelled `app.kubernetes.io/instance=<instance>`
/// in `namespace`, over every listable resource type the server has.
fn labelled_objects(namespace: &str, instance: &str) -> String {
    let kinds = run(
        &kubectl_path(),
        &[
            "api-resources",
            "--verbs=list",
            "--namespaced=true",
            "-o",
            "name",
        ],
    );
    let kinds: Vec<&str> = kinds
        .lines()
        .filter(|k| !k.is_empty() && *k != "events" && *k != "events.events.k8s.io")
        .collect();
    run(
        &kubectl_path(),
        &[
            "get",
            &kinds.join(","),
            "-n",
            namespace,
            "-l",
            &format!("app.kubernetes.io/instance={instance}"),
            "-o",
            "name",
            "--ignore-not-found",
        ],
    )
}

/// Waits until garbage collection has removed everything labelled with
/// `instance` in `namespace`; fails with what is left after a minute.
async fn wait_nothing_labelled(namespace: &str, instance: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = tokio::task::spawn_blocking({
            let (namespace, instance) = (namespace.to_owned(), instance.to_owned());
            move || labelled_objects(&namespace, &instance)
        })
        .await
        .unwrap();
        if left.trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after helm uninstall of {instance}:\n{left}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Drops what the operator made in the local PostgreSQL for one shop (the
/// Storefront's deletion keeps databases, by design).
async fn drop_databases(namespace: &str, storefront: &str) {
    let mut connection = PgConnection::connect(&admin_database_url()).await.unwrap();
    for service in SERVICES.iter().filter(|s| s.database) {
        let database = names::database(namespace, storefront, service.name);
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS \"{database}\""),
        ] {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut connection)
                .await
                .unwrap();
        }
    }
}

/// When a test fails half-way, what deleting its namespace cannot undo by
/// itself: the Storefront keeps its finalizer once the operator is gone
/// (the namespace would stay Terminating), and the release's ClusterRole
/// and binding are cluster-scoped. Best effort, nothing may panic here.
struct LeftoverGuard {
    namespace: String,
    operator_release: String,
    armed: bool,
}

impl Drop for LeftoverGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let instance = format!("app.kubernetes.io/instance={}", self.operator_release);
        let finalizers = r#"{"metadata":{"finalizers":null}}"#;
        for (program, args) in [
            (
                kubectl_path(),
                vec![
                    "patch",
                    "storefront",
                    "shop",
                    "-n",
                    &self.namespace,
                    "--type=merge",
                    "-p",
                    finalizers,
                ],
            ),
            (
                helm_path(),
                vec!["uninstall", &self.operator_release, "-n", &self.namespace],
            ),
            (
                kubectl_path(),
                vec![
                    "delete",
                    "clusterrole,clusterrolebinding",
                    "-l",
                    &instance,
                    "--ignore-not-found",
                ],
            ),
        ] {
            let _ = command(&program, &args).output();
        }
        // The shop's databases and topics, from a runtime of our own (the
        // test's may be unwinding).
        let namespace = self.namespace.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let topics: Vec<String> = [
                    "checkout-events",
                    "checkout-events.dlq",
                    "order-events",
                    "order-events.dlq",
                ]
                .iter()
                .map(|base| names::topic(&namespace, "shop", base))
                .collect();
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    storefront_operator::topics::delete(&kafka_bootstrap_servers(), &topics),
                )
                .await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    tokio::spawn(async move { drop_databases(&namespace, "shop").await }),
                )
                .await;
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

/// What both install tests share: the operator chart installed with
/// `operator_values`, the shop chart (external mode), the operator running
/// with the chart's ServiceAccount, the shop Ready. Returns the pieces the
/// test goes on with.
struct Installed {
    // Dropped in this order on a failure: the operator stops (so it cannot
    // put its finalizer back), the leftovers go, then the namespace.
    operator: OperatorProcess,
    leftovers: LeftoverGuard,
    ns: TestNamespace,
    operator_release: String,
    sa_client: Client,
    identity: String,
}

async fn install(
    prefix: &str,
    operator_values: &[&str],
    operator_args: &[&str],
    shop_values: &[&str],
) -> Installed {
    let ns = TestNamespace::new(prefix).await.unwrap();
    let name = ns.name().to_owned();
    ensure_crd().await;

    // Release names are unique per test: the ClusterRole and its binding
    // are named after the release and are cluster-wide.
    let operator_release = format!("op-{}", &name[name.len() - 10..]);
    let leftovers = LeftoverGuard {
        namespace: name.clone(),
        operator_release: operator_release.clone(),
        armed: true,
    };
    let mut args = strings(&[
        "install",
        &operator_release,
        &chart("storefront-operator"),
        "-n",
        &name,
        "--wait",
        "--timeout",
        "60s",
    ]);
    for value in operator_values {
        args.extend(strings(&["--set", &value.replace("{ns}", &name)]));
    }
    helm(args).await;
    let service_account = format!("{operator_release}-storefront-operator");
    let manifest = helm(strings(&[
        "get",
        "manifest",
        &operator_release,
        "-n",
        &name,
    ]))
    .await;
    assert!(manifest.contains("kind: ServiceAccount"), "{manifest}");

    let mut args = strings(&["install", "shop", &chart("storefront"), "-n", &name]);
    args.extend(external_shop_values());
    for value in shop_values {
        args.extend(strings(&["--set", value]));
    }
    helm(args).await;

    let kubeconfig = service_account_kubeconfig(&name, &service_account);
    let sa_client = client_from(&kubeconfig).await;
    let identity = format!("charts-test-{}", uuid::Uuid::new_v4().simple());
    let args: Vec<String> = operator_args
        .iter()
        .map(|a| a.replace("{ns}", &name))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = chart_env(&ns, &operator_release).await;
    let operator = OperatorProcess::start(&kubeconfig, &name, &identity, &args, &env);
    operator.wait_ready().await;

    let storefronts: Api<Storefront> = ns.api();
    let sf = wait_storefront_ready(&storefronts, "shop", &operator).await;
    let status = sf.status.unwrap();
    assert_eq!(
        status.gateway_address.as_deref(),
        Some(format!("shop-gateway.{name}.svc:8080").as_str())
    );
    assert_eq!(status.services.len(), 7, "{:?}", status.services);

    // It was this operator, with these credentials, that did the work: its
    // Events carry its identity, and it never hit a refusal.
    let events: Api<Event> = ns.api();
    let ours: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(identity.as_str()))
        .map(|e| e.reason.unwrap_or_default())
        .collect();
    assert!(
        ours.iter().any(|r| r == "Applied"),
        "events of {identity}: {ours:?}"
    );
    let log = operator.log();
    assert!(
        !log.contains("403") && !log.to_ascii_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
    Installed {
        operator,
        leftovers,
        ns,
        operator_release,
        sa_client,
        identity,
    }
}

/// `helm uninstall` of the shop: the operator's finalizer deletes the
/// topics, then garbage collection leaves nothing labelled with the
/// instance; then the operator chart goes, cluster-scoped objects included.
async fn uninstall_and_check(mut installed: Installed) {
    let name = installed.ns.name().to_owned();
    helm(strings(&[
        "uninstall",
        "shop",
        "-n",
        &name,
        "--wait",
        "--timeout",
        "60s",
    ]))
    .await;
    let storefronts: Api<Storefront> = installed.ns.api();
    if let Err(error) =
        storefront_kube_testing::wait_for_deletion(&storefronts, "shop", Duration::from_secs(60))
            .await
    {
        panic!(
            "{error:#}\noperator log:\n{}",
            installed.operator.log_tail()
        );
    }
    wait_nothing_labelled(&name, "shop").await;
    let events: Api<Event> = installed.ns.api();
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "TopicsDeleted"), "{reasons:?}");

    installed.operator.stop();
    helm(strings(&[
        "uninstall",
        &installed.operator_release,
        "-n",
        &name,
        "--wait",
        "--timeout",
        "60s",
    ]))
    .await;
    let (_, out) = try_run(
        &kubectl_path(),
        &[
            "get",
            "clusterrole,clusterrolebinding",
            "-o",
            "name",
            "-l",
            &format!("app.kubernetes.io/instance={}", installed.operator_release),
        ],
    );
    assert!(
        out.trim().is_empty() || out.contains("No resources found"),
        "{out}"
    );
    wait_nothing_labelled(&name, &installed.operator_release).await;
    drop_databases(&name, "shop").await;
    installed.leftovers.armed = false;
    installed.ns.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_chart_rbac_runs_the_operator_and_helm_upgrade_and_uninstall_reconcile() {
    // Leader election on, so the Lease rules are exercised too. The process
    // watches only the test's namespace, so that it leaves other tests'
    // Storefronts alone; the ClusterRole's cluster-wide reach is asked of
    // the API server instead. The shop starts with an Ingress and an HPA,
    // which the upgrade removes: pruning (list, delete) is exercised too.
    let installed = install(
        "charts-cluster",
        &["leaderElection.enabled=true"],
        &["--leader-elect", "--watch-namespace={ns}"],
        &[
            "gateway.ingress.enabled=true",
            "services.cart.autoscaling.minReplicas=1",
            "services.cart.autoscaling.maxReplicas=3",
        ],
    )
    .await;
    let name = installed.ns.name().to_owned();
    let sa = &installed.sa_client;

    let leases: Api<Lease> = installed.ns.api();
    let lease = leases.get("storefront-operator").await.unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(installed.identity.as_str())
    );
    for (verb, group, resource) in [
        ("list", "shop.storefront.dev", "storefronts"),
        ("watch", "shop.storefront.dev", "storefronts"),
        ("watch", "apps", "deployments"),
        ("patch", "apps", "deployments"),
    ] {
        assert!(
            may_cluster_wide(sa, verb, group, resource).await,
            "{verb} {resource} cluster-wide"
        );
    }
    // Least privilege: what the operator never does is refused.
    assert!(!may_cluster_wide(sa, "watch", "", "secrets").await);
    assert!(!may_cluster_wide(sa, "delete", "", "secrets").await);
    assert!(!may_cluster_wide(sa, "update", "shop.storefront.dev", "storefronts").await);
    assert!(!may_cluster_wide(sa, "create", "", "pods").await);
    assert!(!may_cluster_wide(sa, "get", "", "configmaps").await);
    assert!(is_forbidden(
        Api::<Pod>::namespaced(sa.clone(), &name)
            .list(&ListParams::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), &name)
            .delete("shop-jwt", &Default::default())
            .await
    ));

    // helm upgrade: a service's replicas reach its Deployment; the Ingress
    // and the HPA no longer wanted are pruned.
    let events: Api<Event> = installed.ns.api();
    let ingresses: Api<Ingress> = installed.ns.api();
    assert!(ingresses.get_opt("shop-gateway").await.unwrap().is_some());
    let deployments: Api<Deployment> = installed.ns.api();
    let before = deployments.get("shop-checkout").await.unwrap();
    assert_eq!(before.spec.unwrap().replicas, Some(1));
    // All values given again (not --reuse-values, whose merging cannot
    // drop the autoscaling map): without the Ingress and the HPA.
    let mut args = strings(&["upgrade", "shop", &chart("storefront"), "-n", &name]);
    args.extend(external_shop_values());
    args.extend(strings(&["--set", "services.checkout.replicas=3"]));
    helm(args).await;
    if let Err(error) = wait_for(
        &deployments,
        "shop-checkout",
        Duration::from_secs(60),
        |d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(3)
                && conditions::deployment_available(d)
        },
    )
    .await
    {
        panic!(
            "{error:#}\noperator log:\n{}",
            installed.operator.log_tail()
        );
    }
    let storefronts: Api<Storefront> = installed.ns.api();
    let sf = wait_storefront_ready(&storefronts, "shop", &installed.operator).await;
    assert_eq!(sf.status.unwrap().services["checkout"].replicas, 3);
    let ingresses: Api<Ingress> = installed.ns.api();
    let autoscalers: Api<HorizontalPodAutoscaler> = installed.ns.api();
    assert!(ingresses.get_opt("shop-gateway").await.unwrap().is_none());
    assert!(autoscalers.get_opt("shop-cart").await.unwrap().is_none());
    let pruned = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("Pruned")
                && e.reporting_instance.as_deref() == Some(installed.identity.as_str())
        });
    assert!(pruned, "no Pruned event from {}", installed.identity);

    uninstall_and_check(installed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_chart_rbac_runs_the_operator_in_its_namespace_only() {
    let installed = install(
        "charts-namespaced",
        &["watchNamespace={ns}"],
        &["--watch-namespace={ns}"],
        &[],
    )
    .await;
    let name = installed.ns.name().to_owned();
    let sa = &installed.sa_client;

    let manifest = helm(strings(&[
        "get",
        "manifest",
        &installed.operator_release,
        "-n",
        &name,
    ]))
    .await;
    assert!(
        manifest.contains("kind: Role\n") && !manifest.contains("ClusterRole"),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!("--watch-namespace={name}")),
        "{manifest}"
    );
    // Nothing outside its namespace: another namespace's Secret, any
    // Storefront cluster-wide.
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "kube-system")
            .get("anything")
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "default")
            .get("shop-jwt")
            .await
    ));
    assert!(is_forbidden(
        Api::<Storefront>::all(sa.clone())
            .list(&ListParams::default())
            .await
    ));
    assert!(!may_cluster_wide(sa, "list", "shop.storefront.dev", "storefronts").await);
    // ... and inside it, only what it uses.
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), &name)
            .delete("shop-jwt", &Default::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<Pod>::namespaced(sa.clone(), &name)
            .list(&ListParams::default())
            .await
    ));
    assert!(
        Api::<Secret>::namespaced(sa.clone(), &name)
            .get("shop-jwt")
            .await
            .is_ok()
    );

    uninstall_and_check(installed).await;
}

/// The claims the managed stores' StatefulSets make (`data-<set>-0`).
const STORE_CLAIMS: [&str; 3] = [
    "data-shop-postgres-0",
    "data-shop-redis-0",
    "data-shop-kafka-0",
];

/// What one install of a managed shop made: the uids of its volumes' claims
/// and of its PostgreSQL admin Secret.
async fn managed_shop_objects(ns: &TestNamespace, operator: &OperatorProcess) -> Vec<String> {
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let mut uids = vec![];
    for claim in STORE_CLAIMS {
        match wait_for(&claims, claim, Duration::from_secs(90), |_| true).await {
            Ok(claim) => uids.push(claim.metadata.uid.unwrap_or_default()),
            Err(error) => panic!("{error:#}\noperator log:\n{}", operator.log_tail()),
        }
    }
    let secrets: Api<Secret> = ns.api();
    let admin = wait_for(
        &secrets,
        "shop-postgres-admin",
        Duration::from_secs(30),
        |_| true,
    )
    .await
    .unwrap();
    uids.push(admin.metadata.uid.unwrap_or_default());
    uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstalling_both_charts_of_a_managed_shop_leaves_nothing_and_installing_again_works() {
    // The charts' defaults: PostgreSQL, Redis and Kafka managed by the
    // operator. kwok runs nothing, so the shop is never Ready here, but the
    // StatefulSets make their volume claims, and the operator its Secrets.
    let ns = TestNamespace::new("charts-managed").await.unwrap();
    let name = ns.name().to_owned();
    ensure_crd().await;
    let operator_release = format!("op-{}", &name[name.len() - 10..]);
    let mut leftovers = LeftoverGuard {
        namespace: name.clone(),
        operator_release: operator_release.clone(),
        armed: true,
    };
    let service_account = format!("{operator_release}-storefront-operator");
    let mut before: Option<Vec<String>> = None;
    for round in ["first", "second"] {
        helm(strings(&[
            "install",
            &operator_release,
            &chart("storefront-operator"),
            "-n",
            &name,
            "--wait",
            "--timeout",
            "60s",
        ]))
        .await;
        helm(strings(&[
            "install",
            "shop",
            &chart("storefront"),
            "-n",
            &name,
        ]))
        .await;
        let kubeconfig = service_account_kubeconfig(&name, &service_account);
        let identity = format!("charts-managed-{round}");
        let env = chart_env(&ns, &operator_release).await;
        let watch = format!("--watch-namespace={name}");
        let operator = OperatorProcess::start(&kubeconfig, &name, &identity, &[&watch], &env);
        operator.wait_ready().await;

        let made = managed_shop_objects(&ns, &operator).await;
        if let Some(before) = &before {
            for (old, new) in before.iter().zip(&made) {
                assert_ne!(old, new, "the {round} install found an object of the first");
            }
        }
        // The stores let in the operator's pods, as the chart describes them.
        let policies: Api<NetworkPolicy> = ns.api();
        let policy = policies.get("shop-stores").await.unwrap();
        let rules = policy.spec.unwrap().ingress.unwrap();
        let peer = rules[1].from.as_ref().unwrap()[0].clone();
        assert_eq!(
            peer.namespace_selector.unwrap().match_labels.unwrap()["kubernetes.io/metadata.name"],
            name
        );
        assert_eq!(
            peer.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            operator_release
        );

        // Uninstall both: the Storefront goes at once (no finalizer waits
        // for a broker that never ran), the volumes and Secrets with it.
        helm(strings(&[
            "uninstall",
            "shop",
            "-n",
            &name,
            "--wait",
            "--timeout",
            "60s",
        ]))
        .await;
        let storefronts: Api<Storefront> = ns.api();
        if let Err(error) = storefront_kube_testing::wait_for_deletion(
            &storefronts,
            "shop",
            Duration::from_secs(30),
        )
        .await
        {
            panic!("{error:#}\noperator log:\n{}", operator.log_tail());
        }
        wait_nothing_labelled(&name, "shop").await;
        let claims: Api<PersistentVolumeClaim> = ns.api();
        storefront_kube_testing::wait_for_list(
            &claims,
            &ListParams::default(),
            Duration::from_secs(60),
            |items| items.is_empty(),
        )
        .await
        .unwrap();
        let secrets: Api<Secret> = ns.api();
        let left: Vec<String> = secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .filter(|n| n.starts_with("shop-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        operator.stop();
        helm(strings(&[
            "uninstall",
            &operator_release,
            "-n",
            &name,
            "--wait",
            "--timeout",
            "60s",
        ]))
        .await;
        wait_nothing_labelled(&name, &operator_release).await;
        before = Some(made);
    }
    leftovers.armed = false;
    ns.cleanup().await.unwrap();
}

/// hack/charts/install-tools.sh (idempotent; quick when its tools are
/// cached) and where it put them.
fn packaging_tools() -> PathBuf {
    let script = repo().join("hack/charts/install-tools.sh");
    let out = run(Path::new("bash"), &[&script.display().to_string()]);
    PathBuf::from(out.lines().last().unwrap().trim())
}

#[test]
fn dockerfiles_compose_kind_config_and_the_workflow_pass_their_linters() {
    let bin = packaging_tools();
    let repo = repo();
    let path = |p: &str| repo.join(p).display().to_string();
    for (tool, args) in [
        (
            "dockerfile-check",
            vec![
                path("docker/storefront.Dockerfile"),
                path("docker/operator.Dockerfile"),
            ],
        ),
        ("compose-check", vec![path("deploy/compose.yaml")]),
        ("kind-config-check", vec![path("deploy/kind.yaml")]),
        (
            "actionlint",
            vec![
                "-color=false".to_owned(),
                path(".github/workflows/kind.yaml"),
                path(".github/workflows/release.yaml"),
            ],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = try_run(&bin.join(tool), &args);
        assert!(ok, "{tool} {}:\n{out}", args.join(" "));
    }
    // The linters do catch things: a broken file of each kind is refused.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let broken = [
        (
            "dockerfile-check",
            "broken.Dockerfile",
            "from debian:13 as build\nRUN true\nCOPY --frm=build / /\n",
        ),
        (
            "compose-check",
            "broken-compose.yaml",
            "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_healthy\n",
        ),
        (
            "kind-config-check",
            "broken-kind.yaml",
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: master\n    extraPortMapings: []\n",
        ),
        (
            "actionlint",
            "broken-workflow.yaml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nothing }}\n",
        ),
    ];
    for (tool, file, text) in broken {
        let file = tmp.join(file);
        std::fs::write(&file, text).unwrap();
        let (ok, out) = try_run(&bin.join(tool), &[&file.display().to_string()]);
        assert!(!ok, "{tool} accepted a broken file:\n{text}\n{out}");
    }
}
