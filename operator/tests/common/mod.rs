//! What the operator tests share: the operator binary run as a process
//! watching one namespace, the CRD, Storefronts in external mode on the
//! local PostgreSQL, Redis and Kafka (`make infra-up`) or with managed
//! stores, and reading back conditions, Secrets, topics and Events.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use storefront_kube_testing::{
    TestNamespace, client, kubeconfig_path, wait_for, wait_for_deletion, wait_for_list,
};
use storefront_operator::Storefront;
use storefront_runtime::testing::{admin_database_url, kafka_bootstrap_servers};

pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The operator binary, watching one namespace, killed (SIGKILL) on drop.
pub struct Operator {
    child: Child,
}

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// [`Operator::start`] with more `run` flags.
    pub fn start_with(namespace: &str, args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_storefront-operator"))
            .args(["--log-format", "text", "--log-level", "info", "run"])
            .args(["--listen", "127.0.0.1:0", "--watch-namespace", namespace])
            .args(args)
            .env("KUBECONFIG", kubeconfig_path())
            // As from a kubeconfig on a developer's machine, whatever the
            // test's environment says.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAMESPACE")
            .env_remove("OPERATOR_POD_LABELS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start storefront-operator");
        Self { child }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn install_crd() {
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client().await);
    api.patch(
        "storefronts.shop.storefront.dev",
        &PatchParams::apply("storefront-operator-tests").force(),
        &Patch::Apply(Storefront::crd()),
    )
    .await
    .expect("apply the CRD");
    wait_for(
        &api,
        "storefronts.shop.storefront.dev",
        Duration::from_secs(30),
        |crd| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await
    .expect("CRD established");
}

/// The local PostgreSQL's host, port, user and password.
pub fn postgres() -> (String, u16, String, String) {
    let url = admin_database_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (auth, rest) = rest.split_once('@').expect("user in DATABASE_ADMIN_URL");
    let (user, password) = auth
        .split_once(':')
        .expect("password in DATABASE_ADMIN_URL");
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    (
        host.to_owned(),
        port.parse().unwrap(),
        user.to_owned(),
        password.to_owned(),
    )
}

/// A Storefront in external mode on the local infrastructure, with its
/// admin Secret.
pub async fn external_storefront(
    ns: &TestNamespace,
    name: &str,
    deletion_policy: &str,
) -> Api<Storefront> {
    external_storefront_on(ns, name, deletion_policy, &kafka_bootstrap_servers()).await
}

/// [`external_storefront`] with the Kafka at `bootstrap`.
pub async fn external_storefront_on(
    ns: &TestNamespace,
    name: &str,
    deletion_policy: &str,
    bootstrap: &str,
) -> Api<Storefront> {
    let (host, port, user, password) = postgres();
    let secrets: Api<Secret> = ns.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "pg-admin" },
                "stringData": { "username": user, "password": password },
            }))
            .unwrap(),
        )
        .await
        .expect("admin secret");
    let api: Api<Storefront> = ns.api();
    let sf: Storefront = serde_json::from_value(json!({
        "apiVersion": "shop.storefront.dev/v1alpha1",
        "kind": "Storefront",
        "metadata": { "name": name },
        "spec": {
            "postgres": { "external": { "host": host, "port": port, "adminSecretName": "pg-admin", "sslMode": "disable" } },
            "redis": { "external": { "url": "redis://127.0.0.1:56379" } },
            "kafka": {
                "external": { "bootstrapServers": bootstrap },
                "topics": { "checkout": { "partitions": 2 }, "order": { "partitions": 1 }, "deletionPolicy": deletion_policy },
            },
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &sf)
        .await
        .expect("create Storefront");
    api
}

pub fn condition(sf: &Storefront, type_: &str) -> Option<(String, String)> {
    sf.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

pub fn has_condition(sf: &Storefront, type_: &str, status: &str) -> bool {
    sf.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == sf.metadata.generation)
        && condition(sf, type_).is_some_and(|(s, _)| s == status)
}

/// The partitions of `topic` on the local broker (None: no such topic).
pub fn partitions(topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap_servers())
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

pub async fn wait_for_partitions(topic: &str, wanted: Option<usize>) {
    for _ in 0..80 {
        let topic = topic.to_owned();
        let have = tokio::task::spawn_blocking(move || partitions(&topic))
            .await
            .unwrap();
        if have == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("topic {topic} never had {wanted:?} partitions");
}

pub async fn secret_value(ns: &TestNamespace, name: &str, key: &str) -> String {
    let secret = ns.api::<Secret>().get(name).await.expect("secret");
    String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
}

/// Drops the databases and roles the operator made for one Storefront.
pub async fn drop_databases(ns: &str, name: &str) {
    let mut admin = PgConnection::connect(&admin_database_url()).await.unwrap();
    for service in [
        "product",
        "cart",
        "inventory",
        "payment",
        "orders",
        "checkout",
    ] {
        let db = storefront_operator::names::database(ns, name, service);
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS \"{db}\""),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

/// Deletes the Kafka topics (and their dead-letter topics) of the
/// Storefront `shop` in namespace `ns`, which policy `Retain` leaves.
pub async fn delete_shop_topics(ns: &str) {
    let admin = storefront_runtime::kafka::admin(&kafka_bootstrap_servers()).unwrap();
    let topics: Vec<String> = ["checkout-events", "order-events"]
        .iter()
        .flat_map(|events| {
            let topic = format!("{ns}.shop.{events}");
            [format!("{topic}.dlq"), topic]
        })
        .collect();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    admin
        .delete_topics(&refs, &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap();
}

pub async fn patch_spec(api: &Api<Storefront>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .expect("patch Storefront");
}

/// Deletes the Storefront `shop`; returns once it and its Deployments are gone.
pub async fn delete_shop(api: &Api<Storefront>, ns: &TestNamespace) {
    api.delete("shop", &DeleteParams::default()).await.unwrap();
    wait_for_deletion(api, "shop", READY_TIMEOUT).await.unwrap();
    wait_for_list(
        &ns.api::<Deployment>(),
        &ListParams::default(),
        READY_TIMEOUT,
        |items| items.is_empty(),
    )
    .await
    .unwrap();
}

/// A Storefront with PostgreSQL, Redis and Kafka managed, and `spec` merged in.
pub fn managed_storefront(name: &str, spec: serde_json::Value) -> Storefront {
    let mut body = json!({
        "apiVersion": "shop.storefront.dev/v1alpha1",
        "kind": "Storefront",
        "metadata": { "name": name },
        "spec": { "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} } },
    });
    json_patch::merge(&mut body["spec"], &spec);
    serde_json::from_value(body).unwrap()
}

/// The reasons of the Events about `storefront`, with their notes.
pub async fn events(ns: &TestNamespace, storefront: &str) -> Vec<(String, String)> {
    ns.api::<k8s_openapi::api::events::v1::Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(storefront))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}
