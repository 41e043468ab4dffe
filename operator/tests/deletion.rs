//! Deleting a Storefront, against the local control plane (`make
//! cluster-up`) and the local PostgreSQL (`make infra-up`), with the
//! operator binary running as a process: it always ends (a managed broker
//! that never ran, an external one that stays unreachable), and the managed
//! stores' volumes and the PostgreSQL admin Secret go with it, or stay and
//! are taken up again, as their `deletionPolicy` says.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use storefront_kube_testing::{TestNamespace, wait_for, wait_for_deletion, wait_for_list};
use storefront_operator::Storefront;

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
