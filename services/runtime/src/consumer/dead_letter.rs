//! Copies a record the consumer gives up on to `<topic>.dlq`: the original
//! key, payload and headers, plus why, after how many attempts, and where it
//! came from.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{Notify, OnceCell};

use crate::events::dead_letter_topic;
use crate::{Shutdown, kafka};

/// The producer of a member's dead letters, made when the first is written.
pub(super) struct Producer {
    bootstrap_servers: String,
    made: OnceCell<FutureProducer>,
}

impl Producer {
    pub(super) fn new(bootstrap_servers: &str) -> Self {
        Producer {
            bootstrap_servers: bootstrap_servers.to_owned(),
            made: OnceCell::new(),
        }
    }

    async fn get(&self) -> Result<&FutureProducer, KafkaError> {
        self.made
            .get_or_try_init(|| async { kafka::producer(&self.bootstrap_servers) })
            .await
    }
}

/// Why a record is dead-lettered.
#[derive(Debug)]
pub(super) struct DeadLetter {
    /// `malformed` (not an event), `rejected` (the handler can never accept
    /// it) or `failed` (it failed on every attempt): the `dlq_error_class`
    /// header and the `class` label of `events_dead_lettered_total`.
    pub class: &'static str,
    pub reason: String,
    /// Handler attempts made (0 for a malformed record).
    pub attempts: u32,
}

/// Writes `message` to its dead-letter topic; true once Kafka has it
/// (retrying until then, and telling `retrying` so), false if shutdown came
/// first.
pub(super) async fn write(
    producer: &Producer,
    group: &str,
    message: &BorrowedMessage<'_>,
    letter: &DeadLetter,
    retrying: &Notify,
    shutdown: &Shutdown,
) -> bool {
    let topic = dead_letter_topic(message.topic());
    tracing::error!(
        reason = %letter.reason,
        class = letter.class,
        attempts = letter.attempts,
        dlq = %topic,
        partition = message.partition(),
        offset = message.offset(),
        "event dead-lettered"
    );
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let attempts = letter.attempts.to_string();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(header);
            }
        }
        for (key, value) in [
            ("dlq_reason", letter.reason.as_str()),
            ("dlq_error_class", letter.class),
            ("dlq_attempts", &attempts),
            ("dlq_topic", message.topic()),
            ("dlq_partition", &partition),
            ("dlq_offset", &offset),
            ("dlq_group", group),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        let sent = match producer.get().await {
            Ok(producer) => producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(error, _)| error),
            Err(error) => Err(error),
        };
        match sent {
            Ok(_) => {
                metrics::counter!("events_consumed_total", "group" => group.to_owned(), "outcome" => "dead_letter")
                    .increment(1);
                metrics::counter!(
                    "events_dead_lettered_total",
                    "group" => group.to_owned(),
                    "topic" => message.topic().to_owned(),
                    "class" => letter.class
                )
                .increment(1);
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, dlq = %topic, "cannot write to the dead-letter topic; retrying");
                // The lane waits: the member pauses its partitions meanwhile.
                retrying.notify_one();
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
