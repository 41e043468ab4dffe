//! The managed stores: PostgreSQL, Redis and a single-node KRaft Kafka,
//! each a one-replica StatefulSet with a volume and a headless Service.
//!
//! Nothing of the shop's own release is in them: their labels carry the
//! store's version, not the shop's, so upgrading the shop never restarts
//! its databases. Their volumes go with the Storefront, or stay, as the
//! store's `deletionPolicy` says (`persistentVolumeClaimRetentionPolicy`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::config::postgres_admin_secret_name;
use super::connections::postgres_max_connections;
use super::{
    Child, ChildKind, MANAGED_BY, NameStr, label_value, labelled_object, namespace, selector_labels,
};
use crate::crd::{DeletionPolicy, ManagedStore, Storefront};
use crate::names;

/// The image every managed store runs when the spec names none.
pub const POSTGRES_IMAGE: &str = "postgres:17.6";
pub const REDIS_IMAGE: &str = "redis:8.2";
pub const KAFKA_IMAGE: &str = "apache/kafka:4.1.0";

/// A managed store as the other builders see it.
pub(super) struct Store {
    /// `app.kubernetes.io/component`, and the `<name>-<component>` of its
    /// StatefulSet and Service.
    pub component: &'static str,
    /// The server's port.
    pub port: i32,
    /// Whether the operator talks to it (databases and roles; topics).
    pub operator_reaches: bool,
}

pub(super) const POSTGRES: Store = Store {
    component: "postgres",
    port: 5432,
    operator_reaches: true,
};
pub(super) const REDIS: Store = Store {
    component: "redis",
    port: 6379,
    operator_reaches: false,
};
pub(super) const KAFKA: Store = Store {
    component: "kafka",
    port: 9092,
    operator_reaches: true,
};
pub(super) const STORES: [Store; 3] = [POSTGRES, REDIS, KAFKA];

/// How one store's server runs.
struct Server<'a> {
    store: Store,
    default_image: &'a str,
    data_path: &'static str,
    env: Vec<Value>,
    args: Vec<Value>,
    probe: Value,
    run_as: i64,
}

/// The version of an image reference: its tag (`postgres:17.6` → `17.6`),
/// none for a bare name or a digest.
fn image_version(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, tag)| tag)
}

/// A store's labels: the standard ones, with the store's own version (its
/// image's tag) rather than the shop's.
fn store_labels(sf: &Storefront, component: &str, image: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(sf, component);
    labels.insert("app.kubernetes.io/part-of".into(), "storefront".into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    if let Some(version) = image_version(image).map(label_value)
        && !version.is_empty()
    {
        labels.insert("app.kubernetes.io/version".into(), version);
    }
    labels
}

fn store(sf: &Storefront, managed: &ManagedStore, server: Server<'_>) -> [Child; 2] {
    let component = server.store.component;
    let port = server.store.port;
    let name = names::child(sf.name_any_str(), component);
    let image = managed.image.as_deref().unwrap_or(server.default_image);
    let labels = store_labels(sf, component, image);
    let mut container = json!({
        "name": component,
        "image": image,
        "ports": [{ "name": "server", "containerPort": port, "protocol": "TCP" }],
        "env": server.env,
        "readinessProbe": server.probe,
        "securityContext": {
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "volumeMounts": [{ "name": "data", "mountPath": server.data_path }],
    });
    if !server.args.is_empty() {
        container["args"] = json!(server.args);
    }
    if let Some(resources) = &managed.resources {
        container["resources"] = json!(resources);
    }
    // Unchanged from the first version on purpose: a StatefulSet's volume
    // claim templates cannot be changed once it exists.
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
    let when_deleted = match managed.deletion_policy {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Retain => "Retain",
    };
    let statefulset = labelled_object(
        sf,
        ChildKind::StatefulSet,
        &name,
        &labels,
        json!({ "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": { "matchLabels": selector_labels(sf, component) },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": server.run_as,
                        "runAsGroup": server.run_as,
                        "fsGroup": server.run_as,
                    },
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [claim],
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": when_deleted,
                "whenScaled": "Retain",
            },
        }}),
    );
    let service = labelled_object(
        sf,
        ChildKind::Service,
        &name,
        &labels,
        json!({ "spec": {
            "clusterIP": "None",
            "selector": selector_labels(sf, component),
            "ports": [{ "name": "server", "port": port, "targetPort": "server", "protocol": "TCP" }],
        }}),
    );
    [statefulset, service]
}

pub(super) fn managed_stores(sf: &Storefront) -> Vec<Child> {
    let mut children = vec![];
    if let Some(managed) = &sf.spec.postgres.managed {
        let admin = postgres_admin_secret_name(sf);
        children.extend(store(
            sf,
            managed,
            Server {
                store: POSTGRES,
                default_image: POSTGRES_IMAGE,
                data_path: "/var/lib/postgresql/data",
                env: vec![
                    json!({ "name": "POSTGRES_USER", "valueFrom": { "secretKeyRef": { "name": admin, "key": "username" } } }),
                    json!({ "name": "POSTGRES_PASSWORD", "valueFrom": { "secretKeyRef": { "name": admin, "key": "password" } } }),
                    json!({ "name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata" }),
                ],
                // Sized for every pool of the shop (see `connections`); the
                // image's entrypoint passes flags on to `postgres`.
                args: vec![
                    json!("-c"),
                    json!(format!("max_connections={}", postgres_max_connections(sf))),
                ],
                probe: json!({ "exec": { "command": ["pg_isready", "-U", "postgres"] }, "periodSeconds": 5 }),
                run_as: 999,
            },
        ));
    }
    if let Some(managed) = &sf.spec.redis.managed {
        children.extend(store(
            sf,
            managed,
            Server {
                store: REDIS,
                default_image: REDIS_IMAGE,
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
            Server {
                store: KAFKA,
                default_image: KAFKA_IMAGE,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_s_version_is_its_image_tag() {
        assert_eq!(image_version("postgres:17.6"), Some("17.6"));
        assert_eq!(
            image_version("registry.local:5000/apache/kafka:4.1.0"),
            Some("4.1.0")
        );
        assert_eq!(image_version("registry.local:5000/redis"), None);
        assert_eq!(image_version("redis@sha256:abcd"), None);
        assert_eq!(image_version("redis:8.2@sha256:abcd"), Some("8.2"));
    }
}
