//! The cluster side: helm and kubectl of the local test cluster, the real
//! node, namespaces on it, and waiting for what the operator makes.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use storefront_kube_testing::{self as testing, conditions};

use crate::NODE_NAME;

/// The annotation that sends a namespace's pods to the real node.
pub const NODE_SELECTOR_ANNOTATION: &str = "scheduler.alpha.kubernetes.io/node-selector";
pub const NODE_SELECTOR: &str = "storefront.dev/node=real";

/// The repository's root (charts, crds, examples).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

fn tool(name: &str) -> PathBuf {
    testing::cluster_dir().join("bin").join(name)
}

/// Runs a command of the cluster's (`helm`, `kubectl`) with the admin
/// kubeconfig; its stdout, or an error with its stderr.
pub fn run(name: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(tool(name))
        .args(args)
        .env("KUBECONFIG", testing::kubeconfig_path())
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("cannot run {name}"))?;
    if !output.status.success() {
        bail!(
            "{name} {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn helm(args: &[&str]) -> anyhow::Result<String> {
    run("helm", args)
}

pub fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    run("kubectl", args)
}

/// The client, once the real node is there and Ready. Fails the test with
/// what to do when it is not: these tests never pass without running pods.
pub async fn real_node() -> Client {
    let client = testing::client().await;
    let node = Api::<Node>::all(client.clone()).get_opt(NODE_NAME).await;
    match node {
        Ok(Some(node)) if conditions::node_ready(&node) => client,
        Ok(Some(_)) => panic!(
            "the real node {NODE_NAME} is not Ready (hack/cluster/up.sh; logs in .data/cluster/logs)"
        ),
        Ok(None) => panic!(
            "the local test cluster has no real node {NODE_NAME}: start it with hack/cluster/up.sh \
             (not CLUSTER_REAL_NODE=0) and load the images with hack/cluster/images.sh"
        ),
        Err(error) => panic!("the local test cluster does not answer: {error}"),
    }
}

/// Applies the repository's CRD (what both charts expect; helm installs a
/// chart's CRD only when it is missing).
pub fn apply_crd() {
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "crds/storefront.yaml",
    ])
    .expect("the Storefront CRD applies");
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/storefronts.shop.storefront.dev",
        "--timeout=60s",
    ])
    .expect("the Storefront CRD is established");
}

/// A namespace whose pods run on the real node, deleted when dropped.
pub struct NodeNamespace {
    client: Client,
    name: String,
}

impl NodeNamespace {
    /// `<prefix>-<random>`, annotated for the real node.
    pub async fn new(client: &Client, prefix: &str) -> NodeNamespace {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self::named(client, &name).await
    }

