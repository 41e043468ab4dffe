//! `storefront-bench`: the load generator behind `make bench`. It drives a
//! running shop through the REST gateway — browsing, cart writes and reads,
//! checkouts — and measures throughput, latency percentiles, the lag from a
//! checkout's 201 to its order being readable, the peak memory of the shop's
//! processes, and, as this machine's reference, pgbench on the same
//! PostgreSQL. It prints a summary and writes everything as JSON.

mod lag;
mod machine;
mod reference;
mod sink;
mod wrk;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "storefront-bench",
    about = "Load generator for the Storefront REST gateway"
)]
struct Args {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// The web storefront's base URL (the catalog_page phase).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    web: String,
    /// The gateway's HS256 secret, to mint user tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// How long each phase runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent clients per phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Concurrent clients in the checkout phase.
    #[arg(long, default_value_t = 32)]
    checkout_concurrency: usize,
    /// Phases to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "products,catalog_page,cart,checkout"
    )]
    phases: Vec<String>,
    /// Processes whose peak resident memory is reported (the shop's).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// The checkout service's database, to measure the checkout->order lag.
    #[arg(long)]
    checkout_database_url: Option<String>,
    /// The orders service's database, to measure the checkout->order lag.
    #[arg(long)]
    orders_database_url: Option<String>,
    /// A PostgreSQL URL for the pgbench reference run; skipped when absent.
    #[arg(long)]
    pgbench_url: Option<String>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/latest.json")]
    out: std::path::PathBuf,
    /// Instead of a load test: an OTLP/gRPC trace sink on this address that
    /// accepts and counts spans until SIGTERM (the tracing-on run's collector).
    #[arg(long)]
    otlp_sink: Option<std::net::SocketAddr>,
    /// Instead of a load test: the bare axum reference for GET
    /// /api/v1/products on this address, until stopped.
    #[arg(long)]
    reference_server: Option<std::net::SocketAddr>,
    /// A running reference (`--reference-server`): the products phase then
    /// alternates the gateway and it, `--reference-rounds` times each.
    #[arg(long)]
    reference: Option<String>,
    /// The reference's process, pinned like the shop's during GET phases.
    #[arg(long)]
    reference_pid: Option<u32>,
    /// Rounds of gateway and reference in the products phase.
    #[arg(long, default_value_t = 3)]
    reference_rounds: usize,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {text:?}")),
    }
}

/// Latencies in microseconds and the count of failed operations of one phase.
struct Recorder {
    latencies: Histogram<u64>,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
}

impl Recorder {
    fn new() -> anyhow::Result<Self> {
        Ok(Recorder {
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            errors: 0,
            statuses: BTreeMap::new(),
        })
    }

    fn merge(&mut self, other: &Recorder) -> anyhow::Result<()> {
        self.latencies.add(&other.latencies)?;
        self.errors += other.errors;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        Ok(())
    }

    fn record(&mut self, took: Duration, status: u16, ok: bool) {
        let micros = took.as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.latencies.record(micros);
        *self.statuses.entry(status).or_default() += 1;
        if !ok {
            self.errors += 1;
        }
    }

    fn report(&self, name: &str, elapsed: Duration) -> Value {
        let ms = |q: f64| self.latencies.value_at_quantile(q) as f64 / 1000.0;
        let ops = self.latencies.len();
        json!({
            "phase": name,
            "operations": ops,
            "errors": self.errors,
            "statuses": self.statuses,
            "seconds": elapsed.as_secs_f64(),
            "throughput_per_s": ops as f64 / elapsed.as_secs_f64(),
            "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": self.latencies.max() as f64 / 1000.0 },
        })
    }
}

struct Shop {
    http: reqwest::Client,
    base: String,
    web: String,
    secret: String,
}

impl Shop {
    fn token(&self, user: &str) -> anyhow::Result<String> {
        Ok(storefront_gateway::token(
            &self.secret,
            user,
            false,
            Duration::from_secs(3600),
        )?)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let response = request.bearer_auth(token).send().await?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// What one operation reports: its HTTP status, whether it succeeded, and the
/// latency to record when only part of it is the measured call.
type Outcome = (u16, bool, Option<Duration>);

/// Runs `clients` copies of `operation` until `duration` passes; each call of
/// `operation` is one measured operation.
async fn phase<F, Fut>(
    name: &str,
    clients: usize,
    duration: Duration,
    operation: F,
) -> anyhow::Result<Value>
where
    F: Fn(usize, u64, Arc<Shop>) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    anyhow::ensure!(clients > 0, "a phase needs at least one client");
    let shop = SHOP.get().context("shop not set")?.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let (stop, shop, operation) = (stop.clone(), shop.clone(), operation.clone());
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::new()?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, ok, measured) = operation(client, n, shop.clone()).await;
                recorder.record(measured.unwrap_or_else(|| t.elapsed()), status, ok);
                n += 1;
            }
            anyhow::Ok(recorder)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Recorder::new()?;
    for task in tasks {
        total.merge(&task.await??)?;
    }
    let report = total.report(name, started.elapsed());
    print_phase(&report, "");
    Ok(report)
}

