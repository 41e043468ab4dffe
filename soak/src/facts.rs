//! Loads the [`Facts`] the invariants read: the checkout, payment, inventory
//! and orders databases (read only, plain SELECTs), and every record of the
//! dead-letter topics, read from the beginning without joining a group.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::invariants::{DeadLetter, Facts, Order, Payment, Reservation, Session, Stock};

/// The header the consumer puts the failure reason in when it dead-letters a
/// record (storefront_runtime::consumer). The one place this crate names it.
pub const DLQ_REASON_HEADER: &str = "dlq_reason";

/// Where each service's database is.
#[derive(Debug, Clone)]
pub struct Databases {
    pub checkout: String,
    pub payment: String,
    pub inventory: String,
    pub orders: String,
}

impl Databases {
    /// The databases named `checkout`, `payment`, ... (with an optional
    /// prefix) on the server of `admin_url`.
    pub fn on_server(admin_url: &str, prefix: &str) -> anyhow::Result<Databases> {
        let name = |service: &str| -> anyhow::Result<String> {
            with_database(admin_url, &format!("{prefix}{service}"))
        };
        Ok(Databases {
            checkout: name("checkout")?,
            payment: name("payment")?,
            inventory: name("inventory")?,
            orders: name("orders")?,
        })
    }
}

/// `admin_url` with its database (the URL path) replaced by `database`.
pub fn with_database(admin_url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin_url).with_context(|| "not a URL: the admin URL")?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

pub async fn pool(url: &str) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("not a PostgreSQL URL")?;
    let database = options.get_database().unwrap_or("?").to_owned();
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to database {database}"))
}

/// Reads every table the invariants look at.
pub async fn load_databases(databases: &Databases, facts: &mut Facts) -> anyhow::Result<()> {
    let checkout = pool(&databases.checkout).await?;
    facts.sessions = sqlx::query_as::<_, (Uuid, String, String, String, i64, Vec<(i64, i64)>)>(
        "SELECT id, user_id, idempotency_key, status, total_minor, \
             ARRAY(SELECT ((line->>'product_id')::BIGINT, (line->>'quantity')::BIGINT) \
                   FROM jsonb_array_elements(items) AS line) \
         FROM checkout_sessions",
    )
    .fetch_all(&checkout)
    .await
    .context("read checkout_sessions")?
    .into_iter()
    .map(
        |(id, user_id, idempotency_key, status, total_minor, items)| Session {
            id,
            user_id,
            idempotency_key,
            status,
            total_minor,
            items,
        },
    )
    .collect();
    checkout.close().await;

    let payment = pool(&databases.payment).await?;
    facts.payments = sqlx::query_as::<_, (Uuid, i64, String, i64)>(
        "SELECT p.checkout_id, p.amount_minor, p.status, COALESCE(SUM(r.amount_minor), 0)::BIGINT \
         FROM payments p LEFT JOIN refunds r ON r.payment_id = p.id \
         GROUP BY p.id",
    )
    .fetch_all(&payment)
    .await
    .context("read payments and refunds")?
    .into_iter()
    .map(
        |(checkout_id, amount_minor, status, refunded_minor)| Payment {
            checkout_id,
            amount_minor,
            status,
            refunded_minor,
        },
    )
    .collect();
    payment.close().await;

    let inventory = pool(&databases.inventory).await?;
    let rows = sqlx::query_as::<_, (Uuid, String, Option<i64>, Option<i32>)>(
        "SELECT r.checkout_id, r.status, l.product_id, l.quantity \
         FROM reservations r LEFT JOIN reservation_lines l ON l.reservation_id = r.id \
         ORDER BY r.checkout_id",
    )
    .fetch_all(&inventory)
    .await
    .context("read reservations")?;
    let mut reservations: BTreeMap<Uuid, Reservation> = BTreeMap::new();
    for (checkout_id, status, product, quantity) in rows {
        let reservation = reservations
            .entry(checkout_id)
            .or_insert_with(|| Reservation {
                checkout_id,
                status,
                lines: Vec::new(),
            });
        if let (Some(product), Some(quantity)) = (product, quantity) {
            reservation.lines.push((product, i64::from(quantity)));
        }
    }
    facts.reservations = reservations.into_values().collect();
    facts.stock = read_stock(&inventory).await?;
    inventory.close().await;

    let orders = pool(&databases.orders).await?;
    facts.orders = sqlx::query_as::<_, (Uuid, String)>("SELECT checkout_id, status FROM orders")
        .fetch_all(&orders)
        .await
        .context("read orders")?
        .into_iter()
        .map(|(checkout_id, status)| Order {
            checkout_id,
            status,
        })
        .collect();
    orders.close().await;
    Ok(())
}

