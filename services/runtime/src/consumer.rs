//! Consuming events, the one Storefront way: records of one key (the user)
//! are handled one at a time, in order, while different keys proceed side by
//! side; an offset is committed only after the handler says the record's
//! effects are durable; a handler's transient
//! failure is retried with backoff (the partition waits); a record that can
//! never succeed (malformed, or rejected by the handler) goes to
//! `<topic>.dlq` with the reason in its headers, and the consumer moves on.
//! Nothing is dropped silently.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use opentelemetry::trace::TraceContextExt as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::Shutdown;
use crate::events::{Event, TRACE_HEADERS, dead_letter_topic};
use crate::kafka;

/// Records of one lane are handled in order: a partition and a key.
type Lane<'a> = (i32, Option<&'a [u8]>);

/// How often the consumer lag gauge is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// The most records taken into one batch.
pub const MAX_BATCH: usize = 128;

/// Why a handler could not process an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying: a database or a dependency is unavailable.
    #[error("transient: {0}")]
    Retry(String),
    /// Will never succeed (a payload the handler cannot accept): dead-letter it.
    #[error("rejected: {0}")]
    Reject(String),
}

/// What a consumer does with each event.
pub trait EventHandler: Send + Sync {
    fn handle(&self, event: &Event) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A consumer-group member that feeds records to an [`EventHandler`].
pub struct EventConsumer {
    consumer: Arc<StreamConsumer>,
    lag_in_flight: Arc<AtomicBool>,
    dead_letters: FutureProducer,
    group: String,
}

enum Outcome {
    Done,
    DeadLetter(String),
    Stopped,
}

impl EventConsumer {
    /// Joins `group` and subscribes to `topics`.
    pub fn new(bootstrap_servers: &str, group: &str, topics: &[&str]) -> Result<Self, KafkaError> {
        let consumer = kafka::consumer(bootstrap_servers, group)?;
        consumer.subscribe(topics)?;
        Ok(EventConsumer {
            consumer: Arc::new(consumer),
            lag_in_flight: Arc::default(),
            dead_letters: kafka::producer(bootstrap_servers)?,
            group: group.to_owned(),
        })
    }