/// One line per phase: throughput, p50, p99, errors (and `note`).
fn print_phase(report: &Value, note: &str) {
    println!(
        "{:<10} {:>9.0} op/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}{note}",
        report["phase"].as_str().unwrap_or("?"),
        report["throughput_per_s"].as_f64().unwrap_or(0.0),
        report["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        report["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        report["errors"]
    );
}

static SHOP: std::sync::OnceLock<Arc<Shop>> = std::sync::OnceLock::new();
static RUN: AtomicU64 = AtomicU64::new(0);

fn user(prefix: &str, client: usize, n: u64) -> String {
    format!(
        "bench-{}-{prefix}-{client}-{n}",
        RUN.load(Ordering::Relaxed)
    )
}

/// GET /api/v1/products with wrk: alone, or, with a reference, alternating
/// the gateway and the bare axum endpoint `rounds` times each. The phase
/// reports the gateway's median round, and `products_vs_reference` the ratio
/// of the medians.
async fn products_phase(args: &Args, pinning: &wrk::Pinning) -> anyhow::Result<(Value, Value)> {
    let shop = SHOP.get().context("shop not set")?;
    let url = format!("{}/api/v1/products", shop.base);
    let Some(reference) = &args.reference else {
        return Ok((
            pinning.run("products", &url, args.concurrency, args.duration)?,
            Value::Null,
        ));
    };
    let reference_url = format!("{}/api/v1/products", reference.trim_end_matches('/'));
    let same_body = same_products(&shop.http, &url, &reference_url).await?;
    let (mut gateway, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..args.reference_rounds.max(1) {
        gateway.push(pinning.run("products", &url, args.concurrency, args.duration)?);
        bare.push(pinning.run("reference", &reference_url, args.concurrency, args.duration)?);
    }
    let rate = |p: &Value| p["throughput_per_s"].as_f64().unwrap_or(0.0);
    let median = |rounds: &[Value]| {
        let mut sorted: Vec<&Value> = rounds.iter().collect();
        sorted.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        sorted[sorted.len() / 2].clone()
    };
    let (g, b) = (median(&gateway), median(&bare));
    let ratio = if rate(&b) > 0.0 {
        rate(&g) / rate(&b)
    } else {
        0.0
    };
    println!(
        "GET /products vs bare axum: {ratio:.2} of the reference's throughput (target >= 0.50); medians {:.0} vs {:.0} req/s",
        rate(&g),
        rate(&b)
    );
    let comparison = json!({
        "ratio": ratio,
        "target": 0.5,
        "met": ratio >= 0.5,
        "gateway_per_s": gateway.iter().map(rate).collect::<Vec<_>>(),
        "reference_per_s": bare.iter().map(rate).collect::<Vec<_>>(),
        "reference_median": b,
        "same_products_json": same_body,
        "reference": "bare axum 0.8 Router, one handler building the five seed products per request (storefront-bench --reference-server)",
    });
    Ok((g, comparison))
}

/// Whether the gateway and the reference answer the same products (the
/// reference's shape and size are only fair if so); a difference is printed.
async fn same_products(
    http: &reqwest::Client,
    gateway: &str,
    reference: &str,
) -> anyhow::Result<bool> {
    let get = |url: &str| {
        let request = http.get(url);
        async move {
            anyhow::Ok(
                request
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<Value>()
                    .await?,
            )
        }
    };
    let (a, b) = (get(gateway).await?, get(reference).await?);
    let same = a["products"] == b["products"];
    if !same {
        println!("warning: the reference's products differ from the gateway's:\n{a}\n{b}");
    }
    Ok(same)
}

/// The web storefront's catalog page (HTML), as a first-time visitor gets it.
async fn catalog_page(args: &Args, pinning: &wrk::Pinning) -> anyhow::Result<Value> {
    let shop = SHOP.get().context("shop not set")?;
    let page = shop
        .http
        .get(format!("{}/", shop.web))
        .send()
        .await?
        .text()
        .await?;
    anyhow::ensure!(
        page.contains("Laptop"),
        "the catalog page shows no Laptop:\n{page}"
    );
    pinning.run(
        "catalog_page",
        &format!("{}/", shop.web),
        args.concurrency,
        args.duration,
    )
}

/// The catalog page beside the API's GET /products of the same run: the
/// ratio of their throughputs and the page's p99, against the targets.
fn page_vs_api(phases: &[Value]) -> Value {
    let find = |name: &str| phases.iter().find(|p| p["phase"] == name);
    let (Some(api), Some(page)) = (find("products"), find("catalog_page")) else {
        return Value::Null;
    };
    let rate = |p: &Value| p["throughput_per_s"].as_f64().unwrap_or(0.0);
    let ratio = if rate(api) > 0.0 {
        rate(page) / rate(api)
    } else {
        0.0
    };
    let p99 = page["latency_ms"]["p99"].as_f64().unwrap_or(f64::INFINITY);
    println!(
        "catalog page vs GET /products: {ratio:.2} of the API's throughput (target >= 0.50), page p99 {p99:.1} ms (target <= 50 ms)"
    );
    json!({
        "ratio": ratio,
        "ratio_target": 0.5,
        "page_p99_ms": p99,
        "page_p99_target_ms": 50.0,
        "met": ratio >= 0.5 && p99 <= 50.0,
    })
}

/// A measured figure beside its target (issue 14), printed as it is made.
fn target(name: &str, value: f64, relation: &str, bound: f64) -> Value {
    let met = match relation {
        ">=" => value >= bound,
        _ => value <= bound,
    };
    println!(
        "target     {name:<34} {value:>9.2} {relation} {bound:<7} {}",
        if met { "met" } else { "MISSED" }
    );
    json!({ "measure": name, "value": value, "target": format!("{relation} {bound}"), "met": met })
}

/// The checkout phase's figures against their targets: 300 checkouts/s
/// with p99 <= 150 ms at 32 clients, and the order within 100 ms at p99.
fn checkout_targets(phases: &[Value]) -> Vec<Value> {
    let Some(checkout) = phases.iter().find(|p| p["phase"] == "checkout") else {
        return Vec::new();
    };
    let mut targets = vec![
        target(
            "checkout throughput (/s)",
            checkout["throughput_per_s"].as_f64().unwrap_or(0.0),
            ">=",
            300.0,
        ),
        target(
            "checkout p99 (ms)",
            checkout["latency_ms"]["p99"]
                .as_f64()
                .unwrap_or(f64::INFINITY),
            "<=",
            150.0,
        ),
    ];
    if let Some(lag) = checkout["order_lag_ms"]["p99"].as_f64() {
        targets.push(target("checkout -> order p99 (ms)", lag, "<=", 100.0));
    }
    targets
}

/// One cart add followed by one cart read, for a user per client.
async fn cart(client: usize, n: u64, shop: Arc<Shop>) -> Outcome {
    let user = user("cart", client, 0);
    let Ok(token) = shop.token(&user) else {
        return (0, false, None);
    };
    let product = 1 + (n % 5);
    let add = shop
        .http
        .post(format!("{}/api/v1/cart/items", shop.base))
        .json(&json!({"product_id": product, "quantity": 1}));
    let added = match shop.send(add, &token).await {
        Ok((201, _)) => true,
        // A full line (99) is reset so the loop can go on.
        Ok((400, _)) => {
            let clear = shop.http.delete(format!("{}/api/v1/cart", shop.base));
            let _ = shop.send(clear, &token).await;
            true
        }
        Ok((status, _)) => return (status, false, None),
        Err(_) => return (0, false, None),
    };
    match shop
        .send(shop.http.get(format!("{}/api/v1/cart", shop.base)), &token)
        .await
    {
        Ok((status, _)) => (status, added && status == 200, None),
        Err(_) => (0, false, None),
    }
}

/// A fresh user adds one item and checks out; only the checkout call is timed.
async fn checkout(client: usize, n: u64, shop: Arc<Shop>) -> Outcome {
    let user = user("checkout", client, n);
    let Ok(token) = shop.token(&user) else {
        return (0, false, None);
    };
    let add = shop
        .http
        .post(format!("{}/api/v1/cart/items", shop.base))
        .json(&json!({"product_id": 1 + (n % 5), "quantity": 1}));
    if !matches!(shop.send(add, &token).await, Ok((201, _))) {
        return (0, false, None);
    }
    let pay = shop
        .http
        .post(format!("{}/api/v1/checkout", shop.base))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"payment_method": "pm_card_visa"}));
    let t = Instant::now();
    let (status, body) = match shop.send(pay, &token).await {
        Ok(answer) => answer,
        Err(_) => return (0, false, None),
    };
    let took = t.elapsed();
    let ok = status == 201 && body["status"] == "COMPLETED";
    (status, ok, Some(took))
}