pub async fn read_stock(inventory: &PgPool) -> anyhow::Result<Vec<Stock>> {
    Ok(sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT product_id, on_hand, reserved FROM stock ORDER BY product_id",
    )
    .fetch_all(inventory)
    .await
    .context("read stock")?
    .into_iter()
    .map(|(product_id, on_hand, reserved)| Stock {
        product_id,
        on_hand,
        reserved,
    })
    .collect())
}

/// Every record of `topics` (a topic that does not exist has none), read
/// on a blocking thread up to each partition's high watermark.
pub async fn load_dead_letters(
    bootstrap_servers: &str,
    topics: &[String],
) -> anyhow::Result<Vec<DeadLetter>> {
    let (servers, topics) = (bootstrap_servers.to_owned(), topics.to_vec());
    tokio::task::spawn_blocking(move || read_topics(&servers, &topics))
        .await
        .context("dead-letter reader panicked")?
}

fn read_topics(bootstrap_servers: &str, topics: &[String]) -> anyhow::Result<Vec<DeadLetter>> {
    let timeout = Duration::from_secs(15);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        // A throwaway group that never commits: reading leaves no trace.
        .set(
            "group.id",
            format!("storefront-invariants-{}", Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("Kafka consumer")?;
    let mut wanted = TopicPartitionList::new();
    let mut remaining: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("Kafka metadata of {topic} from {bootstrap_servers}"))?;
        for found in metadata.topics() {
            if found.error().is_some() {
                continue; // Unknown topic: nothing was ever dead-lettered there.
            }
            for partition in found.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition.id(), timeout)
                    .with_context(|| format!("watermarks of {topic}[{}]", partition.id()))?;
                if high > low {
                    wanted.add_partition_offset(topic, partition.id(), Offset::Offset(low))?;
                    remaining.insert((topic.clone(), partition.id()), high);
                }
            }
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer.assign(&wanted)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "could not read the dead-letter topics to their end within 60 s ({remaining:?} left)"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.context("read a dead-letter record")?;
        let reason = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == DLQ_REASON_HEADER)
                .map(|h| {
                    h.value
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                })
        });
        let place = (message.topic().to_owned(), message.partition());
        records.push(DeadLetter {
            topic: place.0.clone(),
            partition: place.1,
            offset: message.offset(),
            reason,
        });
        if remaining
            .get(&place)
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&place);
        }
    }
    Ok(records)
}

/// `1=50,2=200` → {1: 50, 2: 200}.
pub fn parse_units(spec: &str) -> anyhow::Result<BTreeMap<i64, i64>> {
    let mut units = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (product, count) = part
            .split_once('=')
            .with_context(|| format!("`{part}`: expected PRODUCT=UNITS"))?;
        let product: i64 = product
            .trim()
            .parse()
            .with_context(|| format!("`{part}`: product id"))?;
        let count: i64 = count
            .trim()
            .parse()
            .with_context(|| format!("`{part}`: units"))?;
        anyhow::ensure!(count >= 0, "`{part}`: units cannot be negative");
        units.insert(product, count);
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_from_a_list() {
        let units = parse_units("1=50, 2=200,").unwrap_or_default();
        assert_eq!(units, BTreeMap::from([(1, 50), (2, 200)]));
        assert!(parse_units("1:50").is_err());
        assert!(parse_units("1=-1").is_err());
    }

    #[test]
    fn a_database_is_named_on_the_admin_server() {
        let url = with_database(
            "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
            "checkout",
        )
        .unwrap_or_default();
        assert_eq!(
            url,
            "postgres://u:p@127.0.0.1:5432/checkout?sslmode=disable"
        );
    }
}
