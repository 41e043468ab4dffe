//! The reconcile loop: a Storefront's Secrets, children, databases and
//! topics brought to what its spec says, and its status to what is there.
//!
//! Order of one reconcile: Secrets (generated values kept) → every child by
//! server-side apply (field manager `storefront-operator`, forced) →
//! pruning of children no longer wanted → databases over SQL → topics over
//! the Kafka admin API → status from the Deployments. A failing database or
//! broker is a condition and a retry, never a crash.

mod prune;
mod secrets;
mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::children::{self, Child, ChildKind, FIELD_MANAGER, OperatorPods, fingerprint};
use crate::crd::{DeletionPolicy, Storefront};
use crate::names;
use crate::postgres::{self, Database};
use crate::topics;

use prune::prune;
use secrets::secrets;
pub use status::set_condition;
use status::{Outcome, outside_cluster, report_topics, services_status, write_status};

/// The finalizer that lets topics be deleted before the Storefront goes.
pub const FINALIZER: &str = "shop.storefront.dev/cleanup";

/// How soon a Storefront that is not Ready is looked at again.
const RETRY_NOT_READY: Duration = Duration::from_secs(10);
/// How often a Ready Storefront is checked anyway (drift, broker, databases).
const RESYNC: Duration = Duration::from_secs(300);

/// Condition types.
pub const READY: &str = "Ready";
pub const DATABASES_READY: &str = "DatabasesReady";
pub const TOPICS_READY: &str = "TopicsReady";
pub const SERVICES_AVAILABLE: &str = "ServicesAvailable";
pub const DEGRADED: &str = "Degraded";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Topics(#[from] topics::TopicsError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("invalid Storefront: {0}")]
    Invalid(String),
}

impl Error {
    /// The `reason` label of the failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Topics(e) => e.reason(),
            Error::Finalizer(_) => "Finalizer",
            Error::Invalid(_) => "Invalid",
        }
    }
}

/// Where and how the operator runs, as reconciling needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The operator's own pods, when it runs in the cluster: the managed
    /// stores' NetworkPolicy lets them in.
    pub operator_pods: Option<OperatorPods>,
    /// Whether the operator runs in a pod of the cluster, where the managed
    /// stores' `<name>-<store>.<namespace>.svc` names resolve. Outside it
    /// (run from a kubeconfig), a managed store it cannot reach is reported
    /// as `OperatorOutsideCluster`.
    pub in_cluster: bool,
    /// How long a deleted Storefront's finalizer keeps trying to delete the
    /// topics of an unreachable external Kafka before it gives up (with a
    /// Warning Event naming them) and lets the Storefront go.
    pub cleanup_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            operator_pods: None,
            in_cluster: false,
            cleanup_timeout: Duration::from_secs(120),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub settings: Settings,
    /// Per Storefront (uid) and step, what was last brought about
    /// successfully: a reconcile whose inputs are unchanged since, within
    /// [`RESYNC`], skips that step (most reconciles are a child's status
    /// moving). Lost on restart, which only means one full pass.
    done: Mutex<HashMap<(String, Step), Done>>,
}

/// A step brought about: from which inputs, when, and what it left.
#[derive(Clone, Debug)]
struct Done {
    fingerprint: String,
    at: Instant,
    /// For [`Step::Topics`], each topic's partitions as the broker then had
    /// them. A skipped step says these again rather than copy its condition
    /// from the Storefront it was handed: that copy comes from the watch's
    /// cache, which may not yet hold the status this operator last wrote,
    /// and copying it wrote an old `TopicsReady=False` back over a `True`,
    /// where it stayed until the next resync.
    partitions: BTreeMap<String, i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Children,
    Databases,
    Topics,
}

