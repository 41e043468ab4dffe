//! The operator against the local control plane (`make cluster-up`) and the
//! real PostgreSQL and Kafka (`make infra-up`): each test runs the
//! `storefront-operator` binary as a process watching a namespace of its
//! own, applies Storefronts in external mode pointed at the local
//! PostgreSQL, Redis and Kafka (kwok's pods run nothing, so only external
//! mode can become Ready here), and checks the cluster, the databases and
//! the broker.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use storefront_kube_testing::{
    TestNamespace, client, kubeconfig_path, wait_for, wait_for_deletion, wait_for_list,
};
use storefront_operator::Storefront;
use storefront_runtime::testing::{admin_database_url, kafka_bootstrap_servers};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Stopping the shared Kafka (the outage test) must not overlap the tests
/// that need it up.
static KAFKA: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The operator binary, watching one namespace, killed (SIGKILL) on drop.
struct Operator {
    child: Child,
}

impl Operator {
    fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// [`Operator::start`] with more `run` flags.
    fn start_with(namespace: &str, args: &[&str]) -> Self {
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

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn install_crd() {
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
fn postgres() -> (String, u16, String, String) {
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
async fn external_storefront(
    ns: &TestNamespace,
    name: &str,
    deletion_policy: &str,
) -> Api<Storefront> {
    external_storefront_on(ns, name, deletion_policy, &kafka_bootstrap_servers()).await
}

/// [`external_storefront`] with the Kafka at `bootstrap`.
async fn external_storefront_on(
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

fn condition(sf: &Storefront, type_: &str) -> Option<(String, String)> {
    sf.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn has_condition(sf: &Storefront, type_: &str, status: &str) -> bool {
    sf.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == sf.metadata.generation)
        && condition(sf, type_).is_some_and(|(s, _)| s == status)
}

/// The partitions of `topic` on the local broker (None: no such topic).
fn partitions(topic: &str) -> Option<usize> {
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

async fn wait_for_partitions(topic: &str, wanted: Option<usize>) {
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

async fn secret_value(ns: &TestNamespace, name: &str, key: &str) -> String {
    let secret = ns.api::<Secret>().get(name).await.expect("secret");
    String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
}

/// Drops the databases and roles the operator made for one Storefront.
async fn drop_databases(ns: &str, name: &str) {
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

async fn patch_spec(api: &Api<Storefront>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .expect("patch Storefront");
}

#[tokio::test]
async fn an_external_storefront_becomes_ready_and_follows_its_spec() {
    let _kafka = KAFKA.read().await;
    install_crd().await;
    let ns = TestNamespace::new("operator-ready").await.unwrap();
    let _operator = Operator::start(ns.name());
    let api = external_storefront(&ns, "shop", "Delete").await;

    let sf = wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "Ready", "True")
    })
    .await
    .unwrap();
    let status = sf.status.clone().unwrap();
    for type_ in ["DatabasesReady", "TopicsReady", "ServicesAvailable"] {
        assert_eq!(condition(&sf, type_).unwrap().0, "True", "{type_}");
    }
    assert_eq!(condition(&sf, "Degraded").unwrap().0, "False");
    assert_eq!(status.services.len(), 7);
    assert!(status.services.values().all(|s| s.available_replicas == 1));
    assert_eq!(
        status.gateway_address.as_deref(),
        Some(format!("shop-gateway.{}.svc:8080", ns.name()).as_str())
    );

    // Every Deployment available (kwok), owned by the Storefront.
    let deployments = ns
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(deployments.len(), 7);
    for d in &deployments {
        assert_eq!(d.owner_references()[0].uid, sf.uid().unwrap());
        assert!(
            d.status.as_ref().and_then(|s| s.available_replicas) == Some(1),
            "{}",
            d.name_any()
        );
    }

    // Each service's role logs in to its own database, and to no other.
    let cart_url = secret_value(&ns, "shop-cart-db", "url").await;
    let mut own = PgConnection::connect(&cart_url)
        .await
        .expect("cart logs in to its database");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut own)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let inventory_db = storefront_operator::names::database(ns.name(), "shop", "inventory");
    let cart_db = storefront_operator::names::database(ns.name(), "shop", "cart");
    let other = PgConnection::connect(
        &cart_url.replace(&format!("/{cart_db}?"), &format!("/{inventory_db}?")),
    )
    .await;
    let error = other
        .expect_err("cart's role must not reach the inventory database")
        .to_string();
    assert!(error.contains("permission denied"), "{error}");

    // Topics with the requested partitions.
    let checkout_topic = format!("{}.shop.checkout-events", ns.name());
    let order_topic = format!("{}.shop.order-events", ns.name());
    wait_for_partitions(&checkout_topic, Some(2)).await;
    wait_for_partitions(&format!("{checkout_topic}.dlq"), Some(1)).await;
    wait_for_partitions(&order_topic, Some(1)).await;
    wait_for_partitions(&format!("{order_topic}.dlq"), Some(1)).await;

    // The generated credentials survive a reconcile untouched.
    let password = secret_value(&ns, "shop-cart-db", "password").await;

    // More replicas and partitions → applied.
    patch_spec(
        &api,
        "shop",
        json!({
            "services": { "cart": { "replicas": 3 } },
            "kafka": { "topics": { "checkout": { "partitions": 4 } } },
        }),
    )
    .await;
    wait_for(&ns.api::<Deployment>(), "shop-cart", READY_TIMEOUT, |d| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(3)
            && d.status.as_ref().and_then(|s| s.available_replicas) == Some(3)
    })
    .await
    .unwrap();
    wait_for_partitions(&checkout_topic, Some(4)).await;
    let sf = wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "Ready", "True")
            && sf.status.as_ref().unwrap().services["cart"].available_replicas == 3
    })
    .await
    .unwrap();
    assert_eq!(sf.status.unwrap().topics[&checkout_topic], 4);
    assert_eq!(
        secret_value(&ns, "shop-cart-db", "password").await,
        password
    );

