//! The `Storefront` custom resource (`shop.storefront.dev/v1alpha1`): what a
//! platform team declares, and the status the operator reports.
//!
//! The CRD in `crds/storefront.yaml` is generated from these types
//! (`storefront-operator crd`, `make crds`); the validation rules that depend
//! on more than one field are CEL rules here, so the API server refuses a bad
//! spec with the rule's message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole shop: its services, where its data lives, its Kafka topics.
#[allow(clippy::duplicated_attributes)] // `derive = …` twice is kube's syntax
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "shop.storefront.dev",
    version = "v1alpha1",
    kind = "Storefront",
    namespaced,
    shortname = "sf",
    category = "storefront",
    status = "StorefrontStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Storefront shop: seven services behind a REST gateway and the web storefront in front of it, their PostgreSQL databases, Redis and Kafka topics.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Gateway",
        type_ = "string",
        json_path = ".status.gatewayAddress"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontSpec {
    /// The one `storefront` image every service runs (with its subcommand).
    #[serde(default)]
    pub image: ImageSpec,
    /// Replicas, resources and autoscaling per service.
    #[serde(default)]
    pub services: ServicesSpec,
    /// How the REST gateway is exposed and what it enforces.
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// The web storefront: its public URL and how people sign in.
    #[serde(default)]
    pub web: WebSpec,
    /// PostgreSQL: one database and one login role per service.
    pub postgres: PostgresSpec,
    /// Redis, the cart cache.
    pub redis: RedisSpec,
    /// Kafka and the shop's topics.
    pub kafka: KafkaSpec,
    /// OpenTelemetry export; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
    /// When true the operator leaves every child as it is (no apply, no
    /// pruning, no SQL, no topic changes) and reports `Paused`.
    #[serde(default)]
    pub paused: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    #[serde(default = "default_repository")]
    pub repository: String,
    /// Defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_repository(),
            tag: None,
            pull_policy: None,
        }
    }
}

fn default_repository() -> String {
    "ghcr.io/storefront-dev/storefront".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Per-service settings; every service has them, all optional.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicesSpec {
    #[serde(default)]
    pub gateway: ServiceSpec,
    #[serde(default)]
    pub product: ServiceSpec,
    #[serde(default)]
    pub cart: ServiceSpec,
    #[serde(default)]
    pub inventory: ServiceSpec,
    #[serde(default)]
    pub payment: ServiceSpec,
    #[serde(default)]
    pub orders: ServiceSpec,
    #[serde(default)]
    pub checkout: ServiceSpec,
    /// The web storefront (`storefront web`).
    #[serde(default)]
    pub web: ServiceSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pods when not autoscaled.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A HorizontalPodAutoscaler on CPU; `replicas` is then ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            replicas: 1,
            resources: None,
            autoscaling: None,
        }
    }
}

fn one() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas").message("autoscaling.maxReplicas must be at least autoscaling.minReplicas"))]
pub struct AutoscalingSpec {
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU utilisation to aim at, in percent of the request.
    #[serde(default = "default_cpu_target")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu_target() -> i32 {
    80
}

#[derive(Serialize, Deserialize, Clone, Debug, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.ingress) || self.serviceType == 'ClusterIP' || self.serviceType == 'NodePort'").message("gateway.ingress needs serviceType ClusterIP or NodePort"))]
#[x_kube(validation = Rule::new("!has(self.trustedProxies) || self.trustedProxies.all(p, isIP(p) || isCIDR(p))").message("gateway.trustedProxies holds IP addresses and CIDRs such as 10.0.0.0/8"))]
pub struct GatewaySpec {
    #[serde(default)]
    pub service_type: GatewayServiceType,
    #[serde(default = "default_gateway_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// The Secret key holding the HS256 secret the gateway verifies tokens
    /// with. When absent the operator generates one (`<name>-jwt`, key
    /// `secret`) once and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsSpec>,
    /// Proxies in front of the gateway (addresses or CIDRs, e.g. the ingress
    /// controller's pod network) whose `X-Forwarded-For` it believes for the
    /// per-address rate limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    pub trusted_proxies: Vec<String>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            service_type: GatewayServiceType::default(),
            port: default_gateway_port(),
            ingress: None,
            jwt_secret_ref: None,
            rate_limits: None,
            trusted_proxies: Vec::new(),
        }
    }
}

