//! A HorizontalPodAutoscaler for a service that asks for one.

use serde_json::json;

use super::{Child, ChildKind, NameStr, object, service_spec};
use crate::crd::Storefront;
use crate::names::{self, ServiceKind};

pub(super) fn hpa(sf: &Storefront, service: ServiceKind) -> Option<Child> {
    let autoscaling = service_spec(sf, service).autoscaling.as_ref()?;
    let name = names::child(sf.name_any_str(), service.name);
    Some(object(
        sf,
        ChildKind::HorizontalPodAutoscaler,
        &name,
        service.name,
        json!({ "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu", "target": {
                    "type": "Utilization",
                    "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                }},
            }],
        }}),
    ))
}
