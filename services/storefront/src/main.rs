//! `storefront`: the one binary of the shop. `storefront <service>` runs one
//! service; `storefront all` runs every service in one process (development
//! and tests). Every flag has an environment fallback, listed in `--help`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use storefront_runtime::config::CommonConfig;
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
#[command(
    name = "storefront",
    version,
    about = "Storefront: an e-commerce platform of gRPC services"
)]
struct Cli {
    #[command(flatten)]
    common: CommonConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The product catalog (gRPC, default port 50051).
    Product(storefront_product::Config),
    /// Stock and reservations (gRPC, default port 50053).
    Inventory(storefront_inventory::Config),
    /// The payment-provider simulator (gRPC, default port 50054).
    Payment(storefront_payment::Config),
    /// Every service in one process, each on its own port.
    All(Box<AllConfig>),
    /// Asks gRPC servers for their health; exits 0 when every one answers SERVING.
    /// For container health checks and scripts, e.g. `storefront healthcheck http://127.0.0.1:50051`.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, clap::Args)]
struct HealthcheckArgs {
    /// Server URIs, e.g. `http://127.0.0.1:50053`.
    #[arg(required = true)]
    servers: Vec<String>,
    /// How long to wait for each answer.
    #[arg(long, default_value = "2s", value_parser = storefront_runtime::config::parse_duration)]
    timeout: std::time::Duration,
}

/// Checks every server's overall health; the first that is not SERVING is the error.
async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    for server in &args.servers {
        let channel = storefront_runtime::client::channel(server, args.timeout)?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .with_context(|| format!("{server}: no health answer"))?;
        let status = answer.into_inner().status;
        anyhow::ensure!(
            status == ServingStatus::Serving as i32,
            "{server}: {:?}",
            ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown)
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct AllConfig {
    #[command(flatten)]
    product: storefront_product::Config,
    #[command(flatten)]
    inventory: storefront_inventory::Config,
    #[command(flatten)]
    payment: storefront_payment::Config,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<(), StartError>> + Send>>;

/// A service ready to run: its name, its address, and how to run it on a listener.
struct Service {
    name: &'static str,
    listen: SocketAddr,
    run: Box<dyn FnOnce(TcpListener, Shutdown) -> ServiceFuture + Send>,
}

fn product(config: storefront_product::Config) -> Service {
    Service {
        name: "product",
        listen: config.listen,
        run: Box::new(move |l, s| Box::pin(storefront_product::run(config, l, s))),
    }
}

fn inventory(config: storefront_inventory::Config) -> Service {
    Service {
        name: "inventory",
        listen: config.listen,
        run: Box::new(move |l, s| Box::pin(storefront_inventory::run(config, l, s))),
    }
}

fn payment(config: storefront_payment::Config) -> Service {
    Service {
        name: "payment",
        listen: config.listen,
        run: Box::new(move |l, s| Box::pin(storefront_payment::run(config, l, s))),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    storefront_runtime::telemetry::init(cli.common.log_format, &cli.common.log_level)?;

    let services = match cli.command {
        Command::Product(c) => vec![product(c)],
        Command::Inventory(c) => vec![inventory(c)],
        Command::Payment(c) => vec![payment(c)],
        Command::All(all) => {
            let AllConfig {
                product: p,
                inventory: i,
                payment: pay,
            } = *all;
            vec![product(p), inventory(i), payment(pay)]
        }
        Command::Healthcheck(args) => return healthcheck(args).await,
    };

    let shutdown = storefront_runtime::shutdown::on_signal();
    let mut tasks: JoinSet<(&'static str, Result<(), StartError>)> = JoinSet::new();
    if let Some(addr) = cli.common.metrics_addr()? {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            (
                "metrics",
                storefront_runtime::metrics::serve(addr, stop).await,
            )
        });
    }
    for service in services {
        let listener = TcpListener::bind(service.listen)
            .await
            .with_context(|| format!("{}: cannot listen on {}", service.name, service.listen))?;
        let run = (service.run)(listener, shutdown.clone());
        let name = service.name;
        tasks.spawn(async move { (name, run.await) });
    }

    // The first service to stop (an error, or the signal) stops the rest.
    let mut failure = None;
    if let Some(joined) = tasks.join_next().await {
        failure = outcome(joined);
    }
    shutdown.cancel();
    let grace = cli.common.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = tasks.join_next().await {
            if let Some(error) = outcome(joined) {
                failure.get_or_insert(error);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; abandoning unfinished work"
        );
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Logs how a task ended; returns the error when it failed.
fn outcome(
    joined: Result<(&'static str, Result<(), StartError>), tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((name, Err(error))) => {
            tracing::error!(service = name, %error, "service failed");
            Some(anyhow::Error::new(error).context(format!("{name} failed")))
        }
        Err(error) => {
            tracing::error!(%error, "service task panicked");
            Some(anyhow::Error::new(error).context("service task panicked"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_has_distinct_flags() {
        Cli::command().debug_assert();
    }

    #[test]
    fn all_takes_every_service_flag() {
        let cli = Cli::try_parse_from([
            "storefront",
            "all",
            "--product-listen",
            "127.0.0.1:1",
            "--inventory-reservation-ttl",
            "2s",
            "--payment-failure-rate",
            "0.5",
        ]);
        let Ok(Cli {
            command: Command::All(all),
            ..
        }) = cli
        else {
            panic!("`storefront all` did not parse: {cli:?}");
        };
        assert_eq!(all.product.listen, SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(
            all.inventory.reservation_ttl,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(all.payment.failure_rate, 0.5);
    }
}