    /// Handles records until `shutdown`, then commits the offsets handled.
    ///
    /// Records are taken in batches of what has arrived (up to [`MAX_BATCH`]);
    /// within a batch, records of one partition and key are handled in order,
    /// one at a time, while different keys proceed concurrently. The batch's
    /// offsets are committed once all of it is handled.
    pub async fn run<H: EventHandler>(self, handler: H, shutdown: Shutdown) {
        let mut lag_tick = tokio::time::interval(LAG_INTERVAL);
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lag_recorded = std::time::Instant::now();
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = lag_tick.tick() => {
                    self.record_lag();
                    lag_recorded = std::time::Instant::now();
                    continue;
                }
                message = self.consumer.recv() => message,
            };
            let first = match first {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, group = %self.group, "Kafka receive failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message),
                    Some(Err(error)) => {
                        tracing::warn!(%error, group = %self.group, "Kafka receive failed");
                        break;
                    }
                    None => break,
                }
            }
            // Per (partition, key), in arrival (offset) order.
            let mut lanes: Vec<(Lane<'_>, Vec<&BorrowedMessage<'_>>)> = Vec::new();
            for message in &batch {
                let lane = (message.partition(), message.key());
                match lanes.iter_mut().find(|(id, _)| *id == lane) {
                    Some((_, records)) => records.push(message),
                    None => lanes.push((lane, vec![message])),
                }
            }
            let (this, handler, shutdown) = (&self, &handler, &shutdown);
            let handled = futures::future::join_all(lanes.iter().map(|(_, records)| async move {
                for message in records {
                    if !this.handle_record(handler, message, shutdown).await {
                        return false;
                    }
                }
                true
            }))
            .await;
            if !handled.iter().all(|done| *done) {
                // Stopped mid-batch: nothing of it is committed, so it is all
                // delivered again (handlers are idempotent).
                break;
            }
            for message in &batch {
                // Stored for the final synchronous commit at shutdown.
                if let Err(error) = self.consumer.store_offset_from_message(message) {
                    tracing::warn!(%error, "offset store failed; the record may be handled again");
                }
            }
            if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!(%error, "offset commit failed; the records may be handled again");
            }
            // A busy consumer records its lag too (the tick may never win).
            if lag_recorded.elapsed() >= LAG_INTERVAL {
                self.record_lag();
                lag_recorded = std::time::Instant::now();
            }
        }
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing uncommitted (e.g. no partition assigned) is not worth a warning.
            if !matches!(
                error,
                KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
            ) {
                tracing::warn!(%error, group = %self.group, "final offset commit failed");
            }
        }
        tracing::info!(group = %self.group, "consumer stopped");
    }

    /// Sets `kafka_consumer_lag{group,topic,partition}`: the partition's high
    /// watermark minus the consumer's position, for every partition this
    /// member holds. The watermarks are asked of the broker on a blocking
    /// thread, one query at a time; the consumer does not wait for it.
    fn record_lag(&self) {
        if self.lag_in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        let (consumer, group, in_flight) = (
            Arc::clone(&self.consumer),
            self.group.clone(),
            Arc::clone(&self.lag_in_flight),
        );
        tokio::task::spawn_blocking(move || {
            if let Ok(positions) = consumer.position() {
                for element in positions.elements() {
                    let Offset::Offset(position) = element.offset() else {
                        continue;
                    };
                    let (topic, partition) = (element.topic(), element.partition());
                    if let Ok((_, high)) =
                        consumer.fetch_watermarks(topic, partition, Duration::from_secs(1))
                    {
                        metrics::gauge!(
                            "kafka_consumer_lag",
                            "group" => group.clone(),
                            "topic" => topic.to_owned(),
                            "partition" => partition.to_string()
                        )
                        .set((high - position).max(0) as f64);
                    }
                }
            }
            in_flight.store(false, Ordering::Release);
        });
    }

    /// Handles one record (dead-lettering it if it cannot be handled); false
    /// when shutdown came first.
    async fn handle_record<H: EventHandler>(
        &self,
        handler: &H,
        message: &BorrowedMessage<'_>,
        shutdown: &Shutdown,
    ) -> bool {
        let span = tracing::info_span!(
            "messaging.process",
            otel.name = %format_args!("process {}", message.topic()),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %message.topic(),
            messaging.consumer.group.name = %self.group,
            messaging.destination.partition.id = message.partition(),
            messaging.kafka.offset = message.offset(),
            messaging.message.id = tracing::field::Empty,
        );
        // A child of the producer's span, and linked to it.
        let producer = crate::telemetry::context_from_headers(&trace_headers(message));
        let producer_span = producer.span().span_context().clone();
        if producer_span.is_valid() {
            let _ = span.set_parent(producer);
            span.add_link(producer_span);
        }
        match self
            .process(handler, message, shutdown)
            .instrument(span.clone())
            .await
        {
            Outcome::Stopped => false,
            Outcome::Done => true,
            Outcome::DeadLetter(reason) => {
                self.dead_letter(message, &reason, shutdown)
                    .instrument(span)
                    .await
            }
        }
    }

    async fn process<H: EventHandler>(
        &self,
        handler: &H,
        message: &BorrowedMessage<'_>,
        shutdown: &Shutdown,
    ) -> Outcome {
        let event = match Event::from_message(message) {
            Ok(event) => event,
            Err(error) => return Outcome::DeadLetter(format!("malformed record: {error}")),
        };
        tracing::Span::current().record("messaging.message.id", tracing::field::display(event.id));
        let mut backoff = Duration::from_millis(100);
        loop {
            match handler.handle(&event).await {
                Ok(()) => {
                    metrics::counter!("events_consumed_total", "group" => self.group.clone(), "outcome" => "ok")
                        .increment(1);
                    return Outcome::Done;
                }
                Err(HandlerError::Reject(reason)) => return Outcome::DeadLetter(reason),
                Err(HandlerError::Retry(reason)) => {
                    metrics::counter!("events_consumed_total", "group" => self.group.clone(), "outcome" => "retry")
                        .increment(1);
                    tracing::warn!(%reason, ?backoff, event_id = %event.id, "event handling failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Outcome::Stopped,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Copies the record to `<topic>.dlq` with the reason; true once Kafka has
    /// it (retrying until then), false if shutdown came first.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
        shutdown: &Shutdown,
    ) -> bool {
        let topic = dead_letter_topic(message.topic());
        tracing::error!(%reason, dlq = %topic, offset = message.offset(), "event dead-lettered");
        metrics::counter!("events_consumed_total", "group" => self.group.clone(), "outcome" => "dead_letter")
            .increment(1);
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut headers = OwnedHeaders::new();
            if let Some(original) = message.headers() {
                for header in original.iter() {
                    headers = headers.insert(header);
                }
            }
            let headers = headers
                .insert(Header {
                    key: "dlq_reason",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "dlq_topic",
                    value: Some(message.topic()),
                })
                .insert(Header {
                    key: "dlq_partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "dlq_offset",
                    value: Some(&offset),
                })
                .insert(Header {
                    key: "dlq_group",
                    value: Some(&self.group),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self
                .dead_letters
                .send(record, Duration::from_secs(10))
                .await
            {
                Ok(_) => return true,
                Err((error, _)) => {
                    tracing::warn!(%error, dlq = %topic, "cannot write to the dead-letter topic; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// The W3C trace context and baggage headers of a record.
fn trace_headers(message: &BorrowedMessage<'_>) -> std::collections::BTreeMap<String, String> {
    let mut found = std::collections::BTreeMap::new();
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            if let (Some(name), Some(value)) = (
                TRACE_HEADERS.iter().find(|name| **name == header.key),
                header.value,
            ) {
                found.insert(
                    (*name).to_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                );
            }
        }
    }
    found
}
