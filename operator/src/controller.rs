//! The reconcile loop: a Storefront's Secrets, children, databases and
//! topics brought to what its spec says, and its status to what is there.
//!
//! Order of one reconcile: Secrets (generated values kept) → every child by
//! server-side apply (field manager `storefront-operator`, forced) →
//! pruning of children no longer wanted → databases over SQL → topics over
//! the Kafka admin API → status from the Deployments. A failing database or
//! broker is a condition and a retry, never a crash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use sqlx::postgres::PgSslMode;

use crate::children::{self, Child, ChildKind, FIELD_MANAGER, SecretInputs, fingerprint};
use crate::crd::{DeletionPolicy, Storefront, StorefrontStatus};
use crate::names::{self, SERVICES};
use crate::postgres::{self, Database};
use crate::topics;

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

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// Per Storefront (uid) and step, the fingerprint of the inputs last
    /// brought about successfully and when: a reconcile whose inputs are
    /// unchanged since, within [`RESYNC`], skips that step (most reconciles
    /// are a child's status moving). Lost on restart, which only means one
    /// full pass.
    done: Mutex<HashMap<(String, Step), (String, Instant)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Children,
    Databases,
    Topics,
}

impl Context {
    fn is_done(&self, uid: &str, step: Step, fingerprint: &str) -> bool {
        self.done
            .lock()
            .ok()
            .and_then(|done| done.get(&(uid.to_owned(), step)).cloned())
            .is_some_and(|(f, at)| f == fingerprint && at.elapsed() < RESYNC)
    }

    fn mark_done(&self, uid: &str, step: Step, fingerprint: String) {
        if let Ok(mut done) = self.done.lock() {
            done.insert((uid.to_owned(), step), (fingerprint, Instant::now()));
        }
    }

    fn forget(&self, uid: &str, step: Step) {
        if let Ok(mut done) = self.done.lock() {
            done.remove(&(uid.to_owned(), step));
        }
    }
}