fn default_gateway_port() -> i32 {
    8080
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum GatewayServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl GatewayServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayServiceType::ClusterIP => "ClusterIP",
            GatewayServiceType::NodePort => "NodePort",
            GatewayServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// A TLS Secret for `host`; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The web storefront, the pages people use (`storefront web`). It reaches
/// the gateway inside the cluster; browsers reach it through the Ingress
/// (`/`, the gateway at `/api`) or its Service `<name>-web`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.signIn) || !has(self.signIn.oidc) || has(self.publicUrl)").message("web.publicUrl is required with web.signIn.oidc (the redirect URI is <publicUrl>/auth/callback)"))]
pub struct WebSpec {
    /// The shop's URL as browsers see it, e.g. `https://shop.example.com`:
    /// the OIDC redirect URI is `<publicUrl>/auth/callback`, and an `https`
    /// URL makes the cookies `Secure`. When absent it is the Ingress's host
    /// (`https` with a TLS Secret), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^/?#]+(/[^?#]*)?$"), length(max = 2048))]
    pub public_url: Option<String>,
    /// How people sign in; neither way is on by default.
    #[serde(default)]
    pub sign_in: SignInSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignInSpec {
    /// The development sign-in: anyone types a name (and may tick "admin")
    /// and gets a token signed with the gateway's JWT secret. For trying
    /// the shop out, never for a shop with real customers.
    #[serde(default)]
    pub dev: bool,
    /// "Sign in with …" through an OpenID Connect provider (code flow with
    /// PKCE). The gateway then also accepts the provider's ID tokens
    /// (issuer `issuer`, audience `clientId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.scopes) || 'openid' in self.scopes").message("web.signIn.oidc.scopes must include openid"))]
pub struct OidcSpec {
    /// The provider's issuer URL (its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`).
    #[schemars(regex(pattern = r"^https?://.+"), length(max = 2048))]
    pub issuer: String,
    /// The client registered with the provider for `<publicUrl>/auth/callback`.
    #[schemars(length(min = 1, max = 253))]
    pub client_id: String,
    /// A Secret key holding the client secret of a confidential client;
    /// without it the web is a public client (PKCE only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// The scopes asked for; `openid profile email` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 128)))]
    pub scopes: Vec<String>,
    /// The provider's name on the sign-in button ("Sign in with …");
    /// `your account` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub provider_name: Option<String>,
}

/// Token buckets: a sustained rate per second and a burst, per user and per
/// client address. Absent fields keep the gateway's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub per_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub per_user_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub per_ip: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub per_ip_burst: Option<i64>,
}

/// Exactly one of `managed` and `external`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("postgres needs exactly one of managed and external"))]
pub struct PostgresSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalPostgres>,
}

/// A StatefulSet the operator runs, with a volume of its own.
#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStore {
    /// The volume's size (a Kubernetes quantity); `1Gi` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// The server's image; a pinned upstream image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// What happens to the volume, and so to the data, when the Storefront
    /// is deleted. `Delete` (the default): it goes with the Storefront
    /// (the StatefulSet's `persistentVolumeClaimRetentionPolicy`), so a
    /// Storefront deleted and made again starts from empty stores.
    /// `Retain`: the volume stays (PVC `data-<name>-<store>-0`), and for
    /// PostgreSQL so does its admin Secret `<name>-postgres-admin`, owned by
    /// no one; a Storefront of the same name in the same namespace takes
    /// both up again. Delete them by hand when you mean it.
    #[serde(default = "delete_with_the_storefront")]
    pub deletion_policy: DeletionPolicy,
}

impl Default for ManagedStore {
    fn default() -> Self {
        Self {
            storage: None,
            storage_class_name: None,
            image: None,
            resources: None,
            deletion_policy: delete_with_the_storefront(),
        }
    }
}