/// Peak resident memory (VmHWM, kB) of each process.
fn peak_rss_kib(pids: &[u32]) -> BTreeMap<u32, u64> {
    pids.iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((*pid, kib))
        })
        .collect()
}

/// pgbench's TPC-B-like run on a scratch database, as the machine's reference.
fn pgbench(url: &str) -> anyhow::Result<Value> {
    let init = std::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", url])
        .output()?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let run = std::process::Command::new("pgbench")
        .args(["-c", "8", "-j", "2", "-T", "10", url])
        .output()?;
    let text = String::from_utf8_lossy(&run.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .context("pgbench printed no tps")?;
    println!("pgbench    {tps:>9.0} tps (TPC-B-like, 8 clients, scale 10)");
    Ok(json!({ "tps": tps, "clients": 8, "scale": 10, "seconds": 10 }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.otlp_sink {
        return sink::serve(addr).await;
    }
    if let Some(addr) = args.reference_server {
        return reference::serve(addr).await;
    }
    RUN.store(
        chrono::Utc::now().timestamp_millis() as u64,
        Ordering::Relaxed,
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    let shop = Arc::new(Shop {
        http,
        base: args.gateway.trim_end_matches('/').to_owned(),
        web: args.web.trim_end_matches('/').to_owned(),
        secret: args.jwt_secret.clone(),
    });
    if SHOP.set(shop).is_err() {
        bail!("shop set twice");
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinning = wrk::Pinning::new(
        cpus,
        args.pids
            .iter()
            .copied()
            .chain(args.reference_pid)
            .collect(),
    );
    let before_load = machine::busy_before_load(Duration::from_secs(2)).await;
    let mut phases = Vec::new();
    let mut products_vs_reference = Value::Null;
    for name in &args.phases {
        let report = match name.as_str() {
            "products" => {
                let (report, comparison) = products_phase(&args, &pinning).await?;
                products_vs_reference = comparison;
                report
            }
            "catalog_page" => catalog_page(&args, &pinning).await?,
            "cart" => phase("cart", args.concurrency, args.duration, cart).await?,
            "checkout" => {
                let mut report = phase(
                    "checkout",
                    args.checkout_concurrency,
                    args.duration,
                    checkout,
                )
                .await?;
                if let (Some(checkouts), Some(orders)) =
                    (&args.checkout_database_url, &args.orders_database_url)
                {
                    let run = format!("bench-{}-checkout-", RUN.load(Ordering::Relaxed));
                    report["order_lag_ms"] = lag::order_lag(checkouts, orders, &run).await?;
                }
                report
            }
            other => bail!("unknown phase {other:?} (products, catalog_page, cart, checkout)"),
        };
        phases.push(report);
    }

    let catalog_page_vs_api = page_vs_api(&phases);
    let mut targets = checkout_targets(&phases);
    let rss = peak_rss_kib(&args.pids);
    let total_mib = rss.values().sum::<u64>() as f64 / 1024.0;
    println!(
        "peak RSS   {total_mib:>9.1} MiB over {} process(es)",
        rss.len()
    );
    targets.push(target("peak RSS, whole shop (MiB)", total_mib, "<=", 150.0));
    if let Some(ratio) = products_vs_reference["ratio"].as_f64() {
        targets.push(target("GET /products / bare axum", ratio, ">=", 0.5));
    }
    let pgbench = match &args.pgbench_url {
        Some(url) => pgbench(url)?,
        None => Value::Null,
    };
    let report = json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "machine": { "cpus": cpus, "before_load": before_load },
        "pinning": pinning.describe(),
        "settings": { "duration_s": args.duration.as_secs_f64(), "concurrency": args.concurrency, "checkout_concurrency": args.checkout_concurrency },
        "phases": phases,
        "products_vs_reference": products_vs_reference,
        "catalog_page_vs_api": catalog_page_vs_api,
        "targets": targets,
        "peak_rss_mib": { "total": total_mib, "per_pid_kib": rss },
        "pgbench": pgbench,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", args.out.display());
    Ok(())
}
