//! `storefront`: the one binary of the shop. `storefront <service>` runs one
//! service; `storefront all` runs every service in one process (development
//! and tests). Every flag has an environment fallback, listed in `--help`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use storefront_runtime::config::CommonConfig;
use storefront_runtime::telemetry::{self, ServiceTelemetry};
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
    /// The REST gateway (HTTP, default port 8080).
    Gateway(storefront_gateway::Config),
    /// The product catalog (gRPC, default port 50051).
    Product(storefront_product::Config),
    /// Carts (gRPC, default port 50052).
    Cart(storefront_cart::Config),
    /// Stock and reservations (gRPC, default port 50053); puts back the stock of cancelled orders.
    Inventory(InventoryArgs),
    /// The payment-provider simulator (gRPC, default port 50054); refunds cancelled orders.
    Payment(PaymentArgs),
    /// Orders, fed by CheckoutCompleted events (gRPC, default port 50055).
    Orders(storefront_orders::Config),
    /// The checkout saga and its outbox relay (gRPC, default port 50056).
    Checkout(storefront_checkout::Config),
    /// The web storefront a person uses (HTTP, default port 8081).
    Web(storefront_web::Config),
    /// Every service in one process, each on its own port.
    All(Box<AllConfig>),
    /// Asks gRPC servers for their health; exits 0 when every one answers SERVING.
    /// For container health checks and scripts, e.g. `storefront healthcheck http://127.0.0.1:50051`.
    Healthcheck(HealthcheckArgs),
    /// Prints a JWT for the REST API, signed (HS256) with the gateway's secret.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The user id (the token's `sub`).
    #[arg(long)]
    user: String,
    /// Adds the `admin` role.
    #[arg(long)]
    admin: bool,
    /// The HS256 secret the gateway verifies with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// How long the token is valid.
    #[arg(long, default_value = "24h", value_parser = storefront_runtime::config::parse_duration)]
    ttl: std::time::Duration,
}

#[derive(Debug, clap::Args)]
struct HealthcheckArgs {
    /// Server URIs: a gRPC server (`http://127.0.0.1:50053`) is asked
    /// grpc.health.v1; a URI with a path (`http://127.0.0.1:8080/readyz`)
    /// gets an HTTP GET that must answer 2xx.
    #[arg(required = true)]
    servers: Vec<String>,
    /// How long to wait for each answer.
    #[arg(long, default_value = "2s", value_parser = storefront_runtime::config::parse_duration)]
    timeout: std::time::Duration,
}