impl Context {
    /// What `step` left, when it was brought about from the same inputs
    /// within [`RESYNC`].
    fn done(&self, uid: &str, step: Step, fingerprint: &str) -> Option<Done> {
        self.done
            .lock()
            .ok()
            .and_then(|done| done.get(&(uid.to_owned(), step)).cloned())
            .filter(|d| d.fingerprint == fingerprint && d.at.elapsed() < RESYNC)
    }

    fn is_done(&self, uid: &str, step: Step, fingerprint: &str) -> bool {
        self.done(uid, step, fingerprint).is_some()
    }

    fn mark_done(&self, uid: &str, step: Step, fingerprint: String) {
        self.remember(uid, step, fingerprint, BTreeMap::new());
    }

    fn remember(
        &self,
        uid: &str,
        step: Step,
        fingerprint: String,
        partitions: BTreeMap<String, i32>,
    ) {
        if let Ok(mut done) = self.done.lock() {
            done.insert(
                (uid.to_owned(), step),
                Done {
                    fingerprint,
                    at: Instant::now(),
                    partitions,
                },
            );
        }
    }

    fn forget(&self, uid: &str, step: Step) {
        if let Ok(mut done) = self.done.lock() {
            done.remove(&(uid.to_owned(), step));
        }
    }
}

impl Context {
    pub fn new(client: Client, instance: Option<String>, settings: Settings) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance,
            },
        );
        Self {
            client,
            recorder,
            settings,
            done: Mutex::default(),
        }
    }
}

fn namespace(sf: &Storefront) -> String {
    sf.namespace().unwrap_or_else(|| "default".to_owned())
}

fn api_resource(kind: ChildKind) -> ApiResource {
    let (group, version, kind_name, plural) = kind.gvk();
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind_name), plural)
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict()
}

async fn publish(ctx: &Context, sf: &Storefront, type_: EventType, reason: &str, note: String) {
    let reference: ObjectReference = sf.object_ref(&());
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(%error, storefront = %sf.name_any(), "cannot publish an Event");
    }
}

/// Entry point for the controller. Only a Storefront whose topics are to be
/// deleted with it ([`deletes_topics`]) carries the finalizer (so that
/// otherwise deleting a Storefront never waits for the operator); one that
/// no longer needs it loses it, and one deleted while carrying it (say, from
/// an older operator) gets a cleanup that always ends.
pub async fn reconcile(sf: Arc<Storefront>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<Storefront> = Api::namespaced(ctx.client.clone(), &namespace(&sf));
    let wants_finalizer = deletes_topics(&sf);
    let has_finalizer = sf.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = sf.metadata.deletion_timestamp.is_some();
    let result = if wants_finalizer || (has_finalizer && deleting) {
        finalizer(&api, FINALIZER, sf, |event| async {
            match event {
                finalizer::Event::Apply(sf) => apply(&sf, &ctx).await,
                finalizer::Event::Cleanup(sf) => cleanup(&sf, &ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        })
    } else if deleting {
        Ok(Action::await_change())
    } else {
        match remove_finalizer(&api, &sf).await {
            Ok(()) => apply(&sf, &ctx).await,
            Err(error) => Err(error),
        }
    };
    metrics::histogram!("storefront_operator_reconcile_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("storefront_operator_reconciles_total").increment(1);
    result
}

/// Takes our finalizer off a Storefront that no longer needs it.
async fn remove_finalizer(api: &Api<Storefront>, sf: &Storefront) -> Result<(), Error> {
    let Some(index) = sf.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path },
    ]))
    .map_err(|e| Error::Finalizer(e.to_string()))?;
    api.patch::<Storefront>(&sf.name_any(), &PatchParams::default(), &Patch::Json(patch))
        .await?;
    Ok(())
}

/// What the controller does after a failed reconcile: count it, retry soon.
pub fn error_policy(sf: Arc<Storefront>, error: &Error, _ctx: Arc<Context>) -> Action {
    metrics::counter!("storefront_operator_reconcile_failures_total", "reason" => error.reason())
        .increment(1);
    tracing::warn!(storefront = %sf.name_any(), %error, "reconcile failed");
    Action::requeue(RETRY_NOT_READY)
}