    // Fewer partitions → reported, not applied.
    patch_spec(
        &api,
        "shop",
        json!({ "kafka": { "topics": { "checkout": { "partitions": 2 } } } }),
    )
    .await;
    let sf = wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "TopicsReady", "False")
    })
    .await
    .unwrap();
    assert_eq!(
        condition(&sf, "TopicsReady").unwrap().1,
        "PartitionDecreaseRefused"
    );
    assert_eq!(condition(&sf, "Degraded").unwrap().0, "True");
    wait_for_partitions(&checkout_topic, Some(4)).await;

    // Delete under policy Delete: children collected, topics removed.
    delete_shop(&api, &ns).await;
    wait_for_list(
        &ns.api::<Secret>(),
        &ListParams::default().labels("app.kubernetes.io/instance=shop"),
        READY_TIMEOUT,
        |items| items.is_empty(),
    )
    .await
    .unwrap();
    wait_for_partitions(&checkout_topic, None).await;
    wait_for_partitions(&order_topic, None).await;
    wait_for_partitions(&format!("{order_topic}.dlq"), None).await;

    drop_databases(ns.name(), "shop").await;
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn the_api_server_refuses_invalid_specs_with_the_rules_message() {
    install_crd().await;
    let ns = TestNamespace::new("operator-invalid").await.unwrap();
    let api: Api<Storefront> = ns.api();
    let cases = [
        (
            json!({
                "postgres": { "managed": {}, "external": { "host": "db", "adminSecretName": "a" } },
                "redis": { "managed": {} }, "kafka": { "managed": {} },
            }),
            "postgres needs exactly one of managed and external",
        ),
        (
            json!({
                "postgres": { "managed": {} }, "redis": {}, "kafka": { "managed": {} },
            }),
            "redis needs exactly one of managed and external",
        ),
        (
            json!({
                "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} },
                "services": { "cart": { "autoscaling": { "minReplicas": 4, "maxReplicas": 2 } } },
            }),
            "autoscaling.maxReplicas must be at least autoscaling.minReplicas",
        ),
        (
            json!({
                "postgres": { "managed": {} }, "redis": { "managed": {} },
                "kafka": { "managed": {}, "topics": { "checkout": { "replicationFactor": 3 } } },
            }),
            "a managed Kafka has one broker",
        ),
        (
            json!({
                "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} },
                "services": { "gateway": { "replicas": -1 } },
            }),
            "spec.services.gateway.replicas",
        ),
        (
            json!({
                "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} },
                "gateway": { "trustedProxies": ["10.0.0.0/8", "ingress-nginx"] },
            }),
            "gateway.trustedProxies holds IP addresses and CIDRs",
        ),
    ];
    for (i, (spec, message)) in cases.into_iter().enumerate() {
        let sf: Storefront = serde_json::from_value(json!({
            "apiVersion": "shop.storefront.dev/v1alpha1",
            "kind": "Storefront",
            "metadata": { "name": format!("bad-{i}") },
            "spec": spec,
        }))
        .unwrap();
        let error = api
            .create(&PostParams::default(), &sf)
            .await
            .expect_err(message)
            .to_string();
        assert!(error.contains(message), "expected {message:?} in: {error}");
    }
    ns.cleanup().await.unwrap();
}

