//! The gateway's Ingress, when asked for.

use serde_json::json;

use super::{Child, ChildKind, NameStr, object};
use crate::crd::Storefront;
use crate::names;

pub(super) fn ingress(sf: &Storefront) -> Option<Child> {
    let spec = sf.spec.gateway.ingress.as_ref()?;
    let name = names::child(sf.name_any_str(), "gateway");
    let mut body = json!({
        "rules": [{
            "host": spec.host,
            "http": { "paths": [{
                "path": "/",
                "pathType": "Prefix",
                "backend": { "service": { "name": name, "port": { "name": "http" } } },
            }]},
        }],
    });
    if let Some(class) = &spec.class_name {
        body["ingressClassName"] = json!(class);
    }
    if let Some(tls) = &spec.tls_secret_name {
        body["tls"] = json!([{ "hosts": [spec.host], "secretName": tls }]);
    }
    Some(object(
        sf,
        ChildKind::Ingress,
        &name,
        "gateway",
        json!({ "spec": body }),
    ))
}
