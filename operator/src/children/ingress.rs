//! The shop's Ingress, when asked for (`gateway.ingress`): the web
//! storefront at `/`, the REST API at `/api`. It keeps the name it had when
//! it led to the gateway alone (`<name>-gateway`), so an upgrade changes it
//! in place instead of replacing it.

use serde_json::{Value, json};

use super::{Child, ChildKind, NameStr, object};
use crate::crd::Storefront;
use crate::names::{self, GATEWAY, WEB};

pub(super) fn ingress(sf: &Storefront) -> Option<Child> {
    let spec = sf.spec.gateway.ingress.as_ref()?;
    let name = names::child(sf.name_any_str(), GATEWAY.name);
    let path = |path: &str, service: &str| -> Value {
        json!({
            "path": path,
            "pathType": "Prefix",
            "backend": { "service": {
                "name": names::child(sf.name_any_str(), service),
                "port": { "name": "http" },
            }},
        })
    };
    let mut body = json!({
        "rules": [{
            "host": spec.host,
            "http": { "paths": [path("/api", GATEWAY.name), path("/", WEB.name)] },
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
        GATEWAY.name,
        json!({ "spec": body }),
    ))
}