/// Whether deleting this Storefront waits for its topics to be deleted:
/// only an external Kafka's, under policy `Delete`. A managed broker's
/// topics are on its volume, which goes (or stays) with the StatefulSet:
/// there is nothing to delete over the network, and the broker may be
/// going away itself (or never have come up).
pub fn deletes_topics(sf: &Storefront) -> bool {
    sf.spec.kafka.external.is_some()
        && sf.spec.kafka.topics.deletion_policy == DeletionPolicy::Delete
}

/// How long ago the Storefront was deleted.
fn time_since_deletion(sf: &Storefront) -> Duration {
    sf.metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default()
}

/// Deletion: an external Kafka's topics go under policy `Delete`;
/// everything else is garbage-collected through owner references. A broker
/// that stays unreachable (or refuses) is retried until
/// [`Settings::cleanup_timeout`] after the deletion, then given up on with
/// a Warning Event naming what was left: deleting a Storefront always ends.
async fn cleanup(sf: &Storefront, ctx: &Context) -> Result<Action, Error> {
    if !deletes_topics(sf) {
        return Ok(Action::await_change());
    }
    let names: Vec<String> = children::topics(sf).into_iter().map(|t| t.name).collect();
    let bootstrap = children::kafka_bootstrap(sf);
    let Err(error) = topics::delete(&bootstrap, &names).await else {
        publish(
            ctx,
            sf,
            EventType::Normal,
            "TopicsDeleted",
            names.join(", "),
        )
        .await;
        return Ok(Action::await_change());
    };
    let waited = time_since_deletion(sf);
    let patience = ctx.settings.cleanup_timeout;
    if waited < patience {
        publish(
            ctx,
            sf,
            EventType::Warning,
            "TopicDeletionFailed",
            format!(
                "{error}; retrying for another {}s",
                (patience - waited).as_secs()
            ),
        )
        .await;
        return Err(error.into());
    }
    publish(
        ctx,
        sf,
        EventType::Warning,
        "TopicsLeft",
        format!(
            "gave up deleting topics {} on {bootstrap} after {}s ({error}); the Storefront goes, \
             the topics stay: delete them by hand",
            names.join(", "),
            waited.as_secs()
        ),
    )
    .await;
    Ok(Action::await_change())
}

async fn apply_child(ctx: &Context, namespace: &str, child: &Child) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &api_resource(child.kind));
    api.patch(&child.name, &apply_params(), &Patch::Apply(&child.body))
        .await
        .map(|_| ())
}

/// Provisions the databases unless the same ones were provisioned with the
/// same credentials within [`RESYNC`].
async fn provision_once(
    ctx: &Context,
    uid: &str,
    server: &postgres::Server,
    databases: &[Database],
) -> Result<(), postgres::ProvisionError> {
    let fingerprint = fingerprint(&(
        &server.host,
        server.port,
        &server.admin_user,
        &server.admin_password,
        databases
            .iter()
            .map(|d| (&d.name, &d.password))
            .collect::<Vec<_>>(),
    ));
    if ctx.is_done(uid, Step::Databases, &fingerprint) {
        return Ok(());
    }
    postgres::provision(server, databases).await?;
    ctx.mark_done(uid, Step::Databases, fingerprint);
    Ok(())
}

