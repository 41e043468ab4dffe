//! The transactional outbox: a service writes its event in the same database
//! transaction as the state change it announces ([`enqueue`]), and the
//! [`OutboxRelay`] publishes it to Kafka afterwards. Nothing is lost (the row
//! stays until Kafka acknowledges it) and nothing is announced that did not
//! happen (the row commits or rolls back with the change).
//!
//! The relay is woken by `NOTIFY` at commit, so its lag is milliseconds; it
//! also polls once a second in case a notification is missed. Several replicas
//! may run side by side: rows are claimed with `FOR UPDATE SKIP LOCKED`, and a
//! row is only claimed once every earlier row with the same key is published,
//! so one user's events reach Kafka in the order they were written.
//!
//! A publishing service creates the table of [`SCHEMA`] in its own migrations.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::producer::FutureProducer;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::events::{self, Event};
use crate::{Shutdown, telemetry};

/// The outbox table; a publishing service puts this SQL in one of its migrations.
pub const SCHEMA: &str = "\
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    topic        TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    event_type   TEXT        NOT NULL,
    source       TEXT        NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    payload      JSONB       NOT NULL,
    headers      JSONB       NOT NULL DEFAULT '{}',
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (key, id) WHERE published_at IS NULL;
";

/// The `NOTIFY` channel that wakes the relay.
pub const CHANNEL: &str = "storefront_outbox";
/// Rows claimed per batch.
const BATCH: i64 = 256;
/// How long published rows are kept (for inspection) before they are deleted.
const RETENTION_SECS: f64 = 3600.0;

