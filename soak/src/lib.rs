//! The chaos soak and its invariant checker. `storefront-soak` (main.rs)
//! runs the shop one process per service, drives checkouts through the
//! gateway while a chaos loop kills processes and infrastructure, then checks
//! the invariants; `storefront-invariants` runs the checks alone against any
//! shop whose databases and Kafka it can reach.

pub mod client_log;
pub mod facts;
pub mod invariants;
pub mod report;

use std::collections::BTreeMap;

use facts::Databases;
use invariants::{Facts, Verdict};

/// The seed stock of DESIGN.md: what a shop holds before anything is sold.
pub const SEED_UNITS: &str = "1=50,2=200,3=100,4=75,5=150";

/// The topics whose `<topic>.dlq` the checker reads by default.
pub const EVENT_TOPICS: [&str; 2] = ["checkout-events", "order-events"];

/// Where the checker looks.
#[derive(Debug, Clone)]
pub struct Target {
    pub databases: Databases,
    pub kafka_bootstrap: String,
    /// Event topics; their dead-letter topics are read.
    pub topics: Vec<String>,
    pub start_units: BTreeMap<i64, i64>,
    pub client: Option<Vec<client_log::ClientRecord>>,
}

/// Loads the facts and runs every check.
pub async fn check(target: Target) -> anyhow::Result<Vec<Verdict>> {
    let mut facts = Facts {
        start_units: target.start_units,
        client: target.client,
        ..Facts::default()
    };
    facts::load_databases(&target.databases, &mut facts).await?;
    let dead_letter_topics: Vec<String> = target
        .topics
        .iter()
        .map(|t| storefront_runtime::events::dead_letter_topic(t))
        .collect();
    facts.dead_letters =
        facts::load_dead_letters(&target.kafka_bootstrap, &dead_letter_topics).await?;
    Ok(invariants::check(&facts))
}