/// Deletes the Storefront `shop`; returns once it and its Deployments are gone.
async fn delete_shop(api: &Api<Storefront>, ns: &TestNamespace) {
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

/// Counts this Storefront's children per kind.
async fn child_counts(ns: &TestNamespace) -> (usize, usize, usize, usize, usize) {
    async fn count<K>(ns: &TestNamespace) -> usize
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let selector = ListParams::default().labels("app.kubernetes.io/instance=shop");
        ns.api::<K>().list(&selector).await.unwrap().items.len()
    }
    (
        count::<Deployment>(ns).await,
        count::<Service>(ns).await,
        count::<PodDisruptionBudget>(ns).await,
        count::<ConfigMap>(ns).await,
        count::<Secret>(ns).await,
    )
}

#[tokio::test]
async fn a_killed_operator_restarts_and_converges_without_duplicates_and_retain_keeps_topics() {
    let _kafka = KAFKA.read().await;
    install_crd().await;
    let ns = TestNamespace::new("operator-restart").await.unwrap();
    let mut operator = Operator::start(ns.name());
    let api = external_storefront(&ns, "shop", "Retain").await;
    // Kill it as soon as it has started writing children.
    wait_for_list(
        &ns.api::<Secret>(),
        &ListParams::default().labels("app.kubernetes.io/instance=shop"),
        READY_TIMEOUT,
        |items| !items.is_empty(),
    )
    .await
    .unwrap();
    operator.kill();
    let cart_password_before = match ns.api::<Secret>().get_opt("shop-cart-db").await.unwrap() {
        Some(secret) => {
            Some(String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap())
        }
        None => None,
    };
    let _operator = Operator::start(ns.name());
    wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "Ready", "True")
    })
    .await
    .unwrap();
    // 7 Deployments, 7 Services, 7 PDBs, one ConfigMap, 6 database Secrets
    // and the JWT Secret: nothing twice, nothing left over.
    assert_eq!(child_counts(&ns).await, (7, 7, 7, 1, 7));
    if let Some(before) = cart_password_before {
        assert_eq!(
            secret_value(&ns, "shop-cart-db", "password").await,
            before,
            "the password was kept"
        );
    }

    // Paused: a hand edit stays, nothing is applied.
    patch_spec(&api, "shop", json!({ "paused": true })).await;
    wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        condition(sf, "Ready").is_some_and(|(_, r)| r == "Paused")
    })
    .await
    .unwrap();
    patch_spec(
        &api,
        "shop",
        json!({ "services": { "orders": { "replicas": 2 } } }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let orders = ns.api::<Deployment>().get("shop-orders").await.unwrap();
    assert_eq!(
        orders.spec.unwrap().replicas,
        Some(1),
        "paused: not applied"
    );
    patch_spec(&api, "shop", json!({ "paused": false })).await;
    wait_for(&ns.api::<Deployment>(), "shop-orders", READY_TIMEOUT, |d| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(2)
    })
    .await
    .unwrap();

    // Retain: the topics outlive the Storefront.
    let checkout_topic = format!("{}.shop.checkout-events", ns.name());
    delete_shop(&api, &ns).await;
    wait_for_partitions(&checkout_topic, Some(2)).await;

    let admin = storefront_runtime::kafka::admin(&kafka_bootstrap_servers()).unwrap();
    let topics = [
        checkout_topic.clone(),
        format!("{checkout_topic}.dlq"),
        format!("{}.shop.order-events", ns.name()),
        format!("{}.shop.order-events.dlq", ns.name()),
    ];
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    admin
        .delete_topics(&refs, &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap();
    drop_databases(ns.name(), "shop").await;
    ns.cleanup().await.unwrap();
}

fn hack(script: &str) {
    let status = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/").to_owned() + script)
        .stdout(Stdio::null())
        .status()
        .expect(script);
    assert!(status.success(), "{script} failed");
}

#[tokio::test]
async fn a_broker_outage_is_a_condition_and_recovers_when_it_returns() {
    let _kafka = KAFKA.write().await;
    install_crd().await;
    let ns = TestNamespace::new("operator-outage").await.unwrap();
    let _operator = Operator::start(ns.name());
    let api = external_storefront(&ns, "shop", "Delete").await;
    wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "Ready", "True")
    })
    .await
    .unwrap();

    hack("kafka-stop.sh");
    // A spec change makes the operator look at the broker now.
    patch_spec(
        &api,
        "shop",
        json!({ "kafka": { "topics": { "order": { "partitions": 2 } } } }),
    )
    .await;
    let outage = wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "TopicsReady", "False")
    })
    .await;
    hack("kafka-start.sh");
    let sf = outage.unwrap();
    assert_eq!(condition(&sf, "TopicsReady").unwrap().1, "KafkaUnreachable");
    assert_eq!(condition(&sf, "Ready").unwrap().0, "False");
    assert_eq!(
        condition(&sf, "Degraded").unwrap(),
        ("True".to_owned(), "KafkaUnreachable".to_owned())
    );
    // The other parts stay as they were.
    assert_eq!(condition(&sf, "DatabasesReady").unwrap().0, "True");

    wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "Ready", "True")
    })
    .await
    .unwrap();
    wait_for_partitions(&format!("{}.shop.order-events", ns.name()), Some(2)).await;

    api.delete("shop", &DeleteParams::default()).await.unwrap();
    wait_for_deletion(&api, "shop", READY_TIMEOUT)
        .await
        .unwrap();
    drop_databases(ns.name(), "shop").await;
    ns.cleanup().await.unwrap();
}