/// Writes `event` for `topic` into the outbox, inside the caller's transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    topic: &str,
    event: &Event,
) -> Result<(), sqlx::Error> {
    let payload: serde_json::Value =
        serde_json::from_slice(&event.payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let headers =
        serde_json::to_value(&event.trace_headers).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // One round trip: the row, and the notification naming it (delivered
    // when the transaction commits, not before), which lets the relay claim
    // the row by its key instead of searching the table.
    sqlx::query(
        "WITH row AS (INSERT INTO outbox (event_id, topic, key, event_type, source, occurred_at, payload, headers) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id) \
         SELECT pg_notify($9, id::text) FROM row",
    )
    .bind(event.id)
    .bind(topic)
    .bind(&event.key)
    .bind(&event.event_type)
    .bind(&event.source)
    .bind(event.time)
    .bind(payload)
    .bind(headers)
    .bind(CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox row {0} is malformed: {1}")]
    Malformed(i64, String),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Publishes outbox rows to Kafka; see the module documentation.
pub struct OutboxRelay {
    pool: PgPool,
    producer: FutureProducer,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, producer: FutureProducer) -> Self {
        OutboxRelay { pool, producer }
    }

    /// Publishes until `shutdown`, backing off while Kafka or the database is down.
    ///
    /// A commit's notification names its row, and the relay claims the rows
    /// it was told of by primary key. The whole table is searched at start,
    /// after an error, when a named row could not be claimed (an earlier
    /// event of its key is still pending), and once a second in case a
    /// notification was missed (a lost LISTEN connection): that search walks
    /// the pending-rows index, which holds the entries of published rows too
    /// until PostgreSQL vacuums them, so doing it once per commit made every
    /// commit's relay work grow with the table.
    pub async fn run(self, shutdown: Shutdown) {
        let mut listener = None;
        let mut backoff = Duration::from_millis(100);
        let mut last_cleanup = std::time::Instant::now();
        let mut last_backlog = std::time::Instant::now();
        let mut search = true;
        let mut last_search = std::time::Instant::now();
        let mut named: Vec<i64> = Vec::new();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if listener.is_none() {
                listener = self.listen().await;
                search = true;
            }
            // A batch cut short by shutdown rolls back; its rows wait for the next run.
            let work = async {
                if !named.is_empty() {
                    let ids = std::mem::take(&mut named);
                    if self.publish_named(&ids).await? < ids.len() {
                        search = true;
                    }
                }
                // Also once a second under a steady stream of notifications
                // (a LISTEN connection that sqlx re-made loses those sent
                // meanwhile, and the quiet second may never come).
                if std::mem::take(&mut search) || last_search.elapsed() >= Duration::from_secs(1) {
                    last_search = std::time::Instant::now();
                    self.drain().await?;
                }
                Ok::<(), RelayError>(())
            };
            let drained = tokio::select! {
                _ = shutdown.cancelled() => return,
                drained = work => drained,
            };
            match drained {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "outbox relay failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    named.clear();
                    search = true;
                    continue;
                }
            }
            if last_backlog.elapsed() > Duration::from_secs(5) {
                last_backlog = std::time::Instant::now();
                match self.backlog().await {
                    Ok(rows) => metrics::gauge!("outbox_backlog").set(rows as f64),
                    Err(error) => tracing::warn!(%error, "cannot count the outbox backlog"),
                }
            }
            if last_cleanup.elapsed() > Duration::from_secs(60) {
                last_cleanup = std::time::Instant::now();
                if let Err(error) = self.delete_published().await {
                    tracing::warn!(%error, "cannot delete published outbox rows");
                }
            }
            // Sleep until a commit notifies us, or a second passes; then take
            // every notification already received, to claim their rows at once.
            let wake = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(Some),
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(None)
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                woke = tokio::time::timeout(Duration::from_secs(1), wake) => match woke {
                    Ok(Ok(Some(first))) => {
                        let mut note = Some(first);
                        while let Some(n) = note {
                            match n.payload().parse::<i64>() {
                                Ok(id) if named.len() < BATCH as usize => named.push(id),
                                // Not ours to parse (an older release's empty
                                // payload), or more than a batch: search.
                                _ => search = true,
                            }
                            note = match listener.as_mut() {
                                // Whatever the connection has already received,
                                // without waiting for more.
                                Some(l) => tokio::time::timeout(Duration::ZERO, l.recv())
                                    .await
                                    .ok()
                                    .and_then(Result::ok),
                                None => None,
                            };
                        }
                    }
                    Ok(Ok(None)) | Err(_) => search = true,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "outbox LISTEN connection lost; reconnecting");
                        listener = None;
                    }
                },
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(CHANNEL).await.ok()?;
        Some(listener)
    }

    /// Publishes batches until nothing is pending (or another replica holds the rest).
    pub async fn drain(&self) -> Result<(), RelayError> {
        while self.publish_batch().await? > 0 {}
        Ok(())
    }

    /// Claims and publishes one batch; returns how many rows were published.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        self.publish_claimed(None).await
    }

    /// Claims and publishes the rows `ids` that are still pending and whose
    /// key has no earlier pending row; returns how many were published.
    pub async fn publish_named(&self, ids: &[i64]) -> Result<usize, RelayError> {
        self.publish_claimed(Some(ids)).await
    }

    async fn publish_claimed(&self, ids: Option<&[i64]>) -> Result<usize, RelayError> {
        // Two statements, not one with an optional filter: a prepared
        // statement's generic plan could not use the primary key for the
        // named rows.
        macro_rules! claim {
            ($filter:literal) => {
                concat!(
                    "SELECT o.id, o.event_id, o.topic, o.key, o.event_type, o.source, o.occurred_at, o.payload, o.headers \
                     FROM outbox o WHERE ",
                    $filter,
                    "o.published_at IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM outbox e \
                                     WHERE e.key = o.key AND e.published_at IS NULL AND e.id < o.id) \
                     ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED"
                )
            };
        }
        let mut tx = self.pool.begin().await?;
        let rows = match ids {
            None => {
                sqlx::query(claim!(""))
                    .bind(BATCH)
                    .fetch_all(&mut *tx)
                    .await?
            }
            Some(ids) => {
                sqlx::query(claim!("o.id = ANY($2) AND "))
                    .bind(BATCH)
                    .bind(ids)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut claimed = Vec::with_capacity(rows.len());
        let mut spans = Vec::with_capacity(rows.len());
        for row in &rows {
            let (id, topic, mut event) = from_row(row)?;
            // A producer span, child of the transaction that wrote the row;
            // the record carries the producer span's context.
            let span = tracing::info_span!(
                "messaging.publish",
                otel.name = %format_args!("publish {topic}"),
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.operation.type = "send",
                messaging.operation.name = "publish",
                messaging.destination.name = %topic,
                messaging.message.id = %event.id,
                messaging.kafka.message.key = %event.key,
                otel.status_code = tracing::field::Empty,
                otel.status_message = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            let _ = span.set_parent(telemetry::context_from_headers(&event.trace_headers));
            event.trace_headers = telemetry::headers_of(&span.context());
            claimed.push((id, topic, event));
            spans.push(span);
        }
        // Distinct keys (see the query), so these may go out concurrently.
        let sends = claimed
            .iter()
            .zip(spans.iter())
            .map(|((_, topic, event), span)| {
                events::publish(&self.producer, topic, event).instrument(span.clone())
            });
        let results = futures::future::join_all(sends).await;
        let mut published = Vec::with_capacity(claimed.len());
        let mut failure = None;
        for (((id, topic, event), result), span) in claimed.iter().zip(results).zip(&spans) {
            match result {
                Ok(()) => {
                    published.push(*id);
                    let lag =
                        (Utc::now() - event.time).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    metrics::histogram!("outbox_relay_lag_seconds", "topic" => topic.clone())
                        .record(lag);
                    metrics::counter!("outbox_published_total", "topic" => topic.clone())
                        .increment(1);
                }
                Err(error) => {
                    // The producer span says the send failed (the row stays
                    // and is retried).
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_message", tracing::field::display(&error));
                    span.record("error.type", "kafka_publish");
                    failure.get_or_insert(error);
                }
            }
        }
        drop(spans);
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(published.len()),
        }
    }

    /// Rows still waiting to be published.
    pub async fn backlog(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
    }

    async fn delete_published(&self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)")
            .bind(RETENTION_SECS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<(i64, String, Event), RelayError> {
    let id: i64 = row.try_get("id")?;
    let payload: serde_json::Value = row.try_get("payload")?;
    let headers: serde_json::Value = row.try_get("headers")?;
    let trace_headers: BTreeMap<String, String> =
        serde_json::from_value(headers).map_err(|e| RelayError::Malformed(id, e.to_string()))?;
    let time: DateTime<Utc> = row.try_get("occurred_at")?;
    let event = Event {
        id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        source: row.try_get("source")?,
        time,
        key: row.try_get("key")?,
        payload: serde_json::to_vec(&payload)
            .map_err(|e| RelayError::Malformed(id, e.to_string()))?,
        trace_headers,
    };
    Ok((id, row.try_get("topic")?, event))
}
