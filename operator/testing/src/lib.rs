//! Test support for code that talks to Kubernetes, against the local control
//! plane of `hack/cluster` (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok, started by `make cluster-up`).
//!
//! - [`client`] connects with the admin kubeconfig that `hack/cluster/up.sh`
//!   writes to `$STOREFRONT_DATA_DIR/cluster/kubeconfig` (or the file named by
//!   `STOREFRONT_KUBECONFIG`).
//! - [`TestNamespace`] is a fresh namespace per test, deleted by
//!   [`TestNamespace::cleanup`] (and, best effort, when dropped).
//! - [`wait_for`] polls an object until a condition holds, and fails with the
//!   object's last state when it does not in time; [`conditions`] has the
//!   usual ones.
//!
//! Pods there are simulated by kwok: they are scheduled on the fake node
//! `kwok-node-0` and become Running and Ready, but no container runs.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Environment variable naming the kubeconfig to use instead of the default.
pub const KUBECONFIG_ENV: &str = "STOREFRONT_KUBECONFIG";
/// Environment variable naming the kubectl to use instead of the cluster's.
pub const KUBECTL_ENV: &str = "STOREFRONT_KUBECTL";
/// Label put on every namespace made by [`TestNamespace`].
pub const TEST_NAMESPACE_LABEL: &str = "storefront.dev/test-namespace";
/// Name of the fake node kwok manages.
pub const NODE_NAME: &str = "kwok-node-0";

/// How often [`wait_for`] looks at the object.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// `$STOREFRONT_DATA_DIR/cluster`, the data directory of `hack/cluster`
/// (`.data/cluster` at the workspace root by default).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("STOREFRONT_DATA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.data"))
        .join("cluster")
}

/// The kubeconfig the tests use: `$STOREFRONT_KUBECONFIG`, else
/// `$STOREFRONT_DATA_DIR/cluster/kubeconfig`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os(KUBECONFIG_ENV)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster_dir().join("kubeconfig"))
}

/// The kubectl matching the control plane: `$STOREFRONT_KUBECTL`, else the
/// one `hack/cluster/up.sh` links into `$STOREFRONT_DATA_DIR/cluster/bin`,
/// else `kubectl` from `PATH`.
pub fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os(KUBECTL_ENV).filter(|path| !path.is_empty()) {
        return path.into();
    }
    let linked = cluster_dir().join("bin/kubectl");
    if linked.exists() {
        linked
    } else {
        PathBuf::from("kubectl")
    }
}

/// A client for the local test cluster, or why there is none.
pub async fn try_client() -> anyhow::Result<Client> {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).with_context(|| {
        format!(
            "cannot read the test cluster's kubeconfig {}: start the cluster with `make cluster-up` \
             (hack/cluster/up.sh) or point {KUBECONFIG_ENV} at another kubeconfig",
            path.display()
        )
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    Client::try_from(config)
        .with_context(|| format!("cannot build a client from {}", path.display()))
}

/// A client for the local test cluster. Panics with the reason when the
/// kubeconfig is missing or invalid (the cluster is not up).
pub async fn client() -> Client {
    match try_client().await {
        Ok(client) => client,
        Err(error) => panic!("{error:#}"),
    }
}

/// A namespace of its own for one test, named `<prefix>-<random>`.
///
/// Call [`cleanup`](Self::cleanup) at the end of the test. If the value is
/// dropped without it (a failed assertion), the namespace is still deleted,
/// best effort, from a thread of its own.
pub struct TestNamespace {
    client: Client,
    name: String,
    cleaned_up: bool,
}

impl TestNamespace {
    /// Creates a fresh namespace in the local test cluster.
    pub async fn new(prefix: &str) -> anyhow::Result<Self> {
        Self::with_client(client().await, prefix).await
    }

    /// Creates a fresh namespace with the given client.
    pub async fn with_client(client: Client, prefix: &str) -> anyhow::Result<Self> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let prefix = prefix.trim_matches('-');
        let prefix = if prefix.is_empty() { "test" } else { prefix };
        let name = format!("{prefix}-{}", &suffix[..10]);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("cannot create namespace {name}"))?;
        Ok(Self {
            client,
            name,
            cleaned_up: false,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client the namespace was made with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An [`Api`] for namespaced objects of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (and so everything in it). Does not wait until
    /// the namespace controller has emptied it.
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        self.cleaned_up = true;
        delete_namespace(&self.client, &self.name).await
    }
}

impl Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.cleaned_up {
            return;
        }
        // The test's runtime may be shutting down (or single-threaded and
        // blocked here), so use a runtime and a client of our own.
        let name = std::mem::take(&mut self.name);
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = try_client().await?;
                tokio::time::timeout(Duration::from_secs(10), delete_namespace(&client, &name))
                    .await
                    .context("timed out")?
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: could not delete a test namespace: {error:#}"),
            Err(_) => eprintln!("warning: deleting a test namespace panicked"),
        }
    }
}

async fn delete_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot delete namespace {name}")),
    }
}

