//! Running the operator: configuration, the HTTP endpoint (`/metrics`,
//! `/healthz`, `/readyz`), optional leader election, the controller, and a
//! graceful stop on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::children::OperatorPods;
use crate::controller::{self, Context, Settings};
use crate::crd::Storefront;
use crate::leader::LeaderElection;

#[derive(Clone, Debug, clap::Args)]
pub struct OperatorConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Only Storefronts in this namespace (all namespaces when unset).
    #[arg(long, env = "OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Reconcile only while holding a Lease (for more than one replica).
    #[arg(long, env = "OPERATOR_LEADER_ELECT")]
    pub leader_elect: bool,
    /// The Lease's namespace (the operator's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(
        long,
        env = "OPERATOR_LEASE_NAME",
        default_value = "storefront-operator"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events (the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Storefronts reconciled at once.
    #[arg(long, env = "OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Triggers for one Storefront within this window make one reconcile
    /// (a rollout moves a Deployment's status many times).
    #[arg(long, env = "OPERATOR_DEBOUNCE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub debounce: std::time::Duration,
    /// The namespace of the operator's own pods (the downward API's, in
    /// the chart): the managed stores' NetworkPolicy lets the operator in
    /// from there. Unset (outside the cluster): only the shop's pods.
    #[arg(long, env = "POD_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Labels that select the operator's own pods, `key=value,...` (the
    /// chart passes its selector labels); empty: any pod of
    /// `--operator-namespace`.
    #[arg(long, env = "OPERATOR_POD_LABELS", default_value = "", value_parser = OperatorPods::parse_labels)]
    pub operator_pod_labels: BTreeMap<String, String>,
    /// How long deleting a Storefront whose external Kafka topics go with
    /// it (`deletionPolicy: Delete`) keeps retrying an unreachable broker
    /// before it gives up on the topics (Warning Event `TopicsLeft`).
    #[arg(long, env = "OPERATOR_CLEANUP_TIMEOUT", default_value = "2m", value_parser = humantime::parse_duration)]
    pub cleanup_timeout: std::time::Duration,
}

impl OperatorConfig {
    /// What reconciling needs to know of where the operator runs. In a pod
    /// the kubelet always sets `KUBERNETES_SERVICE_HOST`.
    pub fn settings(&self) -> Settings {
        Settings {
            operator_pods: self
                .operator_namespace
                .as_ref()
                .map(|namespace| OperatorPods {
                    namespace: namespace.clone(),
                    labels: self.operator_pod_labels.clone(),
                }),
            in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
            cleanup_timeout: self.cleanup_timeout,
        }
    }
}

/// The HTTP endpoint: metrics, liveness and readiness. A standby replica
/// (waiting for the Lease) is ready too: it takes over when the leader goes,
/// and rollouts of more than one replica must not wait for it.
async fn serve_http(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = storefront_runtime::metrics::router()?
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ready" }));
    storefront_runtime::metrics::serve_router(addr, app, shutdown).await?;
    Ok(())
}

/// Runs the operator until `shutdown` (or until it loses its Lease).
pub async fn run(
    config: OperatorConfig,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let http = tokio::spawn(serve_http(config.listen, shutdown.clone()));

    let identity = config
        .identity
        .clone()
        .unwrap_or_else(|| format!("storefront-operator-{}", std::process::id()));
    let election = config.leader_elect.then(|| {
        LeaderElection::new(
            client.clone(),
            &config.lease_namespace,
            &config.lease_name,
            &identity,
        )
    });
    if let Some(election) = &election {
        tracing::info!(lease = %config.lease_name, %identity, "waiting for the Lease");
        tokio::select! {
            () = election.acquire() => tracing::info!(%identity, "leading"),
            () = shutdown.cancelled() => return Ok(()),
        }
    }

    let (storefronts, deployments, statefulsets) = match &config.watch_namespace {
        Some(ns) => (
            Api::<Storefront>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let children =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=storefront-operator");
    let context = Arc::new(Context::new(
        client.clone(),
        Some(identity),
        config.settings(),
    ));
    let stop = shutdown.clone();
    let controller = Controller::new(storefronts, watcher::Config::default())
        .owns(deployments, children.clone())
        .owns(statefulsets, children)
        .with_config(
            ControllerConfig::default()
                .concurrency(config.concurrency)
                .debounce(config.debounce),
        )
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(controller::reconcile, controller::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile");
            }
        });
    tracing::info!("controller running");

    let lost = async {
        match &election {
            Some(election) => election.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = controller => {}
        () = lost => {
            shutdown.cancel();
            anyhow::bail!("lost the Lease: stopping so that only one replica reconciles");
        }
    }
    if let Some(election) = &election {
        election.release().await;
    }
    shutdown.cancel();
    let _ = http.await;
    tracing::info!("operator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: OperatorConfig,
    }

    #[test]
    fn the_operator_learns_its_own_pods_from_the_chart_s_flags() {
        let cli = Cli::try_parse_from([
            "storefront-operator",
            "--operator-namespace",
            "storefront-system",
            "--operator-pod-labels",
            "app.kubernetes.io/name=storefront-operator,app.kubernetes.io/instance=ops",
            "--cleanup-timeout",
            "30s",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let settings = cli.config.settings();
        let pods = settings.operator_pods.unwrap_or_default();
        assert_eq!(pods.namespace, "storefront-system");
        assert_eq!(pods.labels["app.kubernetes.io/instance"], "ops");
        assert_eq!(settings.cleanup_timeout, std::time::Duration::from_secs(30));
        assert_eq!(cli.config.lease_namespace, "default");
        assert!(
            Cli::try_parse_from(["storefront-operator", "--operator-pod-labels", "x"]).is_err()
        );
    }
}
