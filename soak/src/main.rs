//! `storefront-soak`: the chaos soak behind `make soak`. It starts the shop
//! as one process per service (or attaches to a running gateway), sets the
//! stock, drives checkouts through the gateway while the chaos loop kills
//! and restarts services, PostgreSQL, Redis and Kafka, waits for the shop to
//! settle, checks the invariants, and writes the report. Exit 1 when an
//! invariant fails, 2 when the soak itself could not run.

mod chaos;
mod driver;
mod shop;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use storefront_runtime::config::parse_duration;
use storefront_soak::facts::{self, Databases};
use storefront_soak::invariants::Outcome;
use storefront_soak::report::{self, Faults, Report, Settle};
use storefront_soak::{EVENT_TOPICS, Target, client_log};

#[derive(Debug, Parser)]
#[command(name = "storefront-soak", about = "Chaos soak of the Storefront shop")]
struct Args {
    /// The `storefront` binary: the soak starts one process per service with it.
    #[arg(long, env = "STOREFRONT_BIN", conflicts_with = "gateway")]
    storefront_bin: Option<PathBuf>,
    /// Instead: the gateway of a shop already running (no service is killed then).
    #[arg(long)]
    gateway: Option<String>,
    /// A URL of the PostgreSQL server with the service databases.
    #[arg(long, env = "DATABASE_ADMIN_URL")]
    pg_admin_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:56379")]
    redis_url: String,
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:59092"
    )]
    kafka_bootstrap: String,
    /// The gateway's HS256 secret (made up when the soak starts the shop).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Process logs, the catalog's SQLite file and the client log go here.
    #[arg(long, default_value = ".data/soak/run")]
    data_dir: PathBuf,
    /// The gateway's port; the six services take the next ones.
    #[arg(long, default_value_t = 16080)]
    base_port: u16,
    /// Carts to check out.
    #[arg(long, default_value_t = 10_000)]
    checkouts: u64,
    /// No new cart after this long.
    #[arg(long, default_value = "40m", value_parser = parse_duration)]
    duration: Duration,
    /// Clients at once.
    #[arg(long, default_value_t = 24)]
    concurrency: usize,
    /// Users in all (spread over the clients).
    #[arg(long, default_value_t = 240)]
    users: usize,
    /// Share of checkouts paid with a declining test card.
    #[arg(long, default_value_t = 0.15)]
    decline_ratio: f64,
    /// Share of checkouts raced by an edit of the same cart.
    #[arg(long, default_value_t = 0.2)]
    race_ratio: f64,
    /// Units per product at start (`1=40,2=500,...`), or `auto` (scarce
    /// laptops, the rest scaled to the number of checkouts), or `keep`.
    #[arg(long, default_value = "auto")]
    stock: String,
    /// A fault every this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    fault_every: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    down_min: Duration,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    down_max: Duration,
    /// No faults at all (a baseline run).
    #[arg(long)]
    no_chaos: bool,
    /// `<script> kill|start postgres|redis|kafka` for infrastructure faults.
    #[arg(long)]
    infra_ctl: Option<PathBuf>,
    /// How long the shop may take to settle after the load before the checks.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    settle: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The report.
    #[arg(long, default_value = "bench/results/soak.json")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("storefront-soak: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let run_id = format!("{:x}", chrono::Utc::now().timestamp());
    let started_at = chrono::Utc::now().to_rfc3339();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;
    let jwt_secret = match (&args.jwt_secret, &args.storefront_bin) {
        (Some(secret), _) => secret.clone(),
        (None, Some(_)) => format!("soak-secret-{}", uuid::Uuid::new_v4().simple()),
        (None, None) => anyhow::bail!("attaching to a shop needs its --jwt-secret"),
    };
    let databases = Databases::on_server(&args.pg_admin_url, "")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;

    // The shop: ours, one process per service, or someone else's gateway.
    let shop = match &args.storefront_bin {
        Some(bin) => {
            let shop = Arc::new(shop::Shop::new(shop::ShopConfig {
                bin: bin.clone(),
                data_dir: args.data_dir.clone(),
                base_port: args.base_port,
                pg_admin_url: args.pg_admin_url.clone(),
                redis_url: args.redis_url.clone(),
                kafka_bootstrap: args.kafka_bootstrap.clone(),
                jwt_secret: jwt_secret.clone(),
            })?);
            eprintln!(
                "soak: starting the shop, one process per service (logs in {})",
                args.data_dir.join("logs").display()
            );
            shop.start().await?;
            Some(shop)
        }
        None => None,
    };
    let gateway = match (&shop, &args.gateway) {
        (Some(shop), _) => shop.gateway_url(),
        (None, Some(url)) => url.trim_end_matches('/').to_owned(),
        (None, None) => {
            anyhow::bail!("give --storefront-bin (start the shop) or --gateway (attach)")
        }
    };
    let result = soak(
        &args,
        &run_id,
        &started_at,
        &jwt_secret,
        &databases,
        shop.clone(),
        &gateway,
        &http,
    )
    .await;
    if let Some(shop) = &shop {
        shop.stop(Duration::from_secs(15)).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn soak(
    args: &Args,
    run_id: &str,
    started_at: &str,
    jwt_secret: &str,
    databases: &Databases,
    shop: Option<Arc<shop::Shop>>,
    gateway: &str,
    http: &reqwest::Client,
) -> anyhow::Result<bool> {
    let stop_supervisor = Arc::new(AtomicBool::new(false));
    if let Some(shop) = &shop {
        shop.wait_ready(http, Duration::from_secs(120)).await?;
        let (shop, stop) = (Arc::clone(shop), Arc::clone(&stop_supervisor));
        tokio::spawn(async move { shop.supervise(stop).await });
    } else {
        wait_gateway(http, gateway).await?;
    }
    let start_units = set_stock(&args.stock, args.checkouts, &databases.inventory).await?;
    eprintln!(
        "soak: stock at start {start_units:?}; driving {} checkouts for at most {:?}",
        args.checkouts, args.duration
    );

    let started = Instant::now();
    let stop_chaos = Arc::new(AtomicBool::new(false));
    let chaos = (!args.no_chaos).then(|| {
        let config = chaos::ChaosConfig {
            every: args.fault_every,
            down_min: args.down_min,
            down_max: args.down_max.max(args.down_min),
            infra_ctl: args.infra_ctl.clone(),
            services: shop.is_some(),
            seed: args.seed,
            log: args.data_dir.join("logs").join("chaos-infra.log"),
        };
        tokio::spawn(chaos::run(
            shop.clone(),
            config,
            Arc::clone(&stop_chaos),
            started,
        ))
    });
    let driven = driver::drive(
        driver::DriveConfig {
            gateway: gateway.to_owned(),
            jwt_secret: jwt_secret.to_owned(),
            checkouts: args.checkouts,
            duration: args.duration,
            concurrency: args.concurrency.max(1),
            users: args.users,
            products: start_units.keys().copied().collect(),
            decline_ratio: args.decline_ratio.clamp(0.0, 1.0),
            race_ratio: args.race_ratio.clamp(0.0, 1.0),
            run_id: run_id.to_owned(),
            seed: args.seed,
            request_timeout: Duration::from_secs(20),
            stop: stop_on_signal(),
        },
        started,
    )
    .await;
    stop_chaos.store(true, Ordering::Release);
    let timeline = match chaos {
        Some(task) => task.await.context("chaos loop panicked")?,
        None => Vec::new(),
    };
    let driven = driven?;
    let load_s = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: load done after {load_s:.0} s; every fault undone; settling (at most {:?})",
        args.settle
    );

    let settle = settle(databases, args.settle).await;
    stop_supervisor.store(true, Ordering::Release);
    let client_log = args.data_dir.join("clients.jsonl");
    client_log::write(&client_log, &driven.records)?;

    let verdicts = storefront_soak::check(Target {
        databases: databases.clone(),
        kafka_bootstrap: args.kafka_bootstrap.clone(),
        topics: EVENT_TOPICS.map(String::from).to_vec(),
        start_units: start_units.clone(),
        client: Some(driven.records.clone()),
    })
    .await?;
    let mut faults = Faults {
        injected: timeline.len() as u64,
        unplanned_exits: shop
            .as_ref()
            .map(|s| s.unplanned_exits())
            .unwrap_or_default(),
        ..Faults::default()
    };
    for fault in &timeline {
        *faults.by_kind.entry(fault.target.clone()).or_default() += 1;
    }
    faults.timeline = timeline;
    let all_hold = verdicts.iter().all(|v| v.outcome != Outcome::Fails);
    let report = Report {
        started_at: started_at.to_owned(),
        duration_s: (load_s * 10.0).round() / 10.0,
        settings: serde_json::json!({
            "checkouts": args.checkouts,
            "duration_limit_s": args.duration.as_secs(),
            "concurrency": args.concurrency,
            "users": args.users,
            "decline_ratio": args.decline_ratio,
            "race_ratio": args.race_ratio,
            "fault_every_s": if args.no_chaos { None } else { Some(args.fault_every.as_secs_f64()) },
            "down_s": [args.down_min.as_secs_f64(), args.down_max.as_secs_f64()],
            "infrastructure_faults": args.infra_ctl.is_some() && !args.no_chaos,
            "shop": if shop.is_some() { "one process per service, started by the soak" } else { "attached" },
            "start_units": start_units,
            "seed": args.seed,
            "client_log": client_log,
        }),
        checkouts: driven.checkouts,
        sessions_by_status: sessions_by_status(&databases.checkout)
            .await
            .unwrap_or_default(),
        faults,
        settle,
        all_invariants_hold: all_hold,
        invariants: verdicts,
        requests: report::request_stats(&driven.records),
        errors_by_status: report::errors_by_status(&driven.records),
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("write {}", args.out.display()))?;
    println!("{}", report.summary());
    for verdict in report
        .invariants
        .iter()
        .filter(|v| v.outcome == Outcome::Fails)
    {
        for example in &verdict.examples {
            println!("  {}: {example}", verdict.name);
        }
    }
    println!(
        "report: {}   client log: {}",
        args.out.display(),
        client_log.display()
    );
    Ok(all_hold)
}

