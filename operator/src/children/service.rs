//! One Service per service (for the gateway, of the requested type; the
//! web's is a ClusterIP Service the Ingress or a port-forward reaches).

use serde_json::json;

use super::{Child, ChildKind, NameStr, listen_port, object, selector_labels};
use crate::crd::Storefront;
use crate::names::{self, METRICS_PORT, ServiceKind};

pub(super) fn service_service(sf: &Storefront, service: ServiceKind) -> Child {
    let name = names::child(sf.name_any_str(), service.name);
    let port = listen_port(sf, service);
    let port_name = if service.is_http() { "http" } else { "grpc" };
    let mut spec = json!({
        "selector": selector_labels(sf, service.name),
        "ports": [
            { "name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP",
              "appProtocol": if service.is_http() { "http" } else { "kubernetes.io/h2c" } },
            { "name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP" },
        ],
    });
    if service.is_gateway() {
        spec["type"] = json!(sf.spec.gateway.service_type.as_str());
    }
    object(
        sf,
        ChildKind::Service,
        &name,
        service.name,
        json!({ "spec": spec }),
    )
}
