//! The objects a Storefront wants, built from its spec alone (pure: no API
//! calls), as server-side-apply bodies.
//!
//! Every child carries the standard `app.kubernetes.io/*` labels and an
//! owner reference to the Storefront, so deleting the Storefront garbage
//! collects it, and the instance label lets the controller prune children
//! no longer wanted.

use std::collections::BTreeMap;

use kube::Resource;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::crd::{ManagedStore, ServiceSpec, Storefront};
use crate::names::{self, METRICS_PORT, SERVICES, ServiceKind};
use crate::topics::WantedTopic;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "storefront-operator";
/// `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "storefront-operator";
/// The pod-template annotation whose change rolls a service's pods.
pub const CONFIG_HASH_ANNOTATION: &str = "shop.storefront.dev/config-hash";
/// The image every managed store runs when the spec names none.
pub const POSTGRES_IMAGE: &str = "postgres:17.6";
pub const REDIS_IMAGE: &str = "redis:8.2";
pub const KAFKA_IMAGE: &str = "apache/kafka:4.1.0";
/// The user the shop's containers run as (the image's non-root user).
const RUN_AS_USER: i64 = 65532;

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
    let mut body = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.gvk().2,
        "metadata": {
            "name": name,
            "namespace": namespace(sf),
            "labels": labels(sf, component),
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

/// A generated Secret's body (the values come from the caller, which keeps
/// existing ones).
pub fn secret(
    sf: &Storefront,
    name: &str,
    component: &str,
    data: &BTreeMap<String, String>,
) -> Child {
    object(
        sf,
        ChildKind::Secret,
        name,
        component,
        json!({ "type": "Opaque", "stringData": data }),
    )
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
    set("CART_CACHE_PREFIX", format!("{ns}:{name}"));
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
        _ => &s.checkout,
    }
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

fn container_security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

fn service_deployment(sf: &Storefront, service: ServiceKind, inputs: &SecretInputs) -> Child {
    let name = names::child(sf.name_any_str(), service.name);
    let config_name = names::child(sf.name_any_str(), "config");
    let spec = service_spec(sf, service);
    let port = listen_port(sf, service);
    let mut env = vec![];
    let mut secrets = vec![];
    if service.database {
        let secret = database_secret_name(sf, service);
        env.push(json!({
            "name": format!("{}_DATABASE_URL", service.env_prefix()),
            "valueFrom": { "secretKeyRef": { "name": secret, "key": "url" } },
        }));
        secrets.push(secret);
    }
    if service.is_gateway() {
        let (secret, key) = &inputs.jwt;
        env.push(json!({
            "name": "JWT_SECRET",
            "valueFrom": { "secretKeyRef": { "name": secret, "key": key } },
        }));
        secrets.push(secret.clone());
    }
    env.push(json!({ "name": "OTEL_SERVICE_NAME", "value": service.name }));
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let hash = config_hash(&config_data(sf), &secret_refs, inputs);
    let (readiness, liveness) = if service.is_gateway() {
        (
            json!({ "httpGet": { "path": "/readyz", "port": "http" }, "periodSeconds": 5, "failureThreshold": 3 }),
            json!({ "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 10, "failureThreshold": 3 }),
        )
    } else {
        (
            json!({ "grpc": { "port": port }, "periodSeconds": 5, "failureThreshold": 3 }),
            json!({ "grpc": { "port": port }, "periodSeconds": 10, "failureThreshold": 3 }),
        )
    };
    let port_name = if service.is_gateway() { "http" } else { "grpc" };
    let mut container = json!({
        "name": service.name,
        "image": image(sf),
        "args": [service.name],
        "ports": [
            { "name": port_name, "containerPort": port, "protocol": "TCP" },
            { "name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP" },
        ],
        "envFrom": [{ "configMapRef": { "name": config_name } }],
        "env": env,
        "readinessProbe": readiness,
        "livenessProbe": liveness,
        "securityContext": container_security_context(),
        "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }],
    });
    if let Some(policy) = sf.spec.image.pull_policy {
        container["imagePullPolicy"] = json!(policy.as_str());
    }
    if let Some(resources) = &spec.resources {
        container["resources"] = json!(resources);
    }
    let mut deployment_spec = json!({
        "selector": { "matchLabels": selector_labels(sf, service.name) },
        "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
        "template": {
            "metadata": {
                "labels": labels(sf, service.name),
                "annotations": { CONFIG_HASH_ANNOTATION: hash },
            },
            "spec": {
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": RUN_AS_USER,
                    "runAsGroup": RUN_AS_USER,
                    "fsGroup": RUN_AS_USER,
                    "seccompProfile": { "type": "RuntimeDefault" },
                },
                "terminationGracePeriodSeconds": 30,
                "containers": [container],
                "volumes": [{ "name": "tmp", "emptyDir": { "sizeLimit": "64Mi" } }],
            },
        },
    });
    // Under an autoscaler the HPA owns the replica count: not applying it
    // leaves the field to the HPA.
    if spec.autoscaling.is_none() {
        deployment_spec["replicas"] = json!(spec.replicas);
    }
    object(
        sf,
        ChildKind::Deployment,
        &name,
        service.name,
        json!({ "spec": deployment_spec }),
    )
}

fn service_service(sf: &Storefront, service: ServiceKind) -> Child {
    let name = names::child(sf.name_any_str(), service.name);
    let port = listen_port(sf, service);
    let port_name = if service.is_gateway() { "http" } else { "grpc" };
    let mut spec = json!({
        "selector": selector_labels(sf, service.name),
        "ports": [
            { "name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP",
              "appProtocol": if service.is_gateway() { "http" } else { "kubernetes.io/h2c" } },
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

fn pdb(sf: &Storefront, service: ServiceKind) -> Child {
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

fn hpa(sf: &Storefront, service: ServiceKind) -> Option<Child> {
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

/// Only the gateway takes traffic from outside the shop; everything else
/// only from the shop's own pods (and `/metrics` from anywhere, for
/// scrapers).
fn network_policies(sf: &Storefront) -> Vec<Child> {
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

fn ingress(sf: &Storefront) -> Option<Child> {
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

/// A managed store: a one-replica StatefulSet with a volume and a headless
/// Service in front.
struct Store<'a> {
    component: &'static str,
    image: &'a str,
    port: i32,
    data_path: &'static str,
    env: Vec<Value>,
    args: Vec<Value>,
    probe: Value,
    run_as: i64,
}

fn store(sf: &Storefront, managed: &ManagedStore, store: Store<'_>) -> [Child; 2] {
    let name = names::child(sf.name_any_str(), store.component);
    let mut container = json!({
        "name": store.component,
        "image": managed.image.as_deref().unwrap_or(store.image),
        "ports": [{ "name": "server", "containerPort": store.port, "protocol": "TCP" }],
        "env": store.env,
        "readinessProbe": store.probe,
        "securityContext": {
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "volumeMounts": [{ "name": "data", "mountPath": store.data_path }],
    });
    if !store.args.is_empty() {
        container["args"] = json!(store.args);
    }
    if let Some(resources) = &managed.resources {
        container["resources"] = json!(resources);
    }
    let mut claim = json!({
        "metadata": { "name": "data" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": managed.storage.as_deref().unwrap_or("1Gi") } },
        },
    });
    if let Some(class) = &managed.storage_class_name {
        claim["spec"]["storageClassName"] = json!(class);
    }
    let statefulset = object(
        sf,
        ChildKind::StatefulSet,
        &name,
        store.component,
        json!({ "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": { "matchLabels": selector_labels(sf, store.component) },
            "template": {
                "metadata": { "labels": labels(sf, store.component) },
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": store.run_as,
                        "runAsGroup": store.run_as,
                        "fsGroup": store.run_as,
                    },
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [claim],
        }}),
    );
    let service = object(
        sf,
        ChildKind::Service,
        &name,
        store.component,
        json!({ "spec": {
            "clusterIP": "None",
            "selector": selector_labels(sf, store.component),
            "ports": [{ "name": "server", "port": store.port, "targetPort": "server", "protocol": "TCP" }],
        }}),
    );
    [statefulset, service]
}

fn managed_stores(sf: &Storefront) -> Vec<Child> {
    let mut children = vec![];
    if let Some(managed) = &sf.spec.postgres.managed {
        let admin = postgres_admin_secret_name(sf);
        children.extend(store(
            sf,
            managed,
            Store {
                component: "postgres",
                image: POSTGRES_IMAGE,
                port: 5432,
                data_path: "/var/lib/postgresql/data",
                env: vec![
                    json!({ "name": "POSTGRES_USER", "valueFrom": { "secretKeyRef": { "name": admin, "key": "username" } } }),
                    json!({ "name": "POSTGRES_PASSWORD", "valueFrom": { "secretKeyRef": { "name": admin, "key": "password" } } }),
                    json!({ "name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata" }),
                ],
                args: vec![],
                probe: json!({ "exec": { "command": ["pg_isready", "-U", "postgres"] }, "periodSeconds": 5 }),
                run_as: 999,
            },
        ));
    }
    if let Some(managed) = &sf.spec.redis.managed {
        children.extend(store(
            sf,
            managed,
            Store {
                component: "redis",
                image: REDIS_IMAGE,
                port: 6379,
                data_path: "/data",
                env: vec![],
                args: vec![json!("--appendonly"), json!("yes")],
                probe: json!({ "exec": { "command": ["redis-cli", "ping"] }, "periodSeconds": 5 }),
                run_as: 999,
            },
        ));
    }
    if let Some(managed) = &sf.spec.kafka.managed {
        let host = format!(
            "{}.{}.svc",
            names::child(sf.name_any_str(), "kafka"),
            namespace(sf)
        );
        let env = |k: &str, v: String| json!({ "name": k, "value": v });
        children.extend(store(
            sf,
            managed,
            Store {
                component: "kafka",
                image: KAFKA_IMAGE,
                port: 9092,
                data_path: "/var/lib/kafka/data",
                env: vec![
                    env("KAFKA_NODE_ID", "1".into()),
                    env("KAFKA_PROCESS_ROLES", "broker,controller".into()),
                    env(
                        "KAFKA_LISTENERS",
                        "PLAINTEXT://:9092,CONTROLLER://:9093".into(),
                    ),
                    env(
                        "KAFKA_ADVERTISED_LISTENERS",
                        format!("PLAINTEXT://{host}:9092"),
                    ),
                    env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
                    env(
                        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into(),
                    ),
                    env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093".into()),
                    env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".into()),
                    env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1".into()),
                    env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".into()),
                    env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false".into()),
                    env("KAFKA_LOG_DIRS", "/var/lib/kafka/data/logs".into()),
                ],
                args: vec![],
                probe: json!({ "tcpSocket": { "port": 9092 }, "periodSeconds": 5 }),
                run_as: 1000,
            },
        ));
    }
    children
}

/// Every object the Storefront wants except its Secrets (which the
/// controller writes first, keeping generated values).
pub fn desired(sf: &Storefront, inputs: &SecretInputs) -> Vec<Child> {
    let name = sf.name_any_str();
    let mut children = vec![object(
        sf,
        ChildKind::ConfigMap,
        &names::child(name, "config"),
        "config",
        json!({ "data": config_data(sf) }),
    )];
    for service in SERVICES {
        children.push(service_deployment(sf, service, inputs));
        children.push(service_service(sf, service));
        children.push(pdb(sf, service));
        children.extend(hpa(sf, service));
    }
    children.extend(network_policies(sf));
    children.extend(ingress(sf));
    children.extend(managed_stores(sf));
    children
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        AutoscalingSpec, ExternalKafka, ExternalPostgres, ExternalRedis, KafkaSpec, PostgresSpec,
        RedisSpec, StorefrontSpec,
    };
    use kube::api::ObjectMeta;

    fn external() -> Storefront {
        let mut sf = Storefront::new(
            "shop",
            StorefrontSpec {
                postgres: PostgresSpec {
                    managed: None,
                    external: Some(ExternalPostgres {
                        host: "db.example".into(),
                        port: 5432,
                        admin_secret_name: "pg-admin".into(),
                        ssl_mode: None,
                    }),
                },
                redis: RedisSpec {
                    managed: None,
                    external: Some(ExternalRedis {
                        url: "redis://cache:6379".into(),
                    }),
                },
                kafka: KafkaSpec {
                    managed: None,
                    external: Some(ExternalKafka {
                        bootstrap_servers: "kafka:9092".into(),
                    }),
                    topics: Default::default(),
                },
                ..StorefrontSpec::default()
            },
        );
        sf.metadata = ObjectMeta {
            name: Some("shop".into()),
            namespace: Some("team".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        };
        sf
    }

    fn inputs() -> SecretInputs {
        SecretInputs {
            jwt: ("shop-jwt".into(), "secret".into()),
            fingerprints: BTreeMap::from([("shop-jwt".into(), "abc".into())]),
        }
    }

    fn find<'a>(children: &'a [Child], kind: ChildKind, name: &str) -> &'a Value {
        &children
            .iter()
            .find(|c| c.kind == kind && c.name == name)
            .unwrap_or_else(|| panic!("no {kind:?} {name}"))
            .body
    }

    #[test]
    fn every_service_gets_a_deployment_service_and_pdb_owned_by_the_storefront() {
        let children = desired(&external(), &inputs());
        for service in SERVICES {
            let name = format!("shop-{}", service.name);
            for kind in [
                ChildKind::Deployment,
                ChildKind::Service,
                ChildKind::PodDisruptionBudget,
            ] {
                let body = find(&children, kind, &name);
                assert_eq!(body["metadata"]["namespace"], "team");
                assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
                assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "Storefront");
                assert_eq!(
                    body["metadata"]["labels"]["app.kubernetes.io/instance"],
                    "shop"
                );
                assert_eq!(
                    body["metadata"]["labels"]["app.kubernetes.io/component"],
                    service.name
                );
                assert_eq!(
                    body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                    MANAGED_BY
                );
            }
            let deployment = find(&children, ChildKind::Deployment, &name);
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container["args"], json!([service.name]));
            assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(
                container["securityContext"]["allowPrivilegeEscalation"],
                false
            );
            assert_eq!(deployment["spec"]["replicas"], 1);
            if service.is_gateway() {
                assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
            } else {
                assert_eq!(container["readinessProbe"]["grpc"]["port"], service.port);
            }
        }
        // No managed stores in external mode, no HPA without autoscaling.
        assert!(
            children.iter().all(|c| c.kind != ChildKind::StatefulSet
                && c.kind != ChildKind::HorizontalPodAutoscaler)
        );
    }

    #[test]
    fn each_deployment_reads_only_its_own_database_secret() {
        let children = desired(&external(), &inputs());
        for service in SERVICES {
            let deployment = find(
                &children,
                ChildKind::Deployment,
                &format!("shop-{}", service.name),
            );
            let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let secrets: Vec<&str> = env
                .iter()
                .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
                .collect();
            if service.is_gateway() {
                assert_eq!(secrets, ["shop-jwt"]);
            } else {
                assert_eq!(secrets, [format!("shop-{}-db", service.name)]);
            }
        }
    }

    #[test]
    fn a_secret_change_changes_only_the_hash_of_the_pods_that_read_it() {
        let sf = external();
        let before = desired(&sf, &inputs());
        let mut changed = inputs();
        changed
            .fingerprints
            .insert("shop-jwt".into(), "rotated".into());
        let after = desired(&sf, &changed);
        let hash = |children: &[Child], service: &str| {
            find(children, ChildKind::Deployment, &format!("shop-{service}"))["spec"]["template"]
                ["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
                .clone()
        };
        assert_ne!(hash(&before, "gateway"), hash(&after, "gateway"));
        assert_eq!(hash(&before, "cart"), hash(&after, "cart"));
        // A configuration change rolls every service.
        let mut traced = sf.clone();
        traced.spec.tracing = Some(crate::crd::TracingSpec {
            otlp_endpoint: "http://collector:4317".into(),
            protocol: None,
            sampling_ratio: 0.5,
        });
        let traced = desired(&traced, &inputs());
        assert_ne!(hash(&before, "cart"), hash(&traced, "cart"));
        let config = find(&traced, ChildKind::ConfigMap, "shop-config");
        assert_eq!(config["data"]["OTEL_TRACES_SAMPLER_ARG"], "0.5");
    }

    #[test]
    fn config_points_services_at_each_other_and_the_shop_scoped_topics() {
        let data = config_data(&external());
        assert_eq!(
            data["CHECKOUT_INVENTORY_URL"],
            "http://shop-inventory.team.svc:50053"
        );
        assert_eq!(
            data["GATEWAY_CHECKOUT_URL"],
            "http://shop-checkout.team.svc:50056"
        );
        assert_eq!(data["CART_CHECKOUT_TOPIC"], "team.shop.checkout-events");
        assert_eq!(data["ORDERS_ORDER_TOPIC"], "team.shop.order-events");
        assert_eq!(data["ORDERS_KAFKA_BOOTSTRAP"], "kafka:9092");
        // Cancelled orders are refunded and restocked from the order topic.
        for service in ["PAYMENT", "INVENTORY"] {
            assert_eq!(data[&format!("{service}_KAFKA_BOOTSTRAP")], "kafka:9092");
            assert_eq!(
                data[&format!("{service}_ORDER_TOPIC")],
                "team.shop.order-events"
            );
        }
        assert_eq!(data["PAYMENT_CONSUMER_GROUP"], "team.shop.payment");
        assert_eq!(data["INVENTORY_CONSUMER_GROUP"], "team.shop.inventory");
        let topics: Vec<String> = topics(&external()).into_iter().map(|t| t.name).collect();
        assert_eq!(
            topics,
            [
                "team.shop.checkout-events",
                "team.shop.checkout-events.dlq",
                "team.shop.order-events",
                "team.shop.order-events.dlq",
            ],
            "every consumed topic has its dead-letter topic"
        );
        assert_eq!(data["CART_REDIS_URL"], "redis://cache:6379");
        assert!(!data.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
        assert!(!data.contains_key("GATEWAY_TRUSTED_PROXIES"));
        assert!(data.values().all(|v| !v.contains("password")));

        let mut behind_ingress = external();
        behind_ingress.spec.gateway.trusted_proxies = vec!["10.0.0.0/8".into(), "fd00::/8".into()];
        let data = config_data(&behind_ingress);
        assert_eq!(data["GATEWAY_TRUSTED_PROXIES"], "10.0.0.0/8,fd00::/8");
    }

    #[test]
    fn autoscaling_makes_an_hpa_and_leaves_replicas_to_it() {
        let mut sf = external();
        sf.spec.services.cart.autoscaling = Some(AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 5,
            target_cpu_utilization_percentage: 70,
        });
        let children = desired(&sf, &inputs());
        let hpa = find(&children, ChildKind::HorizontalPodAutoscaler, "shop-cart");
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["maxReplicas"], 5);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "shop-cart");
        let deployment = find(&children, ChildKind::Deployment, "shop-cart");
        assert!(deployment["spec"].get("replicas").is_none());
    }

    #[test]
    fn managed_mode_adds_statefulsets_and_points_at_them() {
        let mut sf = external();
        sf.spec.postgres = PostgresSpec {
            managed: Some(ManagedStore::default()),
            external: None,
        };
        sf.spec.redis = RedisSpec {
            managed: Some(ManagedStore::default()),
            external: None,
        };
        sf.spec.kafka.external = None;
        sf.spec.kafka.managed = Some(ManagedStore {
            storage: Some("5Gi".into()),
            ..ManagedStore::default()
        });
        let children = desired(&sf, &inputs());
        for store in ["postgres", "redis", "kafka"] {
            let name = format!("shop-{store}");
            let set = find(&children, ChildKind::StatefulSet, &name);
            assert_eq!(set["spec"]["replicas"], 1);
            assert_eq!(
                find(&children, ChildKind::Service, &name)["spec"]["clusterIP"],
                "None"
            );
        }
        let kafka = find(&children, ChildKind::StatefulSet, "shop-kafka");
        assert_eq!(
            kafka["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "5Gi"
        );
        let data = config_data(&sf);
        assert_eq!(data["CART_KAFKA_BOOTSTRAP"], "shop-kafka.team.svc:9092");
        assert_eq!(data["CART_REDIS_URL"], "redis://shop-redis.team.svc:6379");
        assert_eq!(
            postgres_host(&sf),
            ("shop-postgres.team.svc".to_owned(), 5432)
        );
    }

    #[test]
    fn only_the_gateway_takes_outside_traffic() {
        let children = desired(&external(), &inputs());
        let internal = find(&children, ChildKind::NetworkPolicy, "shop-internal");
        assert_eq!(
            internal["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
            "shop"
        );
        let gateway = find(&children, ChildKind::NetworkPolicy, "shop-gateway");
        assert_eq!(
            gateway["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "gateway"
        );
        assert_eq!(gateway["spec"]["ingress"][0]["ports"][0]["port"], 8080);
        assert!(gateway["spec"]["ingress"][0].get("from").is_none());
    }

    #[test]
    fn every_built_object_has_the_shape_of_its_kind() {
        use k8s_openapi::api::{apps, autoscaling, core, networking, policy};
        let mut sf = external();
        sf.spec.services.orders.autoscaling = Some(AutoscalingSpec {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_utilization_percentage: 80,
        });
        sf.spec.kafka.external = None;
        sf.spec.kafka.managed = Some(ManagedStore::default());
        for child in desired(&sf, &inputs()) {
            let body = child.body.clone();
            let parsed = match child.kind {
                ChildKind::ConfigMap => {
                    serde_json::from_value::<core::v1::ConfigMap>(body).map(|_| ())
                }
                ChildKind::Secret => serde_json::from_value::<core::v1::Secret>(body).map(|_| ()),
                ChildKind::Service => serde_json::from_value::<core::v1::Service>(body).map(|_| ()),
                ChildKind::Deployment => {
                    serde_json::from_value::<apps::v1::Deployment>(body).map(|_| ())
                }
                ChildKind::StatefulSet => {
                    serde_json::from_value::<apps::v1::StatefulSet>(body).map(|_| ())
                }
                ChildKind::PodDisruptionBudget => {
                    serde_json::from_value::<policy::v1::PodDisruptionBudget>(body).map(|_| ())
                }
                ChildKind::HorizontalPodAutoscaler => {
                    serde_json::from_value::<autoscaling::v2::HorizontalPodAutoscaler>(body)
                        .map(|_| ())
                }
                ChildKind::NetworkPolicy => {
                    serde_json::from_value::<networking::v1::NetworkPolicy>(body).map(|_| ())
                }
                ChildKind::Ingress => {
                    serde_json::from_value::<networking::v1::Ingress>(body).map(|_| ())
                }
            };
            assert!(
                parsed.is_ok(),
                "{:?} {}: {parsed:?}",
                child.kind,
                child.name
            );
            assert_eq!(child.body["kind"], child.kind.gvk().2);
        }
    }
}