/// A Storefront with PostgreSQL, Redis and Kafka managed, and `spec` merged in.
fn managed_storefront(name: &str, spec: serde_json::Value) -> Storefront {
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
async fn events(ns: &TestNamespace, storefront: &str) -> Vec<(String, String)> {
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

#[tokio::test]
async fn a_managed_storefront_run_from_outside_the_cluster_says_its_stores_need_an_in_cluster_operator()
 {
    install_crd().await;
    let ns = TestNamespace::new("operator-managed").await.unwrap();
    // As the chart would tell it where its pods are (here it runs from a
    // kubeconfig, so it also knows it is outside the cluster).
    let operator = Operator::start_with(
        ns.name(),
        &[
            "--operator-namespace",
            "storefront-system",
            "--operator-pod-labels",
            "app.kubernetes.io/name=storefront-operator,app.kubernetes.io/instance=ops",
        ],
    );
    let api: Api<Storefront> = ns.api();
    api.create(
        &PostParams::default(),
        &managed_storefront("shop", json!({})),
    )
    .await
    .unwrap();
    // kwok runs no container: the services are available and the stores'
    // StatefulSets exist; the databases and the broker are out of this
    // operator's reach, and it says why.
    let sf = wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "ServicesAvailable", "True")
            && has_condition(sf, "DatabasesReady", "False")
            && has_condition(sf, "TopicsReady", "False")
    })
    .await
    .unwrap();
    for type_ in ["DatabasesReady", "TopicsReady", "Degraded"] {
        assert_eq!(
            condition(&sf, type_).unwrap().1,
            "OperatorOutsideCluster",
            "{type_}"
        );
    }
    let message = &sf.status.as_ref().unwrap().conditions;
    let databases = message
        .iter()
        .find(|c| c.type_ == "DatabasesReady")
        .unwrap();
    assert!(
        databases.message.contains("run it in the cluster"),
        "{}",
        databases.message
    );
    assert_eq!(condition(&sf, "Ready").unwrap().0, "False");
    let reasons = events(&ns, "shop").await;
    assert!(
        reasons.iter().any(|(r, _)| r == "OperatorOutsideCluster"),
        "{reasons:?}"
    );
    for store in ["postgres", "redis", "kafka"] {
        ns.api::<StatefulSet>()
            .get(&format!("shop-{store}"))
            .await
            .unwrap();
    }
    let admin = secret_value(&ns, "shop-postgres-admin", "password").await;
    assert_eq!(admin.len(), 32);
    // The stores let in the operator's pods (its namespace and labels, as
    // given), which the API server takes as a valid policy.
    let policy = ns
        .api::<k8s_openapi::api::networking::v1::NetworkPolicy>()
        .get("shop-stores")
        .await
        .unwrap();
    let rules = policy.spec.unwrap().ingress.unwrap();
    let operator_peer = rules[1].from.as_ref().unwrap()[0].clone();
    assert_eq!(
        operator_peer
            .namespace_selector
            .unwrap()
            .match_labels
            .unwrap()["kubernetes.io/metadata.name"],
        "storefront-system"
    );
    assert_eq!(
        operator_peer.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
        "ops"
    );
    // With the default topic policy it carries no finalizer: deleting it
    // never waits for the operator.
    let sf = api.get("shop").await.unwrap();
    assert!(sf.finalizers().is_empty(), "{:?}", sf.finalizers());
    drop(operator);
    api.delete("shop", &DeleteParams::default()).await.unwrap();
    wait_for_deletion(&api, "shop", READY_TIMEOUT)
        .await
        .unwrap();
    ns.cleanup().await.unwrap();
}

