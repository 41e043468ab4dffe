//! Running the operator: configuration, the HTTP endpoint (`/metrics`,
//! `/healthz`, `/readyz`), optional leader election, the controller, and a
//! graceful stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::controller::{self, Context};
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
    let context = Arc::new(Context::new(client.clone(), Some(identity)));
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
