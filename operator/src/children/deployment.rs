//! One Deployment per service: `storefront <service>`, its probes (HTTP
//! for the gateway and the web, gRPC health for the rest), the hardened
//! security context, only its own Secrets in its environment.

use serde_json::{Value, json};

use super::config::{
    WEB_SESSION_SECRET_KEY, config_data, config_hash, database_secret_name, web_session_secret_name,
};
use super::connections::database_pools;
use super::{
    CONFIG_HASH_ANNOTATION, Child, ChildKind, NameStr, SecretInputs, image, labels, listen_port,
    object, selector_labels, service_spec,
};
use crate::crd::Storefront;
use crate::names::{self, METRICS_PORT, ServiceKind};

/// The user the shop's containers run as (the image's non-root user).
const RUN_AS_USER: i64 = 65532;
/// Startup probes every 5 s, this many times: five minutes.
const STARTUP_PROBE_FAILURES: i32 = 60;

fn container_security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

pub(super) fn service_deployment(
    sf: &Storefront,
    service: ServiceKind,
    inputs: &SecretInputs,
) -> Child {
    let name = names::child(sf.name_any_str(), service.name);
    let config_name = names::child(sf.name_any_str(), "config");
    let spec = service_spec(sf, service);
    let port = listen_port(sf, service);
    let mut env = vec![];
    let mut secrets = vec![];
    let mut secret_env = |name: &str, secret: &str, key: &str| {
        env.push(json!({
            "name": name,
            "valueFrom": { "secretKeyRef": { "name": secret, "key": key } },
        }));
        secrets.push(secret.to_owned());
    };
    if service.database {
        let secret = database_secret_name(sf, service);
        secret_env(
            &format!("{}_DATABASE_URL", service.env_prefix()),
            &secret,
            "url",
        );
    }
    let sign_in = &sf.spec.web.sign_in;
    // The gateway verifies the shop's HS256 tokens; the web signs them only
    // for the development sign-in, so only then does it hold the secret.
    if service.is_gateway() || (service.is_web() && sign_in.dev) {
        let (secret, key) = &inputs.jwt;
        secret_env("JWT_SECRET", secret, key);
    }
    if service.is_web() {
        let session = web_session_secret_name(sf);
        secret_env("WEB_SESSION_KEY", &session, WEB_SESSION_SECRET_KEY);
        if let Some(reference) = sign_in
            .oidc
            .as_ref()
            .and_then(|o| o.client_secret_ref.as_ref())
        {
            secret_env("WEB_OIDC_CLIENT_SECRET", &reference.name, &reference.key);
        }
    }
    if service.is_gateway()
        && let Some(oidc) = &sign_in.oidc
    {
        // The provider's ID tokens the web forwards, for this client only.
        env.push(json!({ "name": "OIDC_ISSUER", "value": oidc.issuer }));
        env.push(json!({ "name": "OIDC_AUDIENCE", "value": oidc.client_id }));
    }
    // Each pod's share of a managed PostgreSQL's connections.
    if let Some(pool) = database_pools(sf).and_then(|pools| pools.get(service.name).copied()) {
        env.push(json!({
            "name": format!("{}_DB_MAX_CONNECTIONS", service.env_prefix()),
            "value": pool.to_string(),
        }));
    }
    // The name the traces of `storefront <service>` carry everywhere else.
    env.push(json!({
        "name": "OTEL_SERVICE_NAME",
        "value": format!("storefront-{}", service.name),
    }));
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let hash = config_hash(&config_data(sf), &secret_refs, inputs);
    // A service serves (and answers its health check) only once its
    // database is reachable and migrated, which on a shop's first start
    // waits for a new PostgreSQL: the startup probe gives it up to five
    // minutes before liveness takes over.
    let check = if service.is_http() {
        json!({ "httpGet": { "path": "/healthz", "port": "http" } })
    } else {
        json!({ "grpc": { "port": port } })
    };
    let probe = |check: &Value, period: i32, failures: i32| {
        let mut probe = check.clone();
        probe["periodSeconds"] = json!(period);
        probe["failureThreshold"] = json!(failures);
        probe
    };
    let readiness = if service.is_http() {
        probe(
            &json!({ "httpGet": { "path": "/readyz", "port": "http" } }),
            5,
            3,
        )
    } else {
        probe(&check, 5, 3)
    };
    let liveness = probe(&check, 10, 3);
    let startup = probe(&check, 5, STARTUP_PROBE_FAILURES);
    let port_name = if service.is_http() { "http" } else { "grpc" };
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
        "startupProbe": startup,
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