/// Checks every server's overall health; the first that is not healthy is the error.
async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    for server in &args.servers {
        if let Some((authority, path)) = http_target(server) {
            let status = tokio::time::timeout(args.timeout, http_status(authority, path))
                .await
                .map_err(|_| anyhow::anyhow!("{server}: no answer within {:?}", args.timeout))?
                .with_context(|| format!("{server}: no HTTP answer"))?;
            anyhow::ensure!((200..300).contains(&status), "{server}: HTTP {status}");
            continue;
        }
        let channel = storefront_runtime::client::plain_channel(server, args.timeout)?;
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

/// `http://host:port/path` → (`host:port`, `/path`) when there is a path.
fn http_target(server: &str) -> Option<(&str, &str)> {
    let rest = server.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    let (authority, path) = rest.split_at(slash);
    (path.len() > 1).then_some((authority, path))
}

/// The status code of `GET path` on `authority` (HTTP/1.1, one request).
async fn http_status(authority: &str, path: &str) -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() && !head[..read].contains(&b'\n') {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    status_code(&String::from_utf8_lossy(&head[..read]))
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer"))
}

/// The code of an HTTP status line (`HTTP/1.1 200 OK`).
fn status_code(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// The inventory's settings and where it hears of cancelled orders.
#[derive(Debug, clap::Args)]
struct InventoryArgs {
    #[command(flatten)]
    service: storefront_inventory::Config,
    #[command(flatten)]
    order_events: storefront_inventory::OrderEventsConfig,
}

/// The payment service's settings and where it hears of cancelled orders.
#[derive(Debug, clap::Args)]
struct PaymentArgs {
    #[command(flatten)]
    service: storefront_payment::Config,
    #[command(flatten)]
    order_events: storefront_payment::OrderEventsConfig,
}

impl InventoryArgs {
    fn into_service(self) -> Service {
        let listen = self.service.listen;
        Service::new("inventory", listen, self, |args, listener, shutdown| {
            storefront_inventory::run_with_order_events(
                args.service,
                args.order_events,
                listener,
                shutdown,
            )
        })
    }
}

impl PaymentArgs {
    fn into_service(self) -> Service {
        let listen = self.service.listen;
        Service::new("payment", listen, self, |args, listener, shutdown| {
            storefront_payment::run_with_order_events(
                args.service,
                args.order_events,
                listener,
                shutdown,
            )
        })
    }
}

#[derive(Debug, clap::Args)]
struct AllConfig {
    #[command(flatten)]
    gateway: storefront_gateway::Config,
    #[command(flatten)]
    product: storefront_product::Config,
    #[command(flatten)]
    cart: storefront_cart::Config,
    #[command(flatten)]
    inventory: InventoryArgs,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    orders: storefront_orders::Config,
    #[command(flatten)]
    checkout: storefront_checkout::Config,
    #[command(flatten)]
    web: storefront_web::Config,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<(), StartError>> + Send>>;

/// A service ready to run: its name, its address, and how to run it on a listener.
struct Service {
    name: &'static str,
    listen: SocketAddr,
    run: Box<dyn FnOnce(TcpListener, Shutdown) -> ServiceFuture + Send>,
}

impl Service {
    fn new<C, F, Fut>(name: &'static str, listen: SocketAddr, config: C, run: F) -> Service
    where
        C: Send + 'static,
        F: FnOnce(C, TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StartError>> + Send + 'static,
    {
        Service {
            name,
            listen,
            run: Box::new(move |listener, shutdown| Box::pin(run(config, listener, shutdown))),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();

    use storefront_cart as cart;
    use storefront_checkout as checkout;
    use storefront_gateway as gateway;
    use storefront_orders as orders;
    use storefront_product as product;
    // One service alone may take its name from OTEL_SERVICE_NAME.
    let alone = !matches!(cli.command, Command::All(_));
    let services = match cli.command {
        Command::Gateway(c) => vec![Service::new("gateway", c.listen, c, gateway::run)],
        Command::Product(c) => vec![Service::new("product", c.listen, c, product::run)],
        Command::Cart(c) => vec![Service::new("cart", c.listen, c, cart::run)],
        Command::Inventory(c) => vec![c.into_service()],
        Command::Payment(c) => vec![c.into_service()],
        Command::Orders(c) => vec![Service::new("orders", c.listen, c, orders::run)],
        Command::Checkout(c) => vec![Service::new("checkout", c.listen, c, checkout::run)],
        Command::Web(c) => vec![Service::new("web", c.listen, c, storefront_web::run)],
        Command::All(all) => {
            let AllConfig {
                gateway: g,
                product: p,
                cart: c,
                inventory: i,
                payment: pay,
                orders: o,
                checkout: ch,
                web: w,
            } = *all;
            vec![
                Service::new("product", p.listen, p, product::run),
                i.into_service(),
                pay.into_service(),
                Service::new("cart", c.listen, c, cart::run),
                Service::new("orders", o.listen, o, orders::run),
                Service::new("checkout", ch.listen, ch, checkout::run),
                Service::new("gateway", g.listen, g, gateway::run),
                Service::new("web", w.listen, w, storefront_web::run),
            ]
        }
        Command::Healthcheck(args) => {
            telemetry::init(cli.common.log.log_format, &cli.common.log.log_level)?;
            return healthcheck(args).await;
        }
        Command::Token(args) => {
            telemetry::init(cli.common.log.log_format, &cli.common.log.log_level)?;
            let token = gateway::token(&args.secret, &args.user, args.admin, args.ttl)?;
            println!("{token}");
            return Ok(());
        }
    };
    let (format, filter) = (cli.common.log.log_format, cli.common.log.log_level.as_str());
    // The process's own lines (start, stop, metrics server) are logged, not traced.
    telemetry::init(format, filter)?;

    let shutdown = storefront_runtime::shutdown::on_signal_after(cli.common.shutdown_delay);
    let mut tasks: JoinSet<(&'static str, Result<(), StartError>)> = JoinSet::new();
    if let Some(addr) = cli.common.metrics_addr()? {
        // The recorder is installed before any service starts: what they
        // record while starting (their circuit breakers' first state) counts.
        let app = storefront_runtime::metrics::router()?;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            (
                "metrics",
                storefront_runtime::metrics::serve_router(addr, app, stop).await,
            )
        });
    }
    // Each service runs on its own runtime whose threads log and trace as that
    // service (its own `service.name`), also when they share the process.
    let mut runtimes = Vec::with_capacity(services.len());
    let mut telemetries = Vec::with_capacity(services.len());
    for service in services {
        let name = service.name;
        let service_name = format!("storefront-{name}");
        let from_env = alone && std::env::var_os("OTEL_SERVICE_NAME").is_some();
        let telemetry = ServiceTelemetry::new(
            (!from_env).then_some(service_name.as_str()),
            true,
            format,
            filter,
        )?;
        let listener = std::net::TcpListener::bind(service.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .with_context(|| format!("{name}: cannot listen on {}", service.listen))?;
        let runtime = telemetry
            .runtime(name)
            .with_context(|| format!("{name}: cannot start its runtime"))?;
        let stop = shutdown.clone();
        let run = service.run;
        let handle = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener)?;
            run(listener, stop).await
        });
        tasks.spawn(async move {
            let result = match handle.await {
                Ok(result) => result,
                Err(error) => Err(StartError::Config(format!("task panicked: {error}"))),
            };
            (name, result)
        });
        runtimes.push(ServiceRuntime(Some(runtime)));
        telemetries.push(telemetry);
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
    drop(runtimes);
    // Export the spans still buffered (blocking: off the async threads).
    let flushed = tokio::task::spawn_blocking(move || {
        for telemetry in &telemetries {
            telemetry.shutdown();
        }
    });
    if tokio::time::timeout(std::time::Duration::from_secs(5), flushed)
        .await
        .is_err()
    {
        tracing::warn!("trace export did not finish at shutdown");
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// A service's runtime, shut down without waiting for its tasks when it is
/// dropped. A plain `Runtime` dropped inside `main`'s async context panics,
/// which turned an early `?` return (e.g. a service that could not bind its
/// port while others already run) into exit code 101 with the error unprinted.
struct ServiceRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
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
    fn healthcheck_tells_http_targets_from_grpc_servers() {
        assert_eq!(
            http_target("http://127.0.0.1:8080/readyz"),
            Some(("127.0.0.1:8080", "/readyz"))
        );
        assert_eq!(http_target("http://127.0.0.1:50051"), None);
        assert_eq!(http_target("http://127.0.0.1:50051/"), None);
        assert_eq!(status_code("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code("HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code("SSH-2.0-OpenSSH\r\n"), None);
    }

    /// The README's configuration table lists exactly the flags there are.
    #[test]
    fn readme_documents_every_flag() {
        let readme = include_str!("../../../README.md");
        let documented: std::collections::BTreeSet<String> = readme
            .lines()
            .filter_map(|line| line.strip_prefix("| `--"))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_owned)
            .collect();
        let command = Cli::command();
        let all = command.find_subcommand("all").expect("the all subcommand");
        let actual: std::collections::BTreeSet<String> = command
            .get_arguments()
            .chain(all.get_arguments())
            .filter_map(|arg| arg.get_long())
            .filter(|long| !matches!(*long, "help" | "version"))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            documented, actual,
            "README configuration table vs. `storefront all --help`"
        );
    }

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
            "--payment-consumer-group",
            "refunds",
            "--inventory-order-topic",
            "orders-of-the-day",
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
            all.inventory.service.reservation_ttl,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(all.payment.service.failure_rate, 0.5);
        assert_eq!(all.payment.order_events.consumer_group, "refunds");
        assert_eq!(all.inventory.order_events.order_topic, "orders-of-the-day");
    }

    #[test]
    fn a_pool_too_small_to_serve_is_refused_at_start() {
        // The outbox relay keeps one of checkout's and orders' connections
        // for LISTEN: a pool of one would leave none for requests.
        for (flag, smallest) in [
            ("--checkout-db-max-connections", 2),
            ("--orders-db-max-connections", 2),
            ("--cart-db-max-connections", 1),
            ("--inventory-db-max-connections", 1),
            ("--payment-db-max-connections", 1),
            ("--product-db-max-connections", 1),
        ] {
            let too_small = (smallest - 1).to_string();
            let refused = Cli::try_parse_from(["storefront", "all", flag, too_small.as_str()]);
            let message = refused.expect_err(flag).to_string();
            assert!(
                message.contains(flag) && message.contains(&format!("{smallest}..")),
                "{message}"
            );
            let enough = smallest.to_string();
            assert!(
                Cli::try_parse_from(["storefront", "all", flag, enough.as_str()]).is_ok(),
                "{flag} {smallest}"
            );
        }
    }
}
