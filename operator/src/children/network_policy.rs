//! The NetworkPolicies: who may talk to the shop's pods.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Child, ChildKind, NameStr, object, selector_labels};
use crate::crd::Storefront;
use crate::names::{self, METRICS_PORT};

/// Only the gateway takes traffic from outside the shop; everything else
/// only from the shop's own pods (and `/metrics` from anywhere, for
/// scrapers).
pub(super) fn network_policies(sf: &Storefront) -> Vec<Child> {
    let name = sf.name_any_str();
    let instance = BTreeMap::from([("app.kubernetes.io/instance".to_owned(), name.to_owned())]);
    let internal = object(
        sf,
        ChildKind::NetworkPolicy,
        &names::child(name, "internal"),
        "network",
        json!({ "spec": {
            "podSelector": { "matchLabels": instance },
            "policyTypes": ["Ingress"],
            "ingress": [
                { "from": [{ "podSelector": { "matchLabels": instance } }] },
                { "ports": [{ "port": METRICS_PORT, "protocol": "TCP" }] },
            ],
        }}),
    );
    let gateway = object(
        sf,
        ChildKind::NetworkPolicy,
        &names::child(name, "gateway"),
        "gateway",
        json!({ "spec": {
            "podSelector": { "matchLabels": selector_labels(sf, "gateway") },
            "policyTypes": ["Ingress"],
            "ingress": [{ "ports": [{ "port": sf.spec.gateway.port, "protocol": "TCP" }] }],
        }}),
    );
    vec![internal, gateway]
}