fn delete_with_the_storefront() -> DeletionPolicy {
    DeletionPolicy::Delete
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPostgres {
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// A Secret with a role that may create databases and roles (keys
    /// `username` and `password`).
    pub admin_secret_name: String,
    /// `disable`, `prefer` or `require`; `prefer` when absent. `prefer`
    /// uses TLS when the server offers it, `require` refuses to go on
    /// without; as with libpq, neither verifies the server's certificate.
    /// The operator and every service connect this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(disable|prefer|require)$"))]
    pub ssl_mode: Option<String>,
}

fn default_postgres_port() -> i32 {
    5432
}

/// Exactly one of `managed` and `external`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("redis needs exactly one of managed and external"))]
pub struct RedisSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// `redis://host:port[/db]`, or `rediss://…` for TLS: the server's
    /// certificate is then verified against the image's system roots
    /// (`rediss://host:port/#insecure` skips that, e.g. for a self-signed
    /// certificate).
    #[schemars(regex(pattern = r"^rediss?://.+"))]
    pub url: String,
}

/// Exactly one of `managed` (a single-node KRaft broker) and `external`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, KubeSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("kafka needs exactly one of managed and external"))]
#[x_kube(validation = Rule::new("!has(self.managed) || ((!has(self.topics.checkout.replicationFactor) || self.topics.checkout.replicationFactor == 1) && (!has(self.topics.order.replicationFactor) || self.topics.order.replicationFactor == 1))").message("a managed Kafka has one broker: topics.*.replicationFactor must be 1"))]
pub struct KafkaSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalKafka>,
    #[serde(default)]
    pub topics: TopicsSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalKafka {
    /// `host:port[,host:port…]`.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicsSpec {
    /// The checkout events (and, with one partition, its dead-letter topic).
    #[serde(default)]
    pub checkout: TopicSpec,
    /// The order events.
    #[serde(default)]
    pub order: TopicSpec,
    /// What happens to the topics of an external Kafka when the Storefront
    /// is deleted: `Retain` (the default) keeps them; `Delete` deletes them
    /// first (a finalizer; a broker that stays unreachable is given up on
    /// after the operator's `--cleanup-timeout`, with a Warning Event naming
    /// the topics left). A managed broker's topics are on its volume and
    /// follow `kafka.managed.deletionPolicy`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Partitions only grow: a smaller number is reported, not applied.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub replication_factor: Option<i32>,
    /// Topic configuration (`retention.ms`, …), set when the topic is made.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self {
            partitions: default_partitions(),
            replication_factor: None,
            config: BTreeMap::new(),
        }
    }
}

fn default_partitions() -> i32 {
    3
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Kept when the Storefront is deleted.
    #[default]
    Retain,
    /// Deleted with the Storefront.
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// An OTLP endpoint, e.g. `http://otel-collector.observability:4317`.
    #[schemars(regex(pattern = r"^https?://.+"))]
    pub otlp_endpoint: String,
    /// `grpc` (default) or `http/protobuf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(grpc|http/protobuf)$"))]
    pub protocol: Option<String>,
    /// The fraction of traces sampled (parent-based), 0 to 1.
    #[serde(default = "default_sampling_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
}

fn default_sampling_ratio() -> f64 {
    1.0
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `DatabasesReady`, `TopicsReady`, `ServicesAvailable`,
    /// `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Available replicas per service Deployment.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceStatus>,
    /// Where the REST API answers, e.g. `shop-gateway.default.svc:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_address: Option<String>,
    /// Where the web storefront answers inside the cluster, e.g.
    /// `shop-web.default.svc:8081`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_address: Option<String>,
    /// The Kafka topics and their partitions, as last seen on the broker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub replicas: i32,
    pub available_replicas: i32,
}

/// The CRD as YAML, as `crds/storefront.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let crd = Storefront::crd();
    let body = serde_yaml::to_string(&crd)?;
    Ok(format!(
        "# Generated by `storefront-operator crd` from operator/src/crd.rs (make crds). Do not edit.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crds/storefront.yaml` is what the types generate: run `make crds`
    /// after changing them.
    #[test]
    fn the_checked_in_crd_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/storefront.yaml");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        let generated = crd_yaml().unwrap_or_default();
        assert!(
            checked_in == generated,
            "crds/storefront.yaml is stale or missing: run `make crds`"
        );
    }

    #[test]
    fn the_crd_has_the_contracted_names_columns_and_subresources() {
        let crd = Storefront::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("storefronts.shop.storefront.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["sf".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Ready", "Reason", "Gateway", "Age"]);
    }
}