/// How long a Storefront whose broker is gone may take to be deleted.
const DELETION_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn deleting_a_managed_kafka_storefront_never_waits_for_its_broker() {
    install_crd().await;
    let ns = TestNamespace::new("operator-managed-delete").await.unwrap();
    let _operator = Operator::start(ns.name());
    let api: Api<Storefront> = ns.api();
    // Topics to be deleted with it, on a broker that never comes up (kwok
    // runs nothing): they are on the broker's volume, which goes with it.
    let delete_topics = json!({ "kafka": { "topics": { "deletionPolicy": "Delete" } } });
    api.create(
        &PostParams::default(),
        &managed_storefront("shop", delete_topics.clone()),
    )
    .await
    .unwrap();
    let sf = wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "TopicsReady", "False")
    })
    .await
    .unwrap();
    assert!(sf.finalizers().is_empty(), "{:?}", sf.finalizers());
    api.delete("shop", &DeleteParams::default()).await.unwrap();
    wait_for_deletion(&api, "shop", DELETION_TIMEOUT)
        .await
        .unwrap();

    // One that carries the finalizer already (an older operator put it
    // there) goes as quickly.
    let mut legacy = managed_storefront("legacy", delete_topics);
    legacy.metadata.finalizers = Some(vec![storefront_operator::controller::FINALIZER.to_owned()]);
    api.create(&PostParams::default(), &legacy).await.unwrap();
    wait_for(&api, "legacy", READY_TIMEOUT, |sf| sf.status.is_some())
        .await
        .unwrap();
    api.delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_deletion(&api, "legacy", DELETION_TIMEOUT)
        .await
        .unwrap();
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_external_kafka_delays_deletion_only_until_the_cleanup_timeout() {
    install_crd().await;
    let ns = TestNamespace::new("operator-gone-broker").await.unwrap();
    let _operator = Operator::start_with(ns.name(), &["--cleanup-timeout", "5s"]);
    // Nothing listens on the discard port.
    let api = external_storefront_on(&ns, "shop", "Delete", "127.0.0.1:9").await;
    let sf = wait_for(&api, "shop", READY_TIMEOUT, |sf| {
        has_condition(sf, "TopicsReady", "False")
    })
    .await
    .unwrap();
    assert_eq!(condition(&sf, "TopicsReady").unwrap().1, "KafkaUnreachable");
    assert_eq!(
        sf.finalizers(),
        [storefront_operator::controller::FINALIZER]
    );
    api.delete("shop", &DeleteParams::default()).await.unwrap();
    // A few attempts, then the Storefront goes with a Warning naming the
    // topics left behind.
    wait_for_deletion(&api, "shop", Duration::from_secs(60))
        .await
        .unwrap();
    let reasons = events(&ns, "shop").await;
    let left = reasons
        .iter()
        .find(|(r, _)| r == "TopicsLeft")
        .unwrap_or_else(|| panic!("no TopicsLeft Event: {reasons:?}"));
    assert!(
        left.1
            .contains(&format!("{}.shop.checkout-events", ns.name())),
        "{}",
        left.1
    );
    assert!(
        reasons.iter().any(|(r, _)| r == "TopicDeletionFailed"),
        "{reasons:?}"
    );
    drop_databases(ns.name(), "shop").await;
    ns.cleanup().await.unwrap();
}

