//! Consuming events, the one Storefront way: records of one key (the user)
//! are handled one at a time, in order, while different keys proceed side by
//! side; an offset is committed only after the handler says the record's
//! effects are durable. What a handler's failure leads to depends on its
//! kind ([`HandlerError`]): an unreachable store is waited for, however long,
//! and never dead-lettered; a record that fails otherwise is tried
//! [`RetryPolicy::max_attempts`] times with exponential backoff, then goes
//! to `<topic>.dlq` with the reason in its headers; a record that can never
//! succeed (malformed, or rejected by the handler) goes there at once. The
//! records behind it in its lane then proceed. Nothing is dropped silently.
//!
//! While a record is being retried the member pauses its partitions and
//! keeps polling, so Kafka neither evicts it (`max.poll.interval.ms`) nor
//! hands it more records than it can take.

pub mod cancellations;
mod dead_letter;
mod retry;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use opentelemetry::trace::TraceContextExt as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::Shutdown;
use crate::events::{Event, TRACE_HEADERS};
use crate::kafka;
use dead_letter::DeadLetter;
pub use retry::{ConsumerSettings, HandlerError, RetryPolicy};

/// Records of one lane are handled in order: a partition and a key.
type Lane<'a> = (i32, Option<&'a [u8]>);

/// How often the consumer lag gauge is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// The most records taken into one batch.
pub const MAX_BATCH: usize = 128;

/// What a consumer does with each event.
pub trait EventHandler: Send + Sync {
    fn handle(&self, event: &Event) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A consumer-group member that feeds records to an [`EventHandler`].
pub struct EventConsumer {
    consumer: Arc<StreamConsumer>,
    lag_in_flight: Arc<AtomicBool>,
    /// Made at the first dead letter: an idle librdkafka producer is a
    /// thread polling for ever (rust-rdkafka's poll loop spins through the
    /// last millisecond of each 100 ms), and most members never need one.
    dead_letters: dead_letter::Producer,
    group: String,
    settings: ConsumerSettings,
    /// Told whenever a record is about to wait for a retry: the member then
    /// pauses its partitions and polls until the batch is done.
    retrying: Notify,
}

enum Outcome {
    Done,
    DeadLetter(DeadLetter),
    Stopped,
}

impl EventConsumer {
    /// Joins `group` and subscribes to `topics`, with the default settings.
    pub fn new(bootstrap_servers: &str, group: &str, topics: &[&str]) -> Result<Self, KafkaError> {
        Self::with_settings(
            bootstrap_servers,
            group,
            topics,
            &ConsumerSettings::default(),
        )
    }

