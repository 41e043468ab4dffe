//! The NetworkPolicies: who may talk to the shop's pods.
//!
//! - `<name>-internal`: the services take traffic from the shop's own pods,
//!   and `/metrics` from anywhere (scrapers);
//! - `<name>-gateway` and `<name>-web`: the gateway's and the web
//!   storefront's port from anywhere;
//! - `<name>-stores`: the managed PostgreSQL, Redis and Kafka take their
//!   server port from the shop's pods only, and PostgreSQL and Kafka also
//!   from the operator's pods, which create databases, roles and topics.
//!
//! Policies add up, so each selects only the pods it speaks for: the
//! services' policies leave the stores out.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::stores::{STORES, Store};
use super::{Child, ChildKind, NameStr, object, selector_labels};
use crate::crd::Storefront;
use crate::names::{self, GATEWAY, METRICS_PORT, ServiceKind, WEB};

/// The operator's own pods, as a NetworkPolicy peer: their namespace and
/// the labels that select them (`POD_NAMESPACE` and `OPERATOR_POD_LABELS`,
/// which the chart sets from the downward API and its selector labels).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorPods {
    pub namespace: String,
    /// Empty: every pod of that namespace.
    pub labels: BTreeMap<String, String>,
}

impl OperatorPods {
    /// `key=value,key=value` (the chart's `OPERATOR_POD_LABELS`) as labels.
    pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    Ok((key.trim().to_owned(), value.trim().to_owned()))
                }
                _ => Err(format!("{pair:?} is not key=value")),
            })
            .collect()
    }

    fn peer(&self) -> Value {
        json!({
            "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": self.namespace,
            }},
            "podSelector": { "matchLabels": self.labels },
        })
    }
}

/// `app.kubernetes.io/component` of every managed store.
fn store_components() -> Vec<&'static str> {
    STORES.iter().map(|s| s.component).collect()
}

pub(super) fn network_policies(sf: &Storefront, operator: Option<&OperatorPods>) -> Vec<Child> {
    let name = sf.name_any_str();
    let instance = BTreeMap::from([("app.kubernetes.io/instance".to_owned(), name.to_owned())]);
    let internal = object(
        sf,
        ChildKind::NetworkPolicy,
        &names::child(name, "internal"),
        "network",
        json!({ "spec": {
            "podSelector": {
                "matchLabels": instance,
                "matchExpressions": [{
                    "key": "app.kubernetes.io/component",
                    "operator": "NotIn",
                    "values": store_components(),
                }],
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                { "from": [{ "podSelector": { "matchLabels": instance } }] },
                { "ports": [{ "port": METRICS_PORT, "protocol": "TCP" }] },
            ],
        }}),
    );
    // The two front doors: the gateway's and the web's port from anywhere
    // (the web reaches the gateway through it too, as well as through
    // `<name>-internal`).
    let front_door = |service: ServiceKind, port: i32| {
        object(
            sf,
            ChildKind::NetworkPolicy,
            &names::child(name, service.name),
            service.name,
            json!({ "spec": {
                "podSelector": { "matchLabels": selector_labels(sf, service.name) },
                "policyTypes": ["Ingress"],
                "ingress": [{ "ports": [{ "port": port, "protocol": "TCP" }] }],
            }}),
        )
    };
    let gateway = front_door(GATEWAY, sf.spec.gateway.port);
    let web = front_door(WEB, WEB.port);
    let any_managed = sf.spec.postgres.managed.is_some()
        || sf.spec.redis.managed.is_some()
        || sf.spec.kafka.managed.is_some();
    if !any_managed {
        return vec![internal, gateway, web];
    }
    let port = |store: &Store| json!({ "port": store.port, "protocol": "TCP" });
    let mut store_rules = vec![json!({
        "from": [{ "podSelector": { "matchLabels": instance } }],
        "ports": STORES.iter().map(port).collect::<Vec<_>>(),
    })];
    if let Some(operator) = operator {
        store_rules.push(json!({
            "from": [operator.peer()],
            "ports": STORES.iter().filter(|s| s.operator_reaches).map(port).collect::<Vec<_>>(),
        }));
    }
    let stores = object(
        sf,
        ChildKind::NetworkPolicy,
        &names::child(name, "stores"),
        "network",
        json!({ "spec": {
            "podSelector": {
                "matchLabels": instance,
                "matchExpressions": [{
                    "key": "app.kubernetes.io/component",
                    "operator": "In",
                    "values": store_components(),
                }],
            },
            "policyTypes": ["Ingress"],
            "ingress": store_rules,
        }}),
    );
    vec![internal, gateway, web, stores]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_pod_labels_parse_from_the_chart_s_list() {
        assert_eq!(
            OperatorPods::parse_labels(
                "app.kubernetes.io/name=storefront-operator, app.kubernetes.io/instance=ops"
            ),
            Ok(BTreeMap::from([
                (
                    "app.kubernetes.io/name".to_owned(),
                    "storefront-operator".to_owned()
                ),
                ("app.kubernetes.io/instance".to_owned(), "ops".to_owned()),
            ]))
        );
        assert_eq!(OperatorPods::parse_labels(""), Ok(BTreeMap::new()));
        assert!(OperatorPods::parse_labels("nonsense").is_err());
    }
}
