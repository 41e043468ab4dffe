//! One reconcile called directly, against the local control plane and the
//! local PostgreSQL and Kafka, with a Storefront older than the status the
//! operator last wrote — as the controller's watch cache hands it when a
//! reconcile starts before the watch has brought back the previous one's
//! status write.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use storefront_kube_testing::{TestNamespace, client};
use storefront_operator::controller::{Context, Settings, reconcile, set_condition};
use storefront_operator::{Storefront, StorefrontStatus};

async fn fetch(api: &Api<Storefront>) -> Storefront {
    api.get("shop").await.expect("get the Storefront")
}

/// In CI the real-node test once waited five minutes for a shop whose
/// topics had been made: the pass that made them wrote `TopicsReady=True`,
/// the next one was handed the Storefront as it was before that write
/// (topics unreachable, databases not yet made), skipped the topics as done
/// and copied that old condition into the status it wrote — where it stayed
/// until the next resync.
#[tokio::test]
async fn a_reconcile_handed_an_older_status_does_not_write_it_back() {
    install_crd().await;
    let ns = TestNamespace::new("operator-stale-status").await.unwrap();
    let api = external_storefront(&ns, "shop", "Retain").await;
    let ctx = Arc::new(Context::new(client().await, None, Settings::default()));

    let created = fetch(&api).await;
    reconcile(Arc::new(created.clone()), ctx.clone())
        .await
        .expect("first reconcile");
    let first = fetch(&api).await;
    let checkout_topic = format!("{}.shop.checkout-events", ns.name());
    let order_topic = format!("{}.shop.order-events", ns.name());
    assert_eq!(
        condition(&first, "TopicsReady"),
        Some(("True".to_owned(), "Created".to_owned())),
        "{:?}",
        first.status
    );
    assert_eq!(
        condition(&first, "DatabasesReady"),
        Some(("True".to_owned(), "Provisioned".to_owned()))
    );
    assert_eq!(first.status.as_ref().unwrap().topics[&checkout_topic], 2);

    // The same Storefront with the status an earlier pass would have left:
    // the broker's name not resolving yet, no databases condition.
    let mut stale = created;
    let mut old = StorefrontStatus::default();
    set_condition(
        &mut old.conditions,
        "TopicsReady",
        false,
        "KafkaUnreachable",
        "Kafka is unreachable: failed to lookup address information",
        stale.metadata.generation,
        Timestamp::now(),
    );
    stale.status = Some(old);
    reconcile(Arc::new(stale), ctx.clone())
        .await
        .expect("reconcile with the older status");

    let after = fetch(&api).await;
    let status = after.status.as_ref().unwrap();
    assert_eq!(
        condition(&after, "TopicsReady"),
        Some(("True".to_owned(), "Created".to_owned())),
        "{status:?}"
    );
    assert_eq!(
        condition(&after, "DatabasesReady"),
        Some(("True".to_owned(), "Provisioned".to_owned()))
    );
    assert_eq!(status.topics[&checkout_topic], 2, "{status:?}");
    assert_eq!(status.topics[&order_topic], 1, "{status:?}");

    delete_shop_topics(ns.name()).await;
    drop_databases(ns.name(), "shop").await;
    ns.cleanup().await.unwrap();
}