/// The claims of one Storefront's managed stores, by name, with their uids.
async fn claims(ns: &TestNamespace) -> BTreeMap<String, String> {
    ns.api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| (c.name_any(), c.uid().unwrap_or_default()))
        .collect()
}

const CLAIMS: [&str; 3] = [
    "data-shop-postgres-0",
    "data-shop-redis-0",
    "data-shop-kafka-0",
];

async fn wait_for_claims(ns: &TestNamespace) -> BTreeMap<String, String> {
    let api = ns.api::<PersistentVolumeClaim>();
    for claim in CLAIMS {
        wait_for(&api, claim, READY_TIMEOUT, |_| true)
            .await
            .unwrap();
    }
    claims(ns).await
}

#[tokio::test]
async fn a_managed_storefront_s_volumes_and_admin_secret_go_with_it_unless_retained() {
    install_crd().await;
    let ns = TestNamespace::new("operator-volumes").await.unwrap();
    let _operator = Operator::start(ns.name());
    let api: Api<Storefront> = ns.api();
    let secrets = ns.api::<Secret>();

    // By default the volumes, and the admin credentials they were made
    // with, go with the Storefront.
    api.create(
        &PostParams::default(),
        &managed_storefront("shop", json!({})),
    )
    .await
    .unwrap();
    let first = wait_for_claims(&ns).await;
    let first_password = secret_value(&ns, "shop-postgres-admin", "password").await;
    delete_shop(&api, &ns).await;
    wait_for_list(
        &ns.api::<PersistentVolumeClaim>(),
        &ListParams::default(),
        READY_TIMEOUT,
        |items| items.is_empty(),
    )
    .await
    .unwrap();
    wait_for_deletion(&secrets, "shop-postgres-admin", READY_TIMEOUT)
        .await
        .unwrap();

    // Made again in the same namespace: new volumes, new credentials.
    let retain = json!({ "postgres": { "managed": { "deletionPolicy": "Retain" } } });
    api.create(
        &PostParams::default(),
        &managed_storefront("shop", retain.clone()),
    )
    .await
    .unwrap();
    let second = wait_for_claims(&ns).await;
    for claim in CLAIMS {
        assert_ne!(first[claim], second[claim], "{claim} is a new volume");
    }
    let second_password = secret_value(&ns, "shop-postgres-admin", "password").await;
    assert_ne!(first_password, second_password);
    // Retained, the admin Secret belongs to no one, so it stays with the
    // PostgreSQL volume.
    let admin = wait_for(&secrets, "shop-postgres-admin", READY_TIMEOUT, |s| {
        s.owner_references().is_empty()
    })
    .await
    .unwrap();
    assert!(admin.owner_references().is_empty());
    delete_shop(&api, &ns).await;
    // The Redis and Kafka volumes (policy Delete) go; PostgreSQL's and its
    // admin Secret stay.
    wait_for_list(
        &ns.api::<PersistentVolumeClaim>(),
        &ListParams::default(),
        READY_TIMEOUT,
        |items| items.len() == 1,
    )
    .await
    .unwrap();
    let kept = claims(&ns).await;
    assert_eq!(
        kept.get("data-shop-postgres-0"),
        second.get("data-shop-postgres-0")
    );
    assert_eq!(
        secret_value(&ns, "shop-postgres-admin", "password").await,
        second_password
    );

    // A Storefront of the same name takes both up again: the server on
    // that volume still knows this password.
    api.create(&PostParams::default(), &managed_storefront("shop", retain))
        .await
        .unwrap();
    let third = wait_for_claims(&ns).await;
    assert_eq!(
        third["data-shop-postgres-0"],
        second["data-shop-postgres-0"]
    );
    wait_for(
        &ns.api::<StatefulSet>(),
        "shop-postgres",
        READY_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    assert_eq!(
        secret_value(&ns, "shop-postgres-admin", "password").await,
        second_password
    );
    ns.cleanup().await.unwrap();
}