    /// The namespace `name` (made if missing), annotated for the real node.
    pub async fn named(client: &Client, name: &str) -> NodeNamespace {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    [(testing::TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into(),
                ),
                annotations: Some(
                    [(
                        NODE_SELECTOR_ANNOTATION.to_owned(),
                        NODE_SELECTOR.to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let api = Api::<Namespace>::all(client.clone());
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(error) => panic!("cannot create namespace {name}: {error}"),
        }
        NodeNamespace {
            client: client.clone(),
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace and waits until it is gone.
    pub async fn delete(self) {
        let api = Api::<Namespace>::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::background()).await;
        let _ = testing::wait_for_deletion(&api, &self.name, Duration::from_secs(180)).await;
    }
}

/// Polls `check` every 500 ms until it gives `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {} s waiting for {what}",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `Ready` condition of Storefront `name` (through kubectl: this crate
/// does not depend on the operator's types for reading status).
pub fn storefront_ready(namespace: &str, name: &str) -> bool {
    kubectl(&[
        "-n",
        namespace,
        "get",
        "storefront",
        name,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ])
    .is_ok_and(|status| status.trim() == "True")
}

/// Waits until Storefront `name` is Ready; on time-out, fails with its
/// status, its pods and the operator's log.
pub async fn wait_ready(
    namespace: &str,
    name: &str,
    operator_namespace: &str,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    while !storefront_ready(namespace, name) {
        if started.elapsed() > timeout {
            let status = kubectl(&["-n", namespace, "get", "storefront", name, "-o", "yaml"])
                .unwrap_or_default();
            let pods = kubectl(&["-n", namespace, "get", "pods", "-o", "wide"]).unwrap_or_default();
            let log = kubectl(&[
                "-n",
                operator_namespace,
                "logs",
                "deploy/storefront-operator",
                "--tail=40",
            ])
            .or_else(|_| {
                kubectl(&[
                    "-n",
                    operator_namespace,
                    "logs",
                    "-l",
                    "app.kubernetes.io/name=storefront-operator",
                    "--tail=40",
                ])
            })
            .unwrap_or_default();
            panic!(
                "Storefront {namespace}/{name} not Ready within {} s\n{status}\n{pods}\noperator log:\n{log}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    started.elapsed()
}

/// `http://<cluster IP>:<port>` of Service `name`.
pub async fn service_url(client: &Client, namespace: &str, name: &str) -> String {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Service {namespace}/{name}: {e}"));
    let spec = service.spec.expect("a Service spec");
    let ip = spec.cluster_ip.expect("a cluster IP");
    let port = spec.ports.expect("ports")[0].port;
    format!("http://{ip}:{port}")
}

/// The value of `key` in Secret `name`.
pub async fn secret_value(client: &Client, namespace: &str, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Secret {namespace}/{name}: {e}"));
    let data = secret.data.unwrap_or_default();
    let value = data
        .get(key)
        .unwrap_or_else(|| panic!("Secret {namespace}/{name} has no key {key}"));
    String::from_utf8(value.0.clone()).expect("a UTF-8 secret")
}

/// The pods of namespace `namespace` matching `selector`.
pub async fn pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
}

/// Whether every Deployment in `namespace` has rolled out its latest
/// template: observed, all replicas updated and available, none old.
pub async fn deployments_rolled_out(client: &Client, namespace: &str) -> bool {
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list deployments")
        .items;
    !deployments.is_empty()
        && deployments.iter().all(|d| {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            status.observed_generation == d.metadata.generation
                && status.updated_replicas.unwrap_or(0) == want
                && status.available_replicas.unwrap_or(0) == want
                && status.replicas.unwrap_or(0) == want
        })
}

/// The names of the objects of `kinds` (kubectl names) left in `namespace`
/// that carry `selector`.
pub fn leftovers(namespace: &str, kinds: &str, selector: &str) -> Vec<String> {
    kubectl(&["-n", namespace, "get", kinds, "-l", selector, "-o", "name"])
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .filter(|line| !line.is_empty())
        .collect()
}

/// The IP of pod `name`.
pub async fn pod_ip(client: &Client, namespace: &str, name: &str) -> String {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("pod {namespace}/{name}: {e}"));
    pod.status
        .and_then(|s| s.pod_ip)
        .unwrap_or_else(|| panic!("pod {namespace}/{name} has no IP"))
}

/// Name and UID of each pod, for telling restarted pods from kept ones.
pub fn identities(pods: &[Pod]) -> Vec<(String, String)> {
    let mut ids: Vec<(String, String)> = pods
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    ids.sort();
    ids
}

/// `helm install` of the operator chart into `namespace`, watching `watch`,
/// from the image built here; waits until its pod is ready.
pub fn install_operator(namespace: &str, watch: &str) {
    helm(&[
        "install",
        "storefront-operator",
        "charts/storefront-operator",
        "-n",
        namespace,
        "--set",
        &format!("image.repository={}", crate::images::OPERATOR_REPOSITORY),
        "--set",
        &format!("image.tag={}", crate::images::OPERATOR_TAG),
        "--set",
        &format!("watchNamespace={watch}"),
        "--set",
        "fullnameOverride=storefront-operator",
        "--wait",
        "--timeout",
        "3m",
    ])
    .expect("the operator chart installs and its pod becomes ready");
}

/// What a test installed, removed when it fails (a panic unwinds through
/// this): the shops first, while their operator still runs to finalize
/// them (a finalizer left behind is dropped), then the operator, then the
/// namespaces. A test that passes removes what it made itself.
pub struct UninstallOnFailure {
    /// `(namespace, Storefront)`: each also a helm release of that name, if installed so.
    pub shops: Vec<(String, String)>,
    pub operator_namespace: String,
    pub namespaces: Vec<String>,
}

impl Drop for UninstallOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (namespace, name) in &self.shops {
            let _ = helm(&[
                "uninstall",
                name,
                "-n",
                namespace,
                "--wait",
                "--timeout",
                "2m",
            ]);
            let _ = kubectl(&[
                "-n",
                namespace,
                "delete",
                "storefront",
                name,
                "--timeout=60s",
            ]);
            let _ = kubectl(&[
                "-n",
                namespace,
                "patch",
                "storefront",
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
        let _ = helm(&[
            "uninstall",
            "storefront-operator",
            "-n",
            &self.operator_namespace,
            "--wait",
            "--timeout",
            "1m",
        ]);
        let mut delete = vec!["delete", "namespace", "--wait=false"];
        delete.extend(self.namespaces.iter().map(String::as_str));
        let _ = kubectl(&delete);
    }
}
