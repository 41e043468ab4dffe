//! The operator against the local control plane (`make cluster-up`) and the
//! real PostgreSQL and Kafka (`make infra-up`): each test runs the
//! `storefront-operator` binary as a process watching a namespace of its
//! own, applies Storefronts in external mode pointed at the local
//! PostgreSQL, Redis and Kafka (kwok's pods run nothing, so only external
//! mode can become Ready here), and checks the cluster, the databases and
//! the broker.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use storefront_kube_testing::{TestNamespace, wait_for, wait_for_deletion, wait_for_list};
use storefront_operator::Storefront;

/// Stopping the shared Kafka (the outage test) must not overlap the tests
/// that need it up.
static KAFKA: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

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
    assert_eq!(status.services.len(), 8, "{:?}", status.services);
    assert!(status.services.values().all(|s| s.available_replicas == 1));
    assert_eq!(
        status.gateway_address.as_deref(),
        Some(format!("shop-gateway.{}.svc:8080", ns.name()).as_str())
    );
    assert_eq!(
        status.web_address.as_deref(),
        Some(format!("shop-web.{}.svc:8081", ns.name()).as_str())
    );

    // Every Deployment available (kwok), owned by the Storefront.
    let deployments = ns
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(deployments.len(), 8);
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
    let session_key = secret_value(&ns, "shop-web-session", "key").await;
    assert_eq!(session_key.len(), 64);

    // More replicas and partitions, OIDC sign-in → applied.
    let client_secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "oidc-client" },
        "stringData": { "secret": "s3cret" },
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &client_secret)
        .await
        .unwrap();
    patch_spec(
        &api,
        "shop",
        json!({
            "services": { "cart": { "replicas": 3 } },
            "kafka": { "topics": { "checkout": { "partitions": 4 } } },
            "web": { "publicUrl": "https://shop.example.com", "signIn": { "oidc": {
                "issuer": "https://id.example.com", "clientId": "storefront",
                "clientSecretRef": { "name": "oidc-client", "key": "secret" },
            } } },
        }),
    )
    .await;
    let env = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap_or_default()
    };
    let web = wait_for(&ns.api::<Deployment>(), "shop-web", READY_TIMEOUT, |d| {
        env(d).iter().any(|e| e.name == "WEB_OIDC_CLIENT_SECRET")
    })
    .await
    .unwrap();
    let reference = env(&web)
        .into_iter()
        .find(|e| e.name == "WEB_OIDC_CLIENT_SECRET")
        .and_then(|e| e.value_from?.secret_key_ref)
        .unwrap();
    assert_eq!(
        (reference.name.as_str(), reference.key.as_str()),
        ("oidc-client", "secret")
    );
    let gateway = ns.api::<Deployment>().get("shop-gateway").await.unwrap();
    let audience = env(&gateway)
        .into_iter()
        .find(|e| e.name == "OIDC_AUDIENCE")
        .and_then(|e| e.value);
    assert_eq!(audience.as_deref(), Some("storefront"));
    let config = ns.api::<ConfigMap>().get("shop-config").await.unwrap();
    let config = config.data.unwrap();
    assert_eq!(config["WEB_OIDC_ISSUER"], "https://id.example.com");
    assert_eq!(config["WEB_PUBLIC_URL"], "https://shop.example.com");
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
    assert_eq!(
        secret_value(&ns, "shop-web-session", "key").await,
        session_key
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
        (
            json!({
                "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} },
                "web": { "signIn": { "oidc": { "issuer": "https://id.example", "clientId": "shop" } } },
            }),
            "web.publicUrl is required with web.signIn.oidc",
        ),
        (
            json!({
                "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} },
                "web": { "publicUrl": "https://shop.example", "signIn": { "oidc": {
                    "issuer": "https://id.example", "clientId": "shop", "scopes": ["email"],
                } } },
            }),
            "web.signIn.oidc.scopes must include openid",
        ),
        (
            json!({
                "postgres": { "managed": {} }, "redis": { "managed": {} }, "kafka": { "managed": {} },
                "web": { "publicUrl": "shop.example" },
            }),
            "spec.web.publicUrl",
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
    // 8 Deployments, 8 Services, 8 PDBs, one ConfigMap, 6 database Secrets,
    // the JWT Secret and the web's session key: nothing twice, nothing left
    // over.
    assert_eq!(child_counts(&ns).await, (8, 8, 8, 1, 8));
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

    delete_shop_topics(ns.name()).await;
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