    /// Joins `group` and subscribes to `topics`, retrying as `settings` say.
    pub fn with_settings(
        bootstrap_servers: &str,
        group: &str,
        topics: &[&str],
        settings: &ConsumerSettings,
    ) -> Result<Self, KafkaError> {
        let consumer =
            kafka::consumer_polled_within(bootstrap_servers, group, settings.max_poll_interval)?;
        consumer.subscribe(topics)?;
        let mut settings = *settings;
        settings.retry.max_attempts = settings.retry.max_attempts.max(1);
        Ok(EventConsumer {
            consumer: Arc::new(consumer),
            lag_in_flight: Arc::default(),
            dead_letters: dead_letter::Producer::new(bootstrap_servers),
            group: group.to_owned(),
            settings,
            retrying: Notify::new(),
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
        // Records that arrived while a batch was being handled (its
        // partitions paused): they lead the next batch.
        let mut carried: Vec<BorrowedMessage<'_>> = Vec::new();
        loop {
            let mut batch = std::mem::take(&mut carried);
            if batch.is_empty() {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = lag_tick.tick() => {
                        self.record_lag();
                        lag_recorded = std::time::Instant::now();
                        continue;
                    }
                    message = self.consumer.recv() => message,
                };
                match first {
                    Ok(message) => batch.push(message),
                    Err(error) => {
                        tracing::warn!(%error, group = %self.group, "Kafka receive failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                }
            }
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
                record_since_produced("event_consumer_receive_lag_seconds", &self.group, message);
                let lane = (message.partition(), message.key());
                match lanes.iter_mut().find(|(id, _)| *id == lane) {
                    Some((_, records)) => records.push(message),
                    None => lanes.push((lane, vec![message])),
                }
            }
            let (this, handler, shutdown) = (&self, &handler, &shutdown);
            let handling = futures::future::join_all(lanes.iter().map(|(_, records)| async move {
                for message in records {
                    if !this.handle_record(handler, message, shutdown).await {
                        return false;
                    }
                }
                true
            }));
            let handled = self.staying_in_group(handling, &mut carried).await;
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

    /// Drives `work` (a batch being handled) to its end while keeping this
    /// member in its group. Once a record waits for a retry, or the batch has
    /// taken a quarter of `max.poll.interval`, every assigned partition is
    /// paused and the consumer polled meanwhile: librdkafka then neither
    /// evicts the member nor fetches more. A record that arrives anyway (one
    /// fetched before the pause, or from a partition assigned since) joins
    /// `carried`, after every record of the batch, so lane order holds. The
    /// partitions are resumed when the batch is done.
    async fn staying_in_group<'c, F: Future>(
        &'c self,
        work: F,
        carried: &mut Vec<BorrowedMessage<'c>>,
    ) -> F::Output {
        // A retry of an earlier batch may have left a wake-up behind.
        let _ = self.retrying.notified().now_or_never();
        let mut work = std::pin::pin!(work);
        // The lag gauge shows a long outage growing, not the last batch's lag.
        let mut lag_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + LAG_INTERVAL, LAG_INTERVAL);
        let mut slow = std::pin::pin!(tokio::time::sleep(self.settings.max_poll_interval / 4));
        let mut polling = false;
        let mut paused = None;
        let output = loop {
            tokio::select! {
                biased;
                output = &mut work => break output,
                () = self.retrying.notified(), if !polling => {
                    polling = true;
                    paused = self.pause();
                }
                () = &mut slow, if !polling => {
                    polling = true;
                    paused = self.pause();
                }
                _ = lag_tick.tick(), if polling => self.record_lag(),
                received = self.consumer.recv(), if polling => match received {
                    Ok(message) => carried.push(message),
                    Err(error) => {
                        tracing::warn!(%error, group = %self.group, "Kafka receive failed while paused");
                    }
                },
            }
        };
        if let Some(partitions) = paused {
            self.resume(&partitions);
        }
        output
    }

    /// Pauses every partition assigned to this member; the ones paused.
    fn pause(&self) -> Option<TopicPartitionList> {
        let assignment = self
            .consumer
            .assignment()
            .inspect_err(|error| tracing::warn!(%error, group = %self.group, "cannot read the assignment to pause it"))
            .ok()?;
        self.consumer
            .pause(&assignment)
            .inspect_err(
                |error| tracing::warn!(%error, group = %self.group, "cannot pause the partitions"),
            )
            .ok()?;
        tracing::info!(group = %self.group, partitions = assignment.count(), "partitions paused while records are retried");
        metrics::gauge!("event_consumer_paused", "group" => self.group.clone()).set(1.0);
        Some(assignment)
    }

    fn resume(&self, partitions: &TopicPartitionList) {
        // Partitions revoked meanwhile are not ours to resume; the rest are.
        if let Err(error) = self.consumer.resume(partitions) {
            tracing::warn!(%error, group = %self.group, "cannot resume the partitions");
        }
        tracing::info!(group = %self.group, "partitions resumed");
        metrics::gauge!("event_consumer_paused", "group" => self.group.clone()).set(0.0);
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
        record_since_produced("event_consumer_start_lag_seconds", &self.group, message);
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
            Outcome::DeadLetter(letter) => {
                dead_letter::write(
                    &self.dead_letters,
                    &self.group,
                    message,
                    &letter,
                    &self.retrying,
                    shutdown,
                )
                .instrument(span)
                .await
            }
        }
    }

    /// Runs the handler on one record until it succeeds, is dead-lettered,
    /// or shutdown comes. Failures of the record count towards its attempts;
    /// waiting for an unreachable store does not.
    async fn process<H: EventHandler>(
        &self,
        handler: &H,
        message: &BorrowedMessage<'_>,
        shutdown: &Shutdown,
    ) -> Outcome {
        let event = match Event::from_message(message) {
            Ok(event) => event,
            Err(error) => {
                return Outcome::DeadLetter(DeadLetter {
                    class: "malformed",
                    reason: format!("malformed record: {error}"),
                    attempts: 0,
                });
            }
        };
        tracing::Span::current().record("messaging.message.id", tracing::field::display(event.id));
        let policy = self.settings.retry;
        let (mut failures, mut outages) = (0_u32, 0_u32);
        loop {
            let started = std::time::Instant::now();
            let (class, reason, backoff) = match handler.handle(&event).await {
                Ok(()) => {
                    metrics::histogram!("event_consumer_handle_seconds", "group" => self.group.clone())
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("events_consumed_total", "group" => self.group.clone(), "outcome" => "ok")
                        .increment(1);
                    return Outcome::Done;
                }
                Err(HandlerError::Reject(reason)) => {
                    return Outcome::DeadLetter(DeadLetter {
                        class: "rejected",
                        reason,
                        attempts: failures + 1,
                    });
                }
                Err(HandlerError::Failed(reason)) => {
                    failures += 1;
                    if failures >= policy.max_attempts {
                        return Outcome::DeadLetter(DeadLetter {
                            class: "failed",
                            reason,
                            attempts: failures,
                        });
                    }
                    ("failed", reason, policy.backoff(failures))
                }
                Err(HandlerError::Unavailable(reason)) => {
                    outages += 1;
                    ("unavailable", reason, policy.backoff(outages))
                }
            };
            metrics::counter!("events_consumed_total", "group" => self.group.clone(), "outcome" => "retry")
                .increment(1);
            metrics::counter!(
                "event_retries_total",
                "group" => self.group.clone(),
                "topic" => message.topic().to_owned(),
                "class" => class
            )
            .increment(1);
            tracing::warn!(
                %reason,
                class,
                failures,
                max_attempts = policy.max_attempts,
                ?backoff,
                event_id = %event.id,
                "event handling failed; retrying"
            );
            self.retrying.notify_one();
            tokio::select! {
                _ = shutdown.cancelled() => return Outcome::Stopped,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

/// Records into the summary `name` how long ago `message` was produced (its
/// Kafka timestamp, set by the producer when the relay sent it). With
/// `outbox_relay_lag_seconds` on the producing side these split an event's
/// way from commit to handler: the relay, Kafka's delivery to the member
/// (`event_consumer_receive_lag_seconds`), the wait in the member's batch
/// behind other keys (`event_consumer_start_lag_seconds` minus it) and the
/// handler (`event_consumer_handle_seconds`).
fn record_since_produced(name: &'static str, group: &str, message: &BorrowedMessage<'_>) {
    let Some(produced) = message.timestamp().to_millis() else {
        return;
    };
    let now = chrono::Utc::now().timestamp_millis();
    metrics::histogram!(name, "group" => group.to_owned())
        .record((now - produced).max(0) as f64 / 1000.0);
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
