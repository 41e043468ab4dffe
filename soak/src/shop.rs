//! The shop as one `storefront <service>` process per service, on fixed
//! loopback ports, each logging to its own file. A supervisor restarts any
//! process that exits without the chaos loop having killed it (as a
//! Deployment would) and counts it; the chaos loop kills and revives
//! processes through [`Shop::kill`] and [`Shop::revive`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// Every service, in start order (the gateway last: it waits for no one, but
/// its readiness says the others are up).
pub const SERVICES: [&str; 7] = [
    "product",
    "inventory",
    "payment",
    "cart",
    "orders",
    "checkout",
    "gateway",
];

#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// The `storefront` binary.
    pub bin: PathBuf,
    /// Where each process's log and the catalog's SQLite file go.
    pub data_dir: PathBuf,
    /// The gateway listens here; the services on the next six ports.
    pub base_port: u16,
    /// A URL of the PostgreSQL server; each service gets its own database on it.
    pub pg_admin_url: String,
    pub redis_url: String,
    pub kafka_bootstrap: String,
    pub jwt_secret: String,
}

struct Process {
    child: Option<Child>,
    /// Killed on purpose: the supervisor leaves it down.
    down: bool,
}

pub struct Shop {
    config: ShopConfig,
    args: HashMap<&'static str, Vec<String>>,
    processes: Mutex<HashMap<&'static str, Process>>,
    unplanned: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Shop {
    pub fn new(config: ShopConfig) -> anyhow::Result<Shop> {
        let args = service_args(&config)?;
        std::fs::create_dir_all(config.data_dir.join("logs"))
            .with_context(|| format!("create {}", config.data_dir.display()))?;
        Ok(Shop {
            config,
            args,
            processes: Mutex::new(HashMap::new()),
            unplanned: std::sync::Mutex::default(),
        })
    }

    pub fn addr(&self, service: &str) -> SocketAddr {
        let offset = SERVICES
            .iter()
            .rev()
            .position(|s| *s == service)
            .unwrap_or(0);
        SocketAddr::from(([127, 0, 0, 1], self.config.base_port + offset as u16))
    }

    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.addr("gateway"))
    }

    fn spawn(&self, service: &'static str) -> anyhow::Result<Child> {
        let log_path = self
            .config
            .data_dir
            .join("logs")
            .join(format!("{service}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
        Command::new(&self.config.bin)
            .args(&self.args[service])
            // Seven processes cannot share the default metrics port.
            .env("METRICS_LISTEN", "off")
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", level)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C at the terminal stops the
            // soak's load, not the shop under it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {} {service}", self.config.bin.display()))
    }

    pub async fn start(&self) -> anyhow::Result<()> {
        let mut processes = self.processes.lock().await;
        for service in SERVICES {
            let child = self.spawn(service)?;
            processes.insert(
                service,
                Process {
                    child: Some(child),
                    down: false,
                },
            );
        }
        Ok(())
    }

    /// Waits until the gateway's /readyz answers 200 (every backend up).
    pub async fn wait_ready(&self, http: &reqwest::Client, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let url = format!("{}/readyz", self.gateway_url());
        loop {
            if let Ok(answer) = http.get(&url).send().await
                && answer.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the shop was not ready within {within:?} (logs in {})",
                self.config.data_dir.join("logs").display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// SIGKILL, as a crash or an OOM kill would; the process stays down until revived.
    pub async fn kill(&self, service: &'static str) -> anyhow::Result<()> {
        let mut processes = self.processes.lock().await;
        let process = processes.get_mut(service).context("unknown service")?;
        process.down = true;
        if let Some(mut child) = process.child.take() {
            child.start_kill().ok();
            child.wait().await.ok();
        }
        Ok(())
    }

    /// Starts a killed service again and waits (bounded) until its port answers.
    pub async fn revive(&self, service: &'static str) -> anyhow::Result<bool> {
        {
            let mut processes = self.processes.lock().await;
            let process = processes.get_mut(service).context("unknown service")?;
            process.child = Some(self.spawn(service)?);
            process.down = false;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(self.addr(service))
                .await
                .is_ok()
            {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(false)
    }

    /// Restarts (within half a second) every process that died on its own.
    pub async fn supervise(&self, stop: Arc<AtomicBool>) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Checked after the sleep: the shop may be stopping by now, and
            // its processes' exits are then no crash to restart.
            if stop.load(Ordering::Acquire) {
                return;
            }
            let mut processes = self.processes.lock().await;
            for (service, process) in processes.iter_mut() {
                if process.down {
                    continue;
                }
                let exited = match process.child.as_mut() {
                    Some(child) => child.try_wait().ok().flatten().is_some(),
                    None => true,
                };
                if !exited {
                    continue;
                }
                if let Ok(mut unplanned) = self.unplanned.lock() {
                    *unplanned.entry((*service).to_owned()).or_default() += 1;
                }
                eprintln!("soak: {service} exited on its own; restarting it");
                process.child = self.spawn(service).ok();
            }
        }
    }

    pub fn unplanned_exits(&self) -> BTreeMap<String, u64> {
        self.unplanned.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// SIGTERM to every process, then SIGKILL to those still up after `grace`.
    pub async fn stop(&self, grace: Duration) {
        let mut processes = self.processes.lock().await;
        for process in processes.values() {
            if let Some(pid) = process.child.as_ref().and_then(Child::id) {
                // tokio offers only SIGKILL; a graceful stop is `kill -TERM`.
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        let deadline = Instant::now() + grace;
        for process in processes.values_mut() {
            if let Some(mut child) = process.child.take() {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, child.wait()).await.is_err() {
                    child.start_kill().ok();
                    child.wait().await.ok();
                }
            }
        }
    }
}

/// Each service's command line: its subcommand, where it listens, its
/// database and peers, and the rate limits lifted (the load is a few hundred
/// users from one address). Everything else is the shop's default, and can
/// be changed through the services' environment variables.
fn service_args(config: &ShopConfig) -> anyhow::Result<HashMap<&'static str, Vec<String>>> {
    let port = |service: &str| {
        let offset = SERVICES
            .iter()
            .rev()
            .position(|s| *s == service)
            .unwrap_or(0);
        format!("127.0.0.1:{}", config.base_port + offset as u16)
    };
    let url = |service: &str| format!("http://{}", port(service));
    let db = |service: &str| crate::facts::with_database(&config.pg_admin_url, service);
    let catalog = format!(
        "sqlite://{}?mode=rwc",
        config.data_dir.join("catalog.db").display()
    );
    let kafka = config.kafka_bootstrap.as_str();
    let redis = config.redis_url.as_str();
    let lines: [(&'static str, Vec<String>); 7] = [
        (
            "product",
            vec![
                "--product-listen".into(),
                port("product"),
                "--product-database-url".into(),
                catalog,
            ],
        ),
        (
            "inventory",
            vec![
                "--inventory-listen".into(),
                port("inventory"),
                "--inventory-database-url".into(),
                db("inventory")?,
            ],
        ),
        (
            "payment",
            vec![
                "--payment-listen".into(),
                port("payment"),
                "--payment-database-url".into(),
                db("payment")?,
            ],
        ),
        (
            "cart",
            vec![
                "--cart-listen".into(),
                port("cart"),
                "--cart-database-url".into(),
                db("cart")?,
                "--cart-redis-url".into(),
                redis.into(),
                "--cart-product-url".into(),
                url("product"),
                "--cart-kafka-bootstrap".into(),
                kafka.into(),
            ],
        ),
        (
            "orders",
            vec![
                "--orders-listen".into(),
                port("orders"),
                "--orders-database-url".into(),
                db("orders")?,
                "--orders-kafka-bootstrap".into(),
                kafka.into(),
            ],
        ),
        (
            "checkout",
            vec![
                "--checkout-listen".into(),
                port("checkout"),
                "--checkout-database-url".into(),
                db("checkout")?,
                "--checkout-cart-url".into(),
                url("cart"),
                "--checkout-product-url".into(),
                url("product"),
                "--checkout-inventory-url".into(),
                url("inventory"),
                "--checkout-payment-url".into(),
                url("payment"),
                "--checkout-kafka-bootstrap".into(),
                kafka.into(),
            ],
        ),
        (
            "gateway",
            vec![
                "--gateway-listen".into(),
                port("gateway"),
                "--gateway-product-url".into(),
                url("product"),
                "--gateway-cart-url".into(),
                url("cart"),
                "--gateway-checkout-url".into(),
                url("checkout"),
                "--gateway-orders-url".into(),
                url("orders"),
                "--jwt-secret".into(),
                config.jwt_secret.clone(),
                "--gateway-rate-limit-per-user".into(),
                "0".into(),
                "--gateway-rate-limit-per-ip".into(),
                "0".into(),
            ],
        ),
    ];
    Ok(lines
        .into_iter()
        .map(|(service, mut flags)| {
            flags.insert(0, service.to_owned());
            (service, flags)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_takes_the_base_port_and_the_services_the_next_ones() {
        let shop = Shop::new(ShopConfig {
            bin: "storefront".into(),
            data_dir: std::env::temp_dir().join("storefront-soak-unit"),
            base_port: 16080,
            pg_admin_url: "postgres://u:p@127.0.0.1:1/postgres".into(),
            redis_url: "redis://127.0.0.1:2".into(),
            kafka_bootstrap: "127.0.0.1:3".into(),
            jwt_secret: "s".into(),
        });
        let Ok(shop) = shop else {
            panic!("shop config");
        };
        assert_eq!(shop.addr("gateway").port(), 16080);
        assert_eq!(shop.addr("product").port(), 16086);
        let ports: std::collections::BTreeSet<u16> =
            SERVICES.iter().map(|s| shop.addr(s).port()).collect();
        assert_eq!(ports.len(), 7);
        assert_eq!(shop.args["cart"][0], "cart");
        assert!(shop.args["checkout"].contains(&"postgres://u:p@127.0.0.1:1/checkout".to_owned()));
    }
}
