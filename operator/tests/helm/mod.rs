//! What the chart tests share: helm and kubectl against the local control
//! plane (`make cluster-up`) as its admin, the local PostgreSQL, Redis and
//! Kafka (`make infra-up`), a kubeconfig holding only a chart
//! ServiceAccount's token, the operator binary run here as the chart's pod
//! would run it, and the checks that nothing is left behind.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::PostParams;
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
pub fn postgres_port() -> String {
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
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".to_owned())
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn chart(name: &str) -> String {
    repo().join("charts").join(name).display().to_string()
}

pub fn helm_path() -> PathBuf {
    cluster_dir().join("bin/helm")
}

/// Runs a command to completion; fails the test with its output unless it
/// succeeds. Returns its stdout.
pub fn run(program: &Path, args: &[&str]) -> String {
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
pub fn try_run(program: &Path, args: &[&str]) -> (bool, String) {
    let output = command(program, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// helm and kubectl talk to the test cluster as admin; helm keeps its
/// caches under the target dir, not in $HOME.
pub fn command(program: &Path, args: &[&str]) -> Command {
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
pub async fn run_blocking(program: PathBuf, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&program, &args)
    })
    .await
    .unwrap()
}

pub async fn helm(args: Vec<String>) -> String {
    run_blocking(helm_path(), args).await
}

pub async fn kubectl(args: Vec<String>) -> String {
    run_blocking(kubectl_path(), args).await
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The CRD is cluster-scoped and shared by every test: applied (server-side,
/// so idempotent and safe to race) from crds/, then Established.
pub async fn ensure_crd() {
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
pub fn external_shop_values() -> Vec<String> {
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

/// A kubeconfig that authenticates as the chart's ServiceAccount with a
/// token from `kubectl create token` (never the admin's certificate).
pub fn service_account_kubeconfig(namespace: &str, service_account: &str) -> PathBuf {
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

pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The operator binary as a local process, as it would run in the chart's
/// pod: same arguments, the pod's environment, the ServiceAccount's token.
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl OperatorProcess {
    /// `chart_env`: the plain environment of the chart's operator container
    /// ([`chart_env`]); the downward API's values and the test's log
    /// settings are set here.
    pub fn start(
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// GET on the operator's endpoint; the status code, if it answered.
    pub fn get(&self, path: &str) -> Option<u16> {
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

    pub async fn wait_ready(&self) {
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
    pub fn stop(mut self) {
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
pub async fn chart_env(ns: &TestNamespace, release: &str) -> Vec<(String, String)> {
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

pub fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref status)) if status.code == 403)
}

/// Whether the ServiceAccount may do `verb` on `resource` cluster-wide
/// (asked as that ServiceAccount: a SelfSubjectAccessReview).
pub async fn may_cluster_wide(client: &Client, verb: &str, group: &str, resource: &str) -> bool {
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

pub async fn wait_storefront_ready(
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
pub fn labelled_objects(namespace: &str, instance: &str) -> String {
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
pub async fn wait_nothing_labelled(namespace: &str, instance: &str) {
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
pub async fn drop_databases(namespace: &str, storefront: &str) {
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
pub struct LeftoverGuard {
    pub namespace: String,
    pub operator_release: String,
    pub armed: bool,
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