impl Context {
    pub fn new(client: Client, instance: Option<String>) -> Self {
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
/// deleted with it carries the finalizer (so that, under the default
/// `Retain`, deleting a Storefront never waits for the operator); one whose
/// policy went back to `Retain` loses it.
pub async fn reconcile(sf: Arc<Storefront>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<Storefront> = Api::namespaced(ctx.client.clone(), &namespace(&sf));
    let wants_finalizer = sf.spec.kafka.topics.deletion_policy == DeletionPolicy::Delete;
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

/// Deletion: topics go only under policy `Delete`; everything else is
/// garbage-collected through owner references.
async fn cleanup(sf: &Storefront, ctx: &Context) -> Result<Action, Error> {
    if sf.spec.kafka.topics.deletion_policy == DeletionPolicy::Delete {
        let names: Vec<String> = children::topics(sf).into_iter().map(|t| t.name).collect();
        if let Err(error) = topics::delete(&children::kafka_bootstrap(sf), &names).await {
            publish(
                ctx,
                sf,
                EventType::Warning,
                "TopicDeletionFailed",
                error.to_string(),
            )
            .await;
            return Err(error.into());
        }
        publish(
            ctx,
            sf,
            EventType::Normal,
            "TopicsDeleted",
            names.join(", "),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// A condition as the operator writes it.
struct Outcome {
    ok: bool,
    reason: String,
    message: String,
}

impl Outcome {
    fn ok(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
    fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
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

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|v| (k.clone(), v)))
        .collect()
}

async fn apply_child(ctx: &Context, namespace: &str, child: &Child) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &api_resource(child.kind));
    api.patch(&child.name, &apply_params(), &Patch::Apply(&child.body))
        .await
        .map(|_| ())
}

/// Applies a generated Secret unless it already holds exactly `data`;
/// notes its name in `created` when it is new.
async fn ensure_secret(
    ctx: &Context,
    sf: &Storefront,
    name: &str,
    component: &str,
    existing: Option<&BTreeMap<String, String>>,
    data: &BTreeMap<String, String>,
    created: &mut Vec<String>,
) -> Result<(), Error> {
    if existing == Some(data) {
        return Ok(());
    }
    apply_child(
        ctx,
        &namespace(sf),
        &children::secret(sf, name, component, data),
    )
    .await?;
    if existing.is_none() {
        created.push(name.to_owned());
    }
    Ok(())
}

/// The Secrets: per-service database credentials and the JWT secret
/// (generated once, then kept), the admin credentials of a managed
/// PostgreSQL. Returns what the builders need, the databases to provision
/// and, when the external admin Secret is missing, why not.
async fn secrets(
    sf: &Storefront,
    ctx: &Context,
) -> Result<
    (
        SecretInputs,
        Option<postgres::Server>,
        Vec<Database>,
        Option<Outcome>,
    ),
    Error,
> {
    let ns = namespace(sf);
    let name = sf.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    // The Secrets the operator made carry the instance label: one LIST
    // reads them all; others (an external admin's, a JWT reference) by name.
    let ours: BTreeMap<String, BTreeMap<String, String>> = api
        .list(&ListParams::default().labels(&children::instance_selector(&name)))
        .await?
        .items
        .iter()
        .map(|s| (s.name_any(), secret_data(s)))
        .collect();
    let read_secret = |secret: String| {
        let api = api.clone();
        let known = ours.get(&secret).cloned();
        async move {
            match known {
                Some(data) => Ok(Some(data)),
                None => Ok::<_, Error>(api.get_opt(&secret).await?.map(|s| secret_data(&s))),
            }
        }
    };
    let mut inputs = SecretInputs::default();
    let mut created = vec![];
    let mut problem = None;

    // The PostgreSQL admin.
    let admin_name = children::postgres_admin_secret_name(sf);
    let admin = read_secret(admin_name.clone()).await?;
    let admin = if sf.spec.postgres.managed.is_some() {
        let password = admin
            .as_ref()
            .and_then(|d| d.get("password").cloned())
            .unwrap_or_else(postgres::generate_password);
        let data = BTreeMap::from([
            ("username".to_owned(), "postgres".to_owned()),
            ("password".to_owned(), password),
        ]);
        ensure_secret(
            ctx,
            sf,
            &admin_name,
            "postgres",
            admin.as_ref(),
            &data,
            &mut created,
        )
        .await?;
        Some(data)
    } else {
        if admin.is_none() {
            problem = Some(Outcome::failed(
                "AdminSecretMissing",
                format!("the PostgreSQL admin Secret {admin_name} does not exist in {ns}"),
            ));
        }
        admin
    };
    let (host, port) = children::postgres_host(sf);
    let ssl_mode = match sf
        .spec
        .postgres
        .external
        .as_ref()
        .and_then(|e| e.ssl_mode.as_deref())
    {
        Some("disable") => PgSslMode::Disable,
        Some("require") => PgSslMode::Require,
        None if sf.spec.postgres.managed.is_some() => PgSslMode::Disable,
        _ => PgSslMode::Prefer,
    };
    // The server as the services reach it; provisioning also needs the
    // admin credentials (without them it is skipped and reported).
    let admin_field = |key: &str| admin.as_ref().and_then(|a| a.get(key).cloned());
    let server = postgres::Server {
        host: host.clone(),
        port: u16::try_from(port).unwrap_or(5432),
        admin_user: admin_field("username").unwrap_or_else(|| "postgres".into()),
        admin_password: admin_field("password").unwrap_or_default(),
        ssl_mode,
    };

    // Per-service credentials.
    let mut databases = vec![];
    for service in SERVICES.iter().filter(|s| s.database) {
        let secret_name = children::database_secret_name(sf, *service);
        let existing = read_secret(secret_name.clone()).await?;
        let db = Database {
            name: names::database(&ns, &name, service.name),
            password: existing
                .as_ref()
                .and_then(|d| d.get("password").cloned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(postgres::generate_password),
        };
        let data = BTreeMap::from([
            ("username".to_owned(), db.name.clone()),
            ("password".to_owned(), db.password.clone()),
            ("database".to_owned(), db.name.clone()),
            ("host".to_owned(), host.clone()),
            ("port".to_owned(), port.to_string()),
            ("url".to_owned(), server.url(&db)),
        ]);
        ensure_secret(
            ctx,
            sf,
            &secret_name,
            service.name,
            existing.as_ref(),
            &data,
            &mut created,
        )
        .await?;
        inputs.fingerprints.insert(secret_name, fingerprint(&data));
        databases.push(db);
    }

    // The gateway's JWT secret.
    match &sf.spec.gateway.jwt_secret_ref {
        Some(reference) => {
            let data = read_secret(reference.name.clone()).await?;
            match data.as_ref().and_then(|d| d.get(&reference.key)) {
                Some(value) => {
                    inputs.fingerprints.insert(
                        reference.name.clone(),
                        fingerprint(&BTreeMap::from([(reference.key.clone(), value.clone())])),
                    );
                }
                None => {
                    publish(
                        ctx,
                        sf,
                        EventType::Warning,
                        "JwtSecretMissing",
                        format!("Secret {} has no key {}", reference.name, reference.key),
                    )
                    .await;
                }
            }
            inputs.jwt = (reference.name.clone(), reference.key.clone());
        }
        None => {
            let secret_name = children::generated_jwt_secret_name(sf);
            let existing = read_secret(secret_name.clone()).await?;
            let value = existing
                .as_ref()
                .and_then(|d| d.get("secret").cloned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "{}{}",
                        postgres::generate_password(),
                        postgres::generate_password()
                    )
                });
            let data = BTreeMap::from([("secret".to_owned(), value)]);
            ensure_secret(
                ctx,
                sf,
                &secret_name,
                "gateway",
                existing.as_ref(),
                &data,
                &mut created,
            )
            .await?;
            inputs
                .fingerprints
                .insert(secret_name.clone(), fingerprint(&data));
            inputs.jwt = (secret_name, "secret".to_owned());
        }
    }
    if !created.is_empty() {
        publish(
            ctx,
            sf,
            EventType::Normal,
            "SecretsCreated",
            format!("generated {}", created.join(", ")),
        )
        .await;
    }
    let server = admin.is_some().then_some(server);
    Ok((inputs, server, databases, problem))
}

/// Deletes this Storefront's children of the pruned kinds that the spec no
/// longer wants.
async fn prune(sf: &Storefront, ctx: &Context, wanted: &[Child]) -> Result<Vec<String>, Error> {
    let ns = namespace(sf);
    let uid = sf.uid();
    let wanted: BTreeSet<(ChildKind, &str)> =
        wanted.iter().map(|c| (c.kind, c.name.as_str())).collect();
    let mut pruned = vec![];
    for kind in ChildKind::PRUNED {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &api_resource(kind));
        let list = api
            .list_metadata(
                &ListParams::default().labels(&children::instance_selector(&sf.name_any())),
            )
            .await?;
        for object in list.items {
            let name = object.name_any();
            let owned = object
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref());
            if owned && !wanted.contains(&(kind, name.as_str())) {
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => pruned.push(format!("{} {name}", kind.gvk().2)),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(pruned)
}

/// Per-service replicas from the Deployments, and whether all are available.
async fn services_status(
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
async fn report_topics(
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
    let wanted = children::desired(sf, &inputs);
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

    // Topics.
    let wanted_topics = children::topics(sf);
    let bootstrap = children::kafka_bootstrap(sf);
    let topics_fingerprint = fingerprint(&(&bootstrap, &wanted_topics));
    let topics_result = if ctx.is_done(&uid, Step::Topics, &topics_fingerprint) {
        Ok(None)
    } else {
        topics::ensure(&bootstrap, &wanted_topics).await.map(Some)
    };
    let topics_outcome = match topics_result {
        // Unchanged since the last success: the condition stays.
        Ok(None) => match status.conditions.iter().find(|c| c.type_ == TOPICS_READY) {
            Some(c) => Outcome {
                ok: c.status == "True",
                reason: c.reason.clone(),
                message: c.message.clone(),
            },
            None => Outcome::ok(
                "Created",
                format!("{} topics on {bootstrap}", wanted_topics.len()),
            ),
        },
        Ok(Some(report)) => {
            if report.decreases.is_empty() {
                ctx.mark_done(&uid, Step::Topics, topics_fingerprint.clone());
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
    };
    let (services, services_outcome) = services_status(sf, ctx).await?;
    status.services = services;
    status.gateway_address = Some(format!(
        "{}.{ns}.svc:{}",
        names::child(&name, "gateway"),
        sf.spec.gateway.port
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

/// Writes the status subresource when it changed (no churn otherwise).
async fn write_status(
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
