//! What the pods read: the ConfigMap's data (addresses of the services and
//! stores, topics, groups), the Secrets' names and bodies, and the hash
//! that rolls a service's pods when any of it changes.

use std::collections::BTreeMap;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Child, ChildKind, NameStr, SecretInputs, listen_port, namespace, object};
use crate::crd::{DeletionPolicy, Storefront};
use crate::names::{self, METRICS_PORT, SERVICES, ServiceKind};
use crate::topics::WantedTopic;

/// Where each backing store is, as the pods reach it.
pub fn postgres_host(sf: &Storefront) -> (String, i32) {
    match &sf.spec.postgres.external {
        Some(external) => (external.host.clone(), external.port),
        None => (
            format!(
                "{}.{}.svc",
                names::child(sf.name_any_str(), "postgres"),
                namespace(sf)
            ),
            5432,
        ),
    }
}

pub fn redis_url(sf: &Storefront) -> String {
    match &sf.spec.redis.external {
        Some(external) => external.url.clone(),
        None => format!(
            "redis://{}.{}.svc:6379",
            names::child(sf.name_any_str(), "redis"),
            namespace(sf)
        ),
    }
}

pub fn kafka_bootstrap(sf: &Storefront) -> String {
    match &sf.spec.kafka.external {
        Some(external) => external.bootstrap_servers.clone(),
        None => format!(
            "{}.{}.svc:9092",
            names::child(sf.name_any_str(), "kafka"),
            namespace(sf)
        ),
    }
}

/// The shop's topics.
pub fn topics(sf: &Storefront) -> Vec<WantedTopic> {
    let (ns, name) = (namespace(sf), sf.name_any_str());
    let t = &sf.spec.kafka.topics;
    let topic = |suffix: &str, partitions: i32, spec: &crate::crd::TopicSpec| WantedTopic {
        name: names::topic(ns, name, suffix),
        partitions,
        replication: spec.replication_factor.unwrap_or(1),
        config: spec.config.clone(),
    };
    vec![
        topic("checkout-events", t.checkout.partitions, &t.checkout),
        topic("checkout-events.dlq", 1, &t.checkout),
        topic("order-events", t.order.partitions, &t.order),
        // Payment and inventory consume order-events and dead-letter there.
        topic("order-events.dlq", 1, &t.order),
    ]
}

/// The Secret holding one service's database credentials.
pub fn database_secret_name(sf: &Storefront, service: ServiceKind) -> String {
    names::child(sf.name_any_str(), &format!("{}-db", service.name))
}

/// The Secret of the managed PostgreSQL's superuser.
pub fn postgres_admin_secret_name(sf: &Storefront) -> String {
    match &sf.spec.postgres.external {
        Some(external) => external.admin_secret_name.clone(),
        None => names::child(sf.name_any_str(), "postgres-admin"),
    }
}

/// The Secret the operator generates for the gateway when the spec names none.
pub fn generated_jwt_secret_name(sf: &Storefront) -> String {
    names::child(sf.name_any_str(), "jwt")
}

/// The Secret the operator generates once for the web's session key (the
/// key that signs its session and CSRF cookies, the same in every replica).
pub fn web_session_secret_name(sf: &Storefront) -> String {
    names::child(sf.name_any_str(), "web-session")
}

/// The key of the session key in [`web_session_secret_name`].
pub const WEB_SESSION_SECRET_KEY: &str = "key";

/// The shop's URL as browsers see it: `web.publicUrl` (without a closing
/// `/`), else the Ingress's host.
pub fn web_public_url(sf: &Storefront) -> Option<String> {
    if let Some(url) = &sf.spec.web.public_url {
        return Some(url.trim_end_matches('/').to_owned());
    }
    let ingress = sf.spec.gateway.ingress.as_ref()?;
    let scheme = if ingress.tls_secret_name.is_some() {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}", ingress.host))
}

/// A generated Secret's body (the values come from the caller, which keeps
/// existing ones). `owned`: it goes with the Storefront (an owner
/// reference); otherwise it outlives it, as a retained PostgreSQL volume's
/// admin credentials must.
pub fn secret(
    sf: &Storefront,
    name: &str,
    component: &str,
    data: &BTreeMap<String, String>,
    owned: bool,
) -> Child {
    let mut child = object(
        sf,
        ChildKind::Secret,
        name,
        component,
        json!({ "type": "Opaque", "stringData": data }),
    );
    if !owned && let Some(metadata) = child.body["metadata"].as_object_mut() {
        metadata.remove("ownerReferences");
    }
    child
}

/// Whether the managed PostgreSQL's admin Secret goes with the Storefront:
/// as long as its volume lives, so do the credentials it was made with.
pub fn postgres_admin_secret_owned(sf: &Storefront) -> bool {
    sf.spec
        .postgres
        .managed
        .as_ref()
        .is_none_or(|m| m.deletion_policy == DeletionPolicy::Delete)
}