/// A flag set by the first SIGINT or SIGTERM: the load stops early, and the
/// soak still settles, checks and reports. A second signal ends the process.
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("soak: stopping the load early (signal); settling and checking what was done");
        flag.store(true, Ordering::Release);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
    stop
}

async fn wait_gateway(http: &reqwest::Client, gateway: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = http.get(format!("{gateway}/readyz")).send().await
            && answer.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{gateway}/readyz not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sets each product's units (unless `keep`) and returns the units at start
/// as the conservation check counts them: what is on hand now plus what
/// earlier runs already sold, so a shop that has sold before checks too.
async fn set_stock(
    spec: &str,
    checkouts: u64,
    inventory_url: &str,
) -> anyhow::Result<BTreeMap<i64, i64>> {
    let pool = facts::pool(inventory_url).await?;
    let wanted: BTreeMap<i64, i64> = match spec {
        "keep" => BTreeMap::new(),
        "auto" => auto_stock(checkouts),
        spec => facts::parse_units(spec)?,
    };
    if !wanted.is_empty() {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM reservations WHERE status = 'PENDING'")
                .fetch_one(&pool)
                .await?;
        anyhow::ensure!(
            pending == 0,
            "{pending} reservations are pending: the stock cannot be set now (use --stock keep)"
        );
        for (product, units) in &wanted {
            sqlx::query("UPDATE stock SET on_hand = $2, reserved = 0, updated_at = now() WHERE product_id = $1")
                .bind(product)
                .bind(units)
                .execute(&pool)
                .await
                .context("set stock")?;
        }
    }
    let sold: BTreeMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT l.product_id, SUM(l.quantity)::BIGINT FROM reservation_lines l \
         JOIN reservations r ON r.id = l.reservation_id WHERE r.status = 'CONFIRMED' GROUP BY l.product_id",
    )
    .fetch_all(&pool)
    .await?
    .into_iter()
    .collect();
    let stock = facts::read_stock(&pool).await?;
    pool.close().await;
    Ok(stock
        .iter()
        .map(|s| {
            (
                s.product_id,
                s.on_hand + sold.get(&s.product_id).copied().unwrap_or(0),
            )
        })
        .collect())
}

