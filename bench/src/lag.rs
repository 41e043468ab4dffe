//! The checkout → order lag of every checkout of a run, from the services'
//! own databases (one PostgreSQL server, one clock), and its two halves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// A checkout's three stamps, each its transaction's `now()`: the session
/// became COMPLETED (its CheckoutCompleted, the session's one outbox row,
/// written in the same transaction), the outbox relay claimed that row (the transaction that
/// sends it to Kafka and marks it published), the order row was written.
struct Stamps {
    completed: DateTime<Utc>,
    claimed: Option<DateTime<Utc>>,
    ordered: DateTime<Utc>,
}

/// Waits up to 30 s for the orders of the checkouts whose users start with
/// `user_prefix`, then reports the lag from COMPLETED to the order row, and
/// split at the relay's claim: `commit_to_relay` (the notification and the
/// relay getting round to it) and `relay_to_order` (Kafka, the orders
/// consumer and its transaction).
pub async fn order_lag(
    checkout_url: &str,
    orders_url: &str,
    user_prefix: &str,
) -> anyhow::Result<Value> {
    let pattern = format!("{user_prefix}%");
    let checkouts = sqlx::PgPool::connect(checkout_url).await?;
    let orders = sqlx::PgPool::connect(orders_url).await?;
    let completed: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT s.id::text, s.updated_at, o.published_at \
         FROM checkout_sessions s \
         LEFT JOIN outbox o ON o.payload->>'checkout_id' = s.id::text \
         WHERE s.status = 'COMPLETED' AND s.user_id LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&checkouts)
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let created: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT checkout_id::text, created_at FROM orders WHERE user_id LIKE $1",
        )
        .bind(&pattern)
        .fetch_all(&orders)
        .await?;
        if created.len() >= completed.len() || Instant::now() > deadline {
            break created;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let created: BTreeMap<String, DateTime<Utc>> = created.into_iter().collect();
    let stamps: Vec<Stamps> = completed
        .iter()
        .filter_map(|(id, completed, claimed)| {
            Some(Stamps {
                completed: *completed,
                claimed: *claimed,
                ordered: *created.get(id)?,
            })
        })
        .collect();
    let whole = Percentiles::of(stamps.iter().map(|s| ms(s.ordered - s.completed)));
    let to_relay = Percentiles::of(
        stamps
            .iter()
            .filter_map(|s| Some(ms(s.claimed? - s.completed))),
    );
    let to_order = Percentiles::of(
        stamps
            .iter()
            .filter_map(|s| Some(ms(s.ordered - s.claimed?))),
    );
    println!(
        "order lag  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} of {} checkouts have their order)",
        whole.p50,
        whole.p99,
        stamps.len(),
        completed.len()
    );
    for (part, p) in [
        ("commit -> relay", &to_relay),
        ("relay -> order", &to_order),
    ] {
        println!("  {part:<16} p50 {:>7.2} ms  p99 {:>7.2} ms", p.p50, p.p99);
    }
    Ok(json!({
        "checkouts": completed.len(),
        "orders": stamps.len(),
        "p50": whole.p50,
        "p99": whole.p99,
        "max": whole.max,
        "measured": "order row created_at minus checkout COMPLETED updated_at (same PostgreSQL clock)",
        "parts": {
            "commit_to_relay": to_relay.json(),
            "relay_to_order": to_order.json(),
            "measured": "split at the checkout outbox row's published_at, the relay's claiming transaction's now(): before it, the NOTIFY and the relay getting to the row; after it, the send to Kafka, the orders consumer and the order's transaction",
        },
    }))
}

fn ms(delta: chrono::TimeDelta) -> f64 {
    delta.num_microseconds().unwrap_or(0) as f64 / 1000.0
}

struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(values: impl Iterator<Item = f64>) -> Percentiles {
        let mut sorted: Vec<f64> = values.collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
            sorted.get(index).copied().unwrap_or(0.0)
        };
        Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }

    fn json(&self) -> Value {
        json!({ "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_index_the_sorted_values() {
        let p = Percentiles::of((1..=100).rev().map(f64::from));
        assert_eq!((p.p50, p.p90, p.p99, p.max), (51.0, 91.0, 100.0, 100.0));
        let empty = Percentiles::of(std::iter::empty());
        assert_eq!((empty.p50, empty.max), (0.0, 0.0));
    }
}
