//! The status: conditions (their transition times moving only on a flip),
//! per-service replicas from the Deployments, topics, and writing it only
//! when it changed.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::children::{self, FIELD_MANAGER};
use crate::crd::{Storefront, StorefrontStatus};
use crate::names::{self, SERVICES};
use crate::topics;

use super::{Context, Error, Settings, Step, namespace, publish};

/// A condition as the operator writes it.
pub(super) struct Outcome {
    pub(super) ok: bool,
    pub(super) reason: String,
    pub(super) message: String,
}

impl Outcome {
    pub(super) fn ok(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
    pub(super) fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// The reason a managed store's failure is given when the operator runs
/// outside the cluster.
pub const OPERATOR_OUTSIDE_CLUSTER: &str = "OperatorOutsideCluster";

/// A managed store the operator cannot reach while it runs outside the
/// cluster (from a kubeconfig) is out of its reach for good: the store is
/// addressed by its in-cluster name (`<name>-<store>.<namespace>.svc`),
/// which neither resolves nor routes from there. Said so, with what to do,
/// instead of a plain "unreachable" that waiting would fix.
pub(super) fn outside_cluster(
    settings: &Settings,
    store: &str,
    managed: bool,
    unreachable: &str,
    outcome: Outcome,
) -> Outcome {
    if outcome.ok || !managed || settings.in_cluster || outcome.reason != unreachable {
        return outcome;
    }
    Outcome::failed(
        OPERATOR_OUTSIDE_CLUSTER,
        format!(
            "the managed {store} is reached by its in-cluster address, and this operator runs \
             outside the cluster (from a kubeconfig): run it in the cluster \
             (charts/storefront-operator), or use an external {store} it can reach ({})",
            outcome.message
        ),
    )
}

/// Sets condition `type_` in `conditions`; its `lastTransitionTime` moves
/// only when its status flips. Returns whether it flipped (or is new).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let flipped = existing.status != status;
            if flipped {
                existing.last_transition_time = Time(now);
            }
            existing.status = status.to_owned();
            reason.clone_into(&mut existing.reason);
            message.clone_into(&mut existing.message);
            existing.observed_generation = generation;
            flipped
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// Per-service replicas from the Deployments, and whether all are available.
pub(super) async fn services_status(
    sf: &Storefront,
    ctx: &Context,
) -> Result<(BTreeMap<String, crate::crd::ServiceStatus>, Outcome), Error> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace(sf));
    let list = api
        .list(&ListParams::default().labels(&children::instance_selector(&sf.name_any())))
        .await?;
    let mut by_name: BTreeMap<String, Deployment> =
        list.items.into_iter().map(|d| (d.name_any(), d)).collect();
    let mut status = BTreeMap::new();
    let mut waiting = vec![];
    let mut by_name_missing = vec![];
    for service in SERVICES {
        let deployment = by_name.remove(&names::child(&sf.name_any(), service.name));
        if deployment.is_none() {
            by_name_missing.push(service.name);
        }
        let wanted = deployment
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let observed = deployment.as_ref().and_then(|d| d.status.as_ref());
        let current = deployment.as_ref().is_some_and(|d| {
            d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
        });
        let available = observed.and_then(|s| s.available_replicas).unwrap_or(0);
        let updated = observed.and_then(|s| s.updated_replicas).unwrap_or(0);
        let total = observed.and_then(|s| s.replicas).unwrap_or(0);
        if !current || available < wanted || updated < wanted || total > wanted {
            waiting.push(format!("{} {available}/{wanted}", service.name));
        }
        status.insert(
            service.name.to_owned(),
            crate::crd::ServiceStatus {
                replicas: wanted,
                available_replicas: available,
            },
        );
    }
    // A Deployment or StatefulSet deleted by hand: the next reconcile
    // applies everything again instead of trusting what it did before.
    let managed_stores = [
        ("postgres", sf.spec.postgres.managed.is_some()),
        ("redis", sf.spec.redis.managed.is_some()),
        ("kafka", sf.spec.kafka.managed.is_some()),
    ];
    let mut missing = !by_name_missing.is_empty();
    if managed_stores.iter().any(|(_, managed)| *managed) {
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace(sf));
        let have: BTreeSet<String> = sets
            .list_metadata(
                &ListParams::default().labels(&children::instance_selector(&sf.name_any())),
            )
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        missing |= managed_stores.iter().any(|(store, managed)| {
            *managed && !have.contains(&names::child(&sf.name_any(), store))
        });
    }
    if missing {
        ctx.forget(&sf.uid().unwrap_or_default(), Step::Children);
    }
    let outcome = if waiting.is_empty() {
        Outcome::ok("AllAvailable", "every service has its replicas available")
    } else {
        Outcome::failed("Progressing", format!("waiting for {}", waiting.join(", ")))
    };
    Ok((status, outcome))
}

/// Turns what [`topics::ensure`] found into the `TopicsReady` outcome, the
/// status's partitions and Events.
pub(super) async fn report_topics(
    ctx: &Context,
    sf: &Storefront,
    status: &mut StorefrontStatus,
    bootstrap: &str,
    count: usize,
    report: topics::TopicsReport,
) -> Outcome {
    if !report.changed.is_empty() {
        publish(
            ctx,
            sf,
            EventType::Normal,
            "TopicsChanged",
            format!("created or grown: {}", report.changed.join(", ")),
        )
        .await;
    }
    status.topics = report.partitions.clone();
    if report.decreases.is_empty() {
        return Outcome::ok("Created", format!("{count} topics on {bootstrap}"));
    }
    let detail = report
        .decreases
        .iter()
        .map(|(topic, wanted, have)| {
            format!("{topic} has {have} partitions, the spec asks for {wanted}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    Outcome::failed(
        "PartitionDecreaseRefused",
        format!("Kafka cannot remove partitions: {detail}"),
    )
}

/// Writes the status subresource when it changed (no churn otherwise).
pub(super) async fn write_status(
    sf: &Storefront,
    ctx: &Context,
    old: &StorefrontStatus,
    status: &StorefrontStatus,
) -> Result<(), Error> {
    if old == status {
        return Ok(());
    }
    let api: Api<Storefront> = Api::namespaced(ctx.client.clone(), &namespace(sf));
    let body = json!({
        "apiVersion": Storefront::api_version(&()),
        "kind": Storefront::kind(&()),
        "status": status,
    });
    api.patch_status(
        &sf.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::READY;

    #[test]
    fn a_condition_moves_its_transition_time_only_on_a_flip() {
        let t0 = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t2 = Timestamp::from_second(3_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut conditions = vec![];
        assert!(set_condition(
            &mut conditions,
            READY,
            false,
            "NotReady",
            "a",
            Some(1),
            t0
        ));
        assert!(!set_condition(
            &mut conditions,
            READY,
            false,
            "NotReady",
            "b",
            Some(2),
            t1
        ));
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert!(set_condition(
            &mut conditions,
            READY,
            true,
            "AllReady",
            "c",
            Some(2),
            t2
        ));
        assert_eq!(conditions[0].last_transition_time, Time(t2));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions.len(), 1);
    }
}
