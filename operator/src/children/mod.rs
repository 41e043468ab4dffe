//! The objects a Storefront wants, built from its spec alone (pure: no API
//! calls), as server-side-apply bodies.
//!
//! Every child carries the standard `app.kubernetes.io/*` labels and an
//! owner reference to the Storefront, so deleting the Storefront garbage
//! collects it, and the instance label lets the controller prune children
//! no longer wanted.

mod config;
mod connections;
mod deployment;
mod hpa;
mod ingress;
mod network_policy;
mod pdb;
mod service;
mod stores;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use kube::Resource;
use serde_json::{Value, json};

use crate::crd::{ServiceSpec, Storefront};
use crate::names::{self, SERVICES, ServiceKind};

pub use config::{
    WEB_SESSION_SECRET_KEY, config_data, config_hash, database_secret_name, fingerprint,
    generated_jwt_secret_name, kafka_bootstrap, postgres_admin_secret_name,
    postgres_admin_secret_owned, postgres_host, redis_url, secret, topics, web_public_url,
    web_session_secret_name,
};
pub use connections::{MANAGED_POSTGRES_MAX_CONNECTIONS, database_pools, postgres_max_connections};
pub use network_policy::OperatorPods;
pub use stores::{KAFKA_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "storefront-operator";
/// `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "storefront-operator";
/// The pod-template annotation whose change rolls a service's pods.
pub const CONFIG_HASH_ANNOTATION: &str = "shop.storefront.dev/config-hash";

/// The kinds of object the operator makes, with what pruning needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    ConfigMap,
    Secret,
    Service,
    Deployment,
    StatefulSet,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    NetworkPolicy,
    Ingress,
}

impl ChildKind {
    /// `(group, version, kind, plural)`.
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            ChildKind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            ChildKind::Secret => ("", "v1", "Secret", "secrets"),
            ChildKind::Service => ("", "v1", "Service", "services"),
            ChildKind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            ChildKind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            ChildKind::PodDisruptionBudget => (
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            ),
            ChildKind::HorizontalPodAutoscaler => (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            ChildKind::NetworkPolicy => (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
            ),
            ChildKind::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        }
    }

    pub fn api_version(self) -> String {
        let (group, version, _, _) = self.gvk();
        if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        }
    }

    /// The kinds the controller prunes. Secrets are not among them: a
    /// credential is never deleted by a spec change, only with the
    /// Storefront (owner reference).
    pub const PRUNED: [ChildKind; 8] = [
        ChildKind::ConfigMap,
        ChildKind::Service,
        ChildKind::Deployment,
        ChildKind::StatefulSet,
        ChildKind::PodDisruptionBudget,
        ChildKind::HorizontalPodAutoscaler,
        ChildKind::NetworkPolicy,
        ChildKind::Ingress,
    ];
}

/// One object to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub kind: ChildKind,
    pub name: String,
    pub body: Value,
}

/// The secret values the pods need, read from (or generated into) Secrets
/// before building: they enter the config hash, never the pod spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretInputs {
    /// Where the gateway's JWT secret is: (Secret name, key).
    pub jwt: (String, String),
    /// Everything in the Secrets the pods read, to hash per service.
    pub fingerprints: BTreeMap<String, String>,
}

/// The standard labels of one Storefront's children.
pub fn labels(sf: &Storefront, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(sf, component);
    labels.insert("app.kubernetes.io/part-of".into(), "storefront".into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert(
        "app.kubernetes.io/version".into(),
        label_value(&image_tag(sf)),
    );
    labels
}

/// The labels that select one component's pods (stable across upgrades).
pub fn selector_labels(sf: &Storefront, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "storefront".into()),
        (
            "app.kubernetes.io/instance".into(),
            sf.name_any_str().into(),
        ),
        ("app.kubernetes.io/component".into(), component.into()),
    ])
}

/// The label selector of every child of one Storefront (for pruning).
pub fn instance_selector(name: &str) -> String {
    format!("app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={MANAGED_BY}")
}

fn label_value(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    clean
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

trait NameStr {
    fn name_any_str(&self) -> &str;
}

impl NameStr for Storefront {
    fn name_any_str(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

fn namespace(sf: &Storefront) -> &str {
    sf.metadata.namespace.as_deref().unwrap_or("default")
}

pub fn image_tag(sf: &Storefront) -> String {
    sf.spec
        .image
        .tag
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
}

fn image(sf: &Storefront) -> String {
    format!("{}:{}", sf.spec.image.repository, image_tag(sf))
}

fn owner_reference(sf: &Storefront) -> Value {
    json!({
        "apiVersion": Storefront::api_version(&()),
        "kind": Storefront::kind(&()),
        "name": sf.name_any_str(),
        "uid": sf.metadata.uid.as_deref().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn object(sf: &Storefront, kind: ChildKind, name: &str, component: &str, rest: Value) -> Child {
    labelled_object(sf, kind, name, &labels(sf, component), rest)
}

/// [`object`] with labels of the caller's choosing (a managed store's do
/// not carry the shop's version).
fn labelled_object(
    sf: &Storefront,
    kind: ChildKind,
    name: &str,
    labels: &BTreeMap<String, String>,
    rest: Value,
) -> Child {
    let mut body = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.gvk().2,
        "metadata": {
            "name": name,
            "namespace": namespace(sf),
            "labels": labels,
            "ownerReferences": [owner_reference(sf)],
        },
    });
    if let (Some(body), Value::Object(rest)) = (body.as_object_mut(), rest) {
        body.extend(rest);
    }
    Child {
        kind,
        name: name.to_owned(),
        body,
    }
}

fn listen_port(sf: &Storefront, service: ServiceKind) -> i32 {
    if service.is_gateway() {
        sf.spec.gateway.port
    } else {
        service.port
    }
}

fn service_spec(sf: &Storefront, service: ServiceKind) -> &ServiceSpec {
    let s = &sf.spec.services;
    match service.name {
        "gateway" => &s.gateway,
        "product" => &s.product,
        "cart" => &s.cart,
        "inventory" => &s.inventory,
        "payment" => &s.payment,
        "orders" => &s.orders,
        "web" => &s.web,
        _ => &s.checkout,
    }
}

/// Every object the Storefront wants except its Secrets (which the
/// controller writes first, keeping generated values). `operator` is where
/// the operator's own pods are, when it runs in the cluster: the managed
/// stores let them in (it provisions databases and topics over the network).
pub fn desired(
    sf: &Storefront,
    inputs: &SecretInputs,
    operator: Option<&OperatorPods>,
) -> Vec<Child> {
    let name = sf.name_any_str();
    let mut children = vec![object(
        sf,
        ChildKind::ConfigMap,
        &names::child(name, "config"),
        "config",
        json!({ "data": config_data(sf) }),
    )];
    for service in SERVICES {
        children.push(deployment::service_deployment(sf, service, inputs));
        children.push(service::service_service(sf, service));
        children.push(pdb::pdb(sf, service));
        children.extend(hpa::hpa(sf, service));
    }
    children.extend(network_policy::network_policies(sf, operator));
    children.extend(ingress::ingress(sf));
    children.extend(stores::managed_stores(sf));
    children
}