async fn apply(sf: &Storefront, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(sf);
    let name = sf.name_any();
    let generation = sf.metadata.generation;
    let old = sf.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let now = Timestamp::now();

    if sf.spec.paused {
        set_condition(
            &mut status.conditions,
            READY,
            false,
            "Paused",
            "spec.paused is true: nothing is applied",
            generation,
            now,
        );
        status.observed_generation = generation;
        write_status(sf, ctx, &old, &status).await?;
        return Ok(Action::await_change());
    }
    if name.len() > 40 {
        return Err(Error::Invalid(format!(
            "the name {name:?} is longer than 40 characters (children are named <name>-<service>)"
        )));
    }

    let (inputs, server, databases, admin_problem) = secrets(sf, ctx).await?;
    let uid = sf.uid().unwrap_or_default();
    let wanted = children::desired(sf, &inputs, ctx.settings.operator_pods.as_ref());
    let children_fingerprint = fingerprint(&wanted.iter().map(|c| &c.body).collect::<Vec<_>>());
    let children_done = ctx.is_done(&uid, Step::Children, &children_fingerprint);
    if !children_done {
        // The ConfigMap first (pods read it), then the rest eight at a time.
        let (config, rest): (Vec<&Child>, Vec<&Child>) =
            wanted.iter().partition(|c| c.kind == ChildKind::ConfigMap);
        let ns = ns.as_str();
        for batch in [config, rest] {
            for chunk in batch.chunks(8) {
                let results =
                    futures::future::join_all(chunk.iter().map(|c| apply_child(ctx, ns, c))).await;
                if let Some((child, Err(error))) =
                    chunk.iter().zip(results).find(|(_, r)| r.is_err())
                {
                    publish(
                        ctx,
                        sf,
                        EventType::Warning,
                        "ApplyFailed",
                        format!("{} {}: {error}", child.kind.gvk().2, child.name),
                    )
                    .await;
                    return Err(error.into());
                }
            }
        }
    }
    let pruned = if children_done {
        vec![]
    } else {
        prune(sf, ctx, &wanted).await?
    };
    ctx.mark_done(&uid, Step::Children, children_fingerprint);
    if !pruned.is_empty() {
        publish(
            ctx,
            sf,
            EventType::Normal,
            "Pruned",
            format!("deleted {}", pruned.join(", ")),
        )
        .await;
    }
    if old.observed_generation != generation {
        publish(
            ctx,
            sf,
            EventType::Normal,
            "Applied",
            format!(
                "generation {} applied: {} objects",
                generation.unwrap_or_default(),
                wanted.len()
            ),
        )
        .await;
    }

    // Databases.
    let databases_outcome = match (admin_problem, server) {
        (Some(problem), _) => problem,
        (None, None) => Outcome::failed("AdminSecretMissing", "no PostgreSQL admin credentials"),
        (None, Some(server)) => match provision_once(ctx, &uid, &server, &databases).await {
            Ok(()) => Outcome::ok(
                "Provisioned",
                format!(
                    "{} databases and roles on {}:{}",
                    databases.len(),
                    server.host,
                    server.port
                ),
            ),
            Err(error) => Outcome::failed(error.reason(), error.to_string()),
        },
    };
    let databases_outcome = outside_cluster(
        &ctx.settings,
        "PostgreSQL",
        sf.spec.postgres.managed.is_some(),
        "PostgresUnreachable",
        databases_outcome,
    );

    // Topics.
    let wanted_topics = children::topics(sf);
    let bootstrap = children::kafka_bootstrap(sf);
    let topics_fingerprint = fingerprint(&(&bootstrap, &wanted_topics));
    let topics_outcome = if let Some(done) = ctx.done(&uid, Step::Topics, &topics_fingerprint) {
        // Unchanged since the last success (remembered only when every
        // topic had what the spec asks): said again as it was then.
        status.topics = done.partitions;
        Outcome::ok(
            "Created",
            format!("{} topics on {bootstrap}", wanted_topics.len()),
        )
    } else {
        match topics::ensure(&bootstrap, &wanted_topics).await {
            Ok(report) => {
                if report.decreases.is_empty() {
                    ctx.remember(
                        &uid,
                        Step::Topics,
                        topics_fingerprint.clone(),
                        report.partitions.clone(),
                    );
                }
                report_topics(
                    ctx,
                    sf,
                    &mut status,
                    &bootstrap,
                    wanted_topics.len(),
                    report,
                )
                .await
            }
            Err(error) => Outcome::failed(error.reason(), error.to_string()),
        }
    };
    let topics_outcome = outside_cluster(
        &ctx.settings,
        "Kafka",
        sf.spec.kafka.managed.is_some(),
        "KafkaUnreachable",
        topics_outcome,
    );
    let (services, services_outcome) = services_status(sf, ctx).await?;
    status.services = services;
    status.gateway_address = Some(format!(
        "{}.{ns}.svc:{}",
        names::child(&name, "gateway"),
        sf.spec.gateway.port
    ));
    status.web_address = Some(format!(
        "{}.{ns}.svc:{}",
        names::child(&name, names::WEB.name),
        names::WEB.port
    ));
    status.observed_generation = generation;

    // Events: every flip of a condition, and a first verdict only when it
    // is a failure (a new Storefront is not "NotReady" news).
    let existed: BTreeSet<String> = status.conditions.iter().map(|c| c.type_.clone()).collect();
    let mut flips = vec![];
    for (type_, outcome) in [
        (DATABASES_READY, &databases_outcome),
        (TOPICS_READY, &topics_outcome),
        (SERVICES_AVAILABLE, &services_outcome),
    ] {
        if set_condition(
            &mut status.conditions,
            type_,
            outcome.ok,
            &outcome.reason,
            &outcome.message,
            generation,
            now,
        ) {
            flips.push((
                type_,
                outcome.ok,
                outcome.reason.clone(),
                outcome.message.clone(),
            ));
        }
    }
    let not_ready: Vec<&str> = [
        (DATABASES_READY, databases_outcome.ok),
        (TOPICS_READY, topics_outcome.ok),
        (SERVICES_AVAILABLE, services_outcome.ok),
    ]
    .iter()
    .filter(|(_, ok)| !ok)
    .map(|(t, _)| *t)
    .collect();
    let ready = not_ready.is_empty();
    let (ready_reason, ready_message) = if ready {
        (
            "AllReady".to_owned(),
            "databases, topics and services are ready".to_owned(),
        )
    } else {
        (
            "NotReady".to_owned(),
            format!("not yet: {}", not_ready.join(", ")),
        )
    };
    if set_condition(
        &mut status.conditions,
        READY,
        ready,
        &ready_reason,
        &ready_message,
        generation,
        now,
    ) {
        flips.push((READY, ready, ready_reason, ready_message));
    }
    // Degraded: something failed that waiting alone will not fix (a failed
    // database or topic step: unreachable, refused, or a partition decrease).
    let failures: Vec<&Outcome> = [&databases_outcome, &topics_outcome]
        .into_iter()
        .filter(|outcome| !outcome.ok)
        .collect();
    let degraded = !failures.is_empty();
    let (degraded_reason, degraded_message) = match failures.first() {
        Some(first) => (
            first.reason.clone(),
            failures
                .iter()
                .map(|o| format!("{}: {}", o.reason, o.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => ("AsExpected".to_owned(), "no failures".to_owned()),
    };
    if set_condition(
        &mut status.conditions,
        DEGRADED,
        degraded,
        &degraded_reason,
        &degraded_message,
        generation,
        now,
    ) {
        flips.push((DEGRADED, degraded, degraded_reason, degraded_message));
    }
    for (type_, ok, reason, message) in flips {
        let bad = if type_ == DEGRADED { ok } else { !ok };
        let failure = !ok && (type_ == DATABASES_READY || type_ == TOPICS_READY);
        if !existed.contains(type_) && !failure {
            continue;
        }
        publish(
            ctx,
            sf,
            if bad {
                EventType::Warning
            } else {
                EventType::Normal
            },
            &reason,
            format!("{type_}={}: {message}", if ok { "True" } else { "False" }),
        )
        .await;
    }
    write_status(sf, ctx, &old, &status).await?;
    Ok(Action::requeue(if ready {
        RESYNC
    } else {
        RETRY_NOT_READY
    }))
}
