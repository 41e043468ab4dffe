//! A PodDisruptionBudget per service: one pod at a time may be evicted.

use serde_json::json;

use super::{Child, ChildKind, NameStr, object, selector_labels};
use crate::crd::Storefront;
use crate::names::{self, ServiceKind};

pub(super) fn pdb(sf: &Storefront, service: ServiceKind) -> Child {
    let name = names::child(sf.name_any_str(), service.name);
    object(
        sf,
        ChildKind::PodDisruptionBudget,
        &name,
        service.name,
        json!({ "spec": {
            "maxUnavailable": 1,
            "selector": { "matchLabels": selector_labels(sf, service.name) },
        }}),
    )
}
