//! `storefront-invariants`: checks a shop's invariants from its databases,
//! its dead-letter topics and (optionally) a log of what its clients saw,
//! prints each verdict with counts, and exits 1 if any fails. Works against
//! any shop it can reach, e.g. one in a cluster through `kubectl
//! port-forward` of its PostgreSQL and Kafka.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use storefront_soak::facts::{self, Databases};
use storefront_soak::invariants::Outcome;
use storefront_soak::{EVENT_TOPICS, SEED_UNITS, Target, client_log, report};

#[derive(Debug, Parser)]
#[command(
    name = "storefront-invariants",
    about = "Checks a Storefront shop's invariants; exits 1 if any fails"
)]
struct Args {
    /// A PostgreSQL URL on the server that holds the service databases; each
    /// database is this URL with the path replaced by its name.
    #[arg(long, env = "DATABASE_ADMIN_URL")]
    admin_url: Option<String>,
    /// Prefix of the database names on that server (`checkout`, `payment`,
    /// `inventory`, `orders`), e.g. `sf_myshop_` for an operator-made shop.
    #[arg(long, default_value = "")]
    database_prefix: String,
    /// The checkout service's database (overrides the admin URL's).
    #[arg(long)]
    checkout_database_url: Option<String>,
    #[arg(long)]
    payment_database_url: Option<String>,
    #[arg(long)]
    inventory_database_url: Option<String>,
    #[arg(long)]
    orders_database_url: Option<String>,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:59092"
    )]
    kafka_bootstrap: String,
    /// Event topics; each one's `<topic>.dlq` is read.
    #[arg(long, value_delimiter = ',', default_values_t = EVENT_TOPICS.map(String::from))]
    topics: Vec<String>,
    /// Units per product when selling started (`PRODUCT=UNITS,...`); the seed by default.
    #[arg(long, default_value = SEED_UNITS)]
    start_units: String,
    /// JSON lines of what clients saw (`{"checkout_id","status"}` at least;
    /// `user`, `cart` and `key` tell one cart bought under several keys).
    #[arg(long)]
    client_log: Option<PathBuf>,
    /// Print the verdicts as JSON instead of lines.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn databases(&self) -> anyhow::Result<Databases> {
        let from_admin = match &self.admin_url {
            Some(admin) => Some(Databases::on_server(admin, &self.database_prefix)?),
            None => None,
        };
        let pick = |given: &Option<String>, service: &str, default: Option<&String>| {
            given.clone().or_else(|| default.cloned()).with_context(|| {
                format!("no database for {service}: give --admin-url or --{service}-database-url")
            })
        };
        Ok(Databases {
            checkout: pick(
                &self.checkout_database_url,
                "checkout",
                from_admin.as_ref().map(|d| &d.checkout),
            )?,
            payment: pick(
                &self.payment_database_url,
                "payment",
                from_admin.as_ref().map(|d| &d.payment),
            )?,
            inventory: pick(
                &self.inventory_database_url,
                "inventory",
                from_admin.as_ref().map(|d| &d.inventory),
            )?,
            orders: pick(
                &self.orders_database_url,
                "orders",
                from_admin.as_ref().map(|d| &d.orders),
            )?,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("storefront-invariants: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let client = match &args.client_log {
        Some(path) => Some(client_log::read(path)?),
        None => None,
    };
    let target = Target {
        databases: args.databases()?,
        kafka_bootstrap: args.kafka_bootstrap.clone(),
        topics: args.topics.clone(),
        start_units: facts::parse_units(&args.start_units)?,
        client,
    };
    let verdicts = storefront_soak::check(target).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        for line in report::verdict_lines(&verdicts) {
            println!("{line}");
        }
        for verdict in verdicts.iter().filter(|v| v.outcome == Outcome::Fails) {
            for example in &verdict.examples {
                println!("  {}: {example}", verdict.name);
            }
        }
    }
    Ok(verdicts.iter().all(|v| v.outcome != Outcome::Fails))
}