/// Polls `api` for the object `name` until `condition` holds for it, and
/// returns it. Fails after `timeout` with the object's last state (or the
/// last error, or "not found").
pub async fn wait_for<K, F>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    mut condition: F,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    F: FnMut(&K) -> bool,
{
    let deadline = Instant::now() + timeout;
    let last = loop {
        let last = match api.get_opt(name).await {
            Ok(Some(object)) if condition(&object) => return Ok(object),
            Ok(Some(object)) => describe(&object),
            Ok(None) => "it does not exist".to_owned(),
            Err(error) => format!("the last read failed: {error}"),
        };
        if Instant::now() >= deadline {
            break last;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    bail!(
        "timed out after {timeout:?} waiting for {} to satisfy the condition; {last}",
        api_path(api, name),
    )
}

/// Polls until the object `name` no longer exists. Fails after `timeout`
/// with its last state (deletion timestamp, finalizers, owners…).
pub async fn wait_for_deletion<K>(api: &Api<K>, name: &str, timeout: Duration) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match api.get_opt(name).await {
            Ok(None) => return Ok(()),
            Ok(Some(object)) => describe(&object),
            Err(error) => format!("the last read failed: {error}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "timed out after {timeout:?} waiting for {} to be deleted; {last}",
                api_path(api, name),
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls a list until `condition` holds for its items (e.g. "empty", "3
/// ready pods"). Fails after `timeout` with the names of the last items.
pub async fn wait_for_list<K, F>(
    api: &Api<K>,
    params: &kube::api::ListParams,
    timeout: Duration,
    mut condition: F,
) -> anyhow::Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    F: FnMut(&[K]) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match api.list(params).await {
            Ok(list) if condition(&list.items) => return Ok(list.items),
            Ok(list) => format!(
                "last seen: [{}]",
                list.items
                    .iter()
                    .map(|item| item.name_any())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(error) => format!("the last list failed: {error}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "timed out after {timeout:?} waiting for the list {} (labels {:?}, fields {:?}) to satisfy the condition; {last}",
                api.resource_url(),
                params.label_selector,
                params.field_selector,
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn api_path<K: Resource>(api: &Api<K>, name: &str) -> String {
    format!("{}/{name}", api.resource_url())
}

/// The parts of an object that say why a condition does not hold yet.
fn describe<K: Resource + Serialize>(object: &K) -> String {
    let value = serde_json::to_value(object).unwrap_or_default();
    let meta = object.meta();
    let mut summary = serde_json::json!({
        "generation": meta.generation,
        "deletionTimestamp": meta.deletion_timestamp,
        "finalizers": meta.finalizers,
        "status": value.get("status"),
    });
    if let Some(map) = summary.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    format!("last seen: {summary}")
}

/// Conditions for [`wait_for`].
pub mod conditions {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn has_condition<'a>(
        mut conditions: impl Iterator<Item = (&'a str, &'a str)>,
        wanted: &str,
    ) -> bool {
        conditions.any(|(kind, status)| kind == wanted && status == "True")
    }

    /// The Deployment's current generation is rolled out and all of its
    /// `spec.replicas` are updated and available.
    pub fn deployment_available(deployment: &Deployment) -> bool {
        let (Some(spec), Some(status)) = (&deployment.spec, &deployment.status) else {
            return false;
        };
        let wanted = spec.replicas.unwrap_or(1);
        status.observed_generation >= deployment.metadata.generation
            && status.updated_replicas.unwrap_or(0) == wanted
            && status.available_replicas.unwrap_or(0) == wanted
            && status.replicas.unwrap_or(0) == wanted
    }

    /// All of the StatefulSet's `spec.replicas` are ready and available.
    pub fn statefulset_ready(statefulset: &StatefulSet) -> bool {
        let (Some(spec), Some(status)) = (&statefulset.spec, &statefulset.status) else {
            return false;
        };
        let wanted = spec.replicas.unwrap_or(1);
        status.observed_generation >= statefulset.metadata.generation
            && status.ready_replicas.unwrap_or(0) == wanted
            && status.available_replicas.unwrap_or(0) == wanted
    }

    /// The Pod is Running with condition Ready.
    pub fn pod_ready(pod: &Pod) -> bool {
        let Some(status) = &pod.status else {
            return false;
        };
        status.phase.as_deref() == Some("Running")
            && has_condition(
                status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| (c.type_.as_str(), c.status.as_str())),
                "Ready",
            )
    }

    /// The Node has condition Ready.
    pub fn node_ready(node: &Node) -> bool {
        node.status.as_ref().is_some_and(|status| {
            has_condition(
                status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| (c.type_.as_str(), c.status.as_str())),
                "Ready",
            )
        })
    }

    /// The CustomResourceDefinition is Established (its API is served).
    pub fn crd_established(crd: &CustomResourceDefinition) -> bool {
        crd.status.as_ref().is_some_and(|status| {
            has_condition(
                status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| (c.type_.as_str(), c.status.as_str())),
                "Established",
            )
        })
    }

    /// `conditions` (of any custom resource's status) has `wanted` = True.
    pub fn condition_true(conditions: &[Condition], wanted: &str) -> bool {
        has_condition(
            conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str())),
            wanted,
        )
    }
}
