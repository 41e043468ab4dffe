//! The managed stores: PostgreSQL, Redis and a single-node KRaft Kafka,
//! each a one-replica StatefulSet with a volume and a headless Service.

use serde_json::{Value, json};

use super::config::postgres_admin_secret_name;
use super::{Child, ChildKind, NameStr, labels, namespace, object, selector_labels};
use crate::crd::{ManagedStore, Storefront};
use crate::names;

/// The image every managed store runs when the spec names none.
pub const POSTGRES_IMAGE: &str = "postgres:17.6";
pub const REDIS_IMAGE: &str = "redis:8.2";
pub const KAFKA_IMAGE: &str = "apache/kafka:4.1.0";

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

pub(super) fn managed_stores(sf: &Storefront) -> Vec<Child> {
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
