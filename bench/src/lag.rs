//! The checkout → order lag: measured end to end from the two services'
//! databases, and split into its parts from the shop's own summaries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The lag from each checkout of this run becoming COMPLETED to its order
/// existing, from the two services' databases (one PostgreSQL server, one
/// clock; both stamps are their transaction's `now()`). Waits up to 30 s for
/// the last orders.
pub async fn order_lag(
    checkout_url: &str,
    orders_url: &str,
    user_prefix: &str,
    shop_metrics: Option<&str>,
) -> anyhow::Result<Value> {
    let pattern = format!("{user_prefix}%");
    let checkouts = sqlx::PgPool::connect(checkout_url).await?;
    let orders = sqlx::PgPool::connect(orders_url).await?;
    let completed: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT id::text, updated_at FROM checkout_sessions WHERE status = 'COMPLETED' AND user_id LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&checkouts)
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let created: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
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
    let created: BTreeMap<String, chrono::DateTime<chrono::Utc>> = created.into_iter().collect();
    let mut lags: Vec<f64> = completed
        .iter()
        .filter_map(|(id, at)| {
            let order = created.get(id)?;
            Some((*order - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1));
        lags.get(index).copied().unwrap_or(0.0)
    };
    println!(
        "order lag  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} of {} checkouts have their order)",
        at(0.5),
        at(0.99),
        lags.len(),
        completed.len()
    );
    let parts = match shop_metrics {
        Some(url) => parts(url).await?,
        None => Value::Null,
    };
    Ok(json!({
        "parts": parts,
        "checkouts": completed.len(),
        "orders": lags.len(),
        "p50": at(0.5),
        "p99": at(0.99),
        "max": lags.last().copied().unwrap_or(0.0),
        "measured": "order row created_at minus checkout COMPLETED updated_at (same PostgreSQL clock)",
    }))
}

/// The summaries that split an event's way (docs/events.md), read from the
/// shop's Prometheus endpoint right after the checkout phase (the exporter's
/// summaries cover the last minute or so): the relay (event made → Kafka
/// acknowledged), Kafka's delivery to the orders member (record timestamp →
/// fetched), the wait in its batch (→ handler started) and the handler.
async fn parts(url: &str) -> anyhow::Result<Value> {
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    let quantiles = summaries(&text);
    let pick = |metric: &str, label: &str| {
        quantiles
            .iter()
            .find(|((name, labels), _)| name == metric && labels.contains(label))
            .map(|(_, q)| q.clone())
    };
    let parts = [
        ("relay", pick("outbox_relay_lag_seconds", "checkout")),
        (
            "kafka_to_orders",
            pick("event_consumer_receive_lag_seconds", "orders"),
        ),
        (
            "handler_started",
            pick("event_consumer_start_lag_seconds", "orders"),
        ),
        ("handler", pick("event_consumer_handle_seconds", "orders")),
    ];
    let mut report = serde_json::Map::new();
    for (part, found) in parts {
        let Some(q) = found else { continue };
        let ms = |quantile: &str| q.get(quantile).map(|s| s * 1000.0).unwrap_or(f64::NAN);
        println!(
            "  {part:<16} p50 {:>7.2} ms  p99 {:>7.2} ms",
            ms("0.5"),
            ms("0.99")
        );
        report.insert(
            part.to_owned(),
            json!({ "p50": ms("0.5"), "p99": ms("0.99") }),
        );
    }
    report.insert(
        "measured".to_owned(),
        json!("the shop's summaries: relay = outbox_relay_lag_seconds (checkout topic); kafka_to_orders = event_consumer_receive_lag_seconds, handler_started = event_consumer_start_lag_seconds, both from the record's Kafka timestamp; handler = event_consumer_handle_seconds (orders group)"),
    );
    Ok(Value::Object(report))
}

/// Summary quantiles in Prometheus text: (name, other labels) → quantile → value.
fn summaries(text: &str) -> BTreeMap<(String, String), BTreeMap<String, f64>> {
    let mut found: BTreeMap<(String, String), BTreeMap<String, f64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let labels = labels.trim_end_matches('}');
        let mut quantile = None;
        let mut rest = Vec::new();
        for label in labels.split(',') {
            match label.strip_prefix("quantile=") {
                Some(q) => quantile = Some(q.trim_matches('"').to_owned()),
                None => rest.push(label),
            }
        }
        if let (Some(quantile), Ok(value)) = (quantile, value.parse::<f64>()) {
            found
                .entry((name.to_owned(), rest.join(",")))
                .or_default()
                .insert(quantile, value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_quantiles_are_read_by_series() {
        let text = "# TYPE outbox_relay_lag_seconds summary\n\
            outbox_relay_lag_seconds{topic=\"checkout-events\",quantile=\"0.5\"} 0.012\n\
            outbox_relay_lag_seconds{topic=\"checkout-events\",quantile=\"0.99\"} 0.037\n\
            outbox_relay_lag_seconds_sum{topic=\"checkout-events\"} 4.5\n\
            event_consumer_handle_seconds{group=\"orders\",quantile=\"0.5\"} 0.003\n";
        let found = summaries(text);
        assert_eq!(found.len(), 2);
        let relay = &found[&(
            "outbox_relay_lag_seconds".to_owned(),
            "topic=\"checkout-events\"".to_owned(),
        )];
        assert_eq!((relay["0.5"], relay["0.99"]), (0.012, 0.037));
        let handler = &found[&(
            "event_consumer_handle_seconds".to_owned(),
            "group=\"orders\"".to_owned(),
        )];
        assert_eq!(handler["0.5"], 0.003);
    }
}