/// The non-secret configuration every service reads (environment variables).
pub fn config_data(sf: &Storefront) -> BTreeMap<String, String> {
    let (ns, name) = (namespace(sf), sf.name_any_str());
    let url = |service: &str, port: i32| {
        format!("http://{}.{ns}.svc:{port}", names::child(name, service))
    };
    let mut data = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        data.insert(k.to_owned(), v);
    };
    set("LOG_FORMAT", "json".into());
    set("METRICS_LISTEN", format!("0.0.0.0:{METRICS_PORT}"));
    // After SIGTERM a pod serves on while its endpoints are withdrawn, then
    // drains (5 s + the 10 s grace stay within terminationGracePeriodSeconds).
    set("SHUTDOWN_DELAY", "5s".into());
    // A managed shop's services start beside its PostgreSQL, before their
    // roles exist: they wait (within the 5-minute startup probe), not restart.
    set("DATABASE_CONNECT_PATIENCE", "4m".into());
    for service in SERVICES {
        set(
            &format!("{}_LISTEN", service.env_prefix()),
            format!("0.0.0.0:{}", listen_port(sf, service)),
        );
    }
    for (service, port) in [
        ("product", 50051),
        ("cart", 50052),
        ("checkout", 50056),
        ("orders", 50055),
    ] {
        set(
            &format!("GATEWAY_{}_URL", service.to_ascii_uppercase()),
            url(service, port),
        );
    }
    set("CART_PRODUCT_URL", url("product", 50051));
    set("CHECKOUT_CART_URL", url("cart", 50052));
    set("CHECKOUT_PRODUCT_URL", url("product", 50051));
    set("CHECKOUT_INVENTORY_URL", url("inventory", 50053));
    set("CHECKOUT_PAYMENT_URL", url("payment", 50054));
    let bootstrap = kafka_bootstrap(sf);
    for prefix in ["CART", "ORDERS", "CHECKOUT", "PAYMENT", "INVENTORY"] {
        set(&format!("{prefix}_KAFKA_BOOTSTRAP"), bootstrap.clone());
    }
    let checkout_topic = names::topic(ns, name, "checkout-events");
    set("CHECKOUT_TOPIC", checkout_topic.clone());
    set("CART_CHECKOUT_TOPIC", checkout_topic.clone());
    set("ORDERS_CHECKOUT_TOPIC", checkout_topic);
    let order_topic = names::topic(ns, name, "order-events");
    set("ORDERS_ORDER_TOPIC", order_topic.clone());
    // Payment and inventory refund and restock cancelled orders from it.
    set("PAYMENT_ORDER_TOPIC", order_topic.clone());
    set("INVENTORY_ORDER_TOPIC", order_topic);
    set(
        "CART_CONSUMER_GROUP",
        names::consumer_group(ns, name, "cart"),
    );
    set(
        "ORDERS_CONSUMER_GROUP",
        names::consumer_group(ns, name, "orders"),
    );
    set(
        "PAYMENT_CONSUMER_GROUP",
        names::consumer_group(ns, name, "payment"),
    );
    set(
        "INVENTORY_CONSUMER_GROUP",
        names::consumer_group(ns, name, "inventory"),
    );
    set("CART_REDIS_URL", redis_url(sf));
    // The cart caches under `<prefix><user id>`: the closing separator keeps
    // two shops on one Redis apart (neither a namespace nor a name holds a
    // colon, so no shop's prefix starts another's).
    set(
        "CART_CACHE_PREFIX",
        format!("storefront:cart:v1:{ns}:{name}:"),
    );
    if let Some(limits) = &sf.spec.gateway.rate_limits {
        for (key, value) in [
            ("GATEWAY_RATE_LIMIT_PER_USER", limits.per_user),
            ("GATEWAY_RATE_LIMIT_PER_USER_BURST", limits.per_user_burst),
            ("GATEWAY_RATE_LIMIT_PER_IP", limits.per_ip),
            ("GATEWAY_RATE_LIMIT_PER_IP_BURST", limits.per_ip_burst),
        ] {
            if let Some(value) = value {
                set(key, value.to_string());
            }
        }
    }
    if !sf.spec.gateway.trusted_proxies.is_empty() {
        set(
            "GATEWAY_TRUSTED_PROXIES",
            sf.spec.gateway.trusted_proxies.join(","),
        );
    }
    // The web storefront calls the gateway inside the cluster.
    set(
        "WEB_GATEWAY_URL",
        url(names::GATEWAY.name, sf.spec.gateway.port),
    );
    let sign_in = &sf.spec.web.sign_in;
    set("WEB_DEV_SIGN_IN", sign_in.dev.to_string());
    if let Some(public_url) = web_public_url(sf) {
        set("WEB_PUBLIC_URL", public_url);
    }
    if let Some(oidc) = &sign_in.oidc {
        set("WEB_OIDC_ISSUER", oidc.issuer.clone());
        set("WEB_OIDC_CLIENT_ID", oidc.client_id.clone());
        if !oidc.scopes.is_empty() {
            set("WEB_OIDC_SCOPES", oidc.scopes.join(" "));
        }
        if let Some(provider) = &oidc.provider_name {
            set("WEB_OIDC_PROVIDER_NAME", provider.clone());
        }
    }
    if let Some(tracing) = &sf.spec.tracing {
        set("OTEL_EXPORTER_OTLP_ENDPOINT", tracing.otlp_endpoint.clone());
        set(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            tracing.protocol.clone().unwrap_or_else(|| "grpc".into()),
        );
        set("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into());
        set(
            "OTEL_TRACES_SAMPLER_ARG",
            tracing.sampling_ratio.to_string(),
        );
        set(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("deployment.environment.name={ns}"),
        );
    }
    data
}

/// The hash that rolls a service's pods when its configuration or one of
/// the Secrets it reads changes.
pub fn config_hash(
    config: &BTreeMap<String, String>,
    secrets: &[&str],
    inputs: &SecretInputs,
) -> String {
    let secrets: Vec<(&str, Option<&String>)> = secrets
        .iter()
        .map(|name| (*name, inputs.fingerprints.get(*name)))
        .collect();
    fingerprint(&(config, secrets))
}

/// A short hash (16 hex digits) of anything serialisable: config hashes,
/// Secret fingerprints, the controller's "inputs unchanged" marks.
pub fn fingerprint<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