/// Scarce laptops (sold out early: contention and 409s), the rest scaled so
/// that the busier products run low towards the end of the run.
fn auto_stock(checkouts: u64) -> BTreeMap<i64, i64> {
    let n = i64::try_from(checkouts).unwrap_or(i64::MAX / 2);
    BTreeMap::from([
        (1, (n / 20).max(5)),
        (2, (n * 2).max(20)),
        (3, n.max(10)),
        (4, (n / 2).max(10)),
        (5, (n * 3 / 2).max(15)),
    ])
}

/// Waits until the shop is quiet — no open session, no pending hold, every
/// outbox row published, an order for every completed session — twice in a
/// row, or the window ends.
async fn settle(databases: &Databases, window: Duration) -> Settle {
    let started = Instant::now();
    let mut quiet_once = false;
    loop {
        let quiet = match quiet_now(databases).await {
            Ok(quiet) => quiet,
            Err(error) => {
                eprintln!("soak: settle check failed: {error:#}");
                false
            }
        };
        if quiet && quiet_once {
            break;
        }
        quiet_once = quiet;
        if started.elapsed() >= window {
            return Settle {
                waited_s: started.elapsed().as_secs_f64().round(),
                quiet: false,
            };
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Settle {
        waited_s: started.elapsed().as_secs_f64().round(),
        quiet: true,
    }
}

async fn quiet_now(databases: &Databases) -> anyhow::Result<bool> {
    let count = |url: String, sql: &'static str| async move {
        let pool = facts::pool(&url).await?;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await?;
        pool.close().await;
        anyhow::Ok(n)
    };
    let open = count(
        databases.checkout.clone(),
        "SELECT count(*) FROM checkout_sessions WHERE status NOT IN ('COMPLETED', 'FAILED')",
    )
    .await?;
    let unpublished = count(
        databases.checkout.clone(),
        "SELECT count(*) FROM outbox WHERE published_at IS NULL",
    )
    .await?;
    let completed = count(
        databases.checkout.clone(),
        "SELECT count(*) FROM checkout_sessions WHERE status = 'COMPLETED'",
    )
    .await?;
    let holds = count(
        databases.inventory.clone(),
        "SELECT count(*) FROM reservations WHERE status = 'PENDING'",
    )
    .await?;
    let orders = count(databases.orders.clone(), "SELECT count(*) FROM orders").await?;
    Ok(open == 0 && unpublished == 0 && holds == 0 && orders >= completed)
}

async fn sessions_by_status(checkout_url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let pool = facts::pool(checkout_url).await?;
    let rows = sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM checkout_sessions GROUP BY status",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    Ok(rows
        .into_iter()
        .map(|(status, n)| (status, u64::try_from(n).unwrap_or(0)))
        .collect())
}
