//! Events on Kafka, the one Storefront way: CloudEvents 1.0 in binary mode
//! (`ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time` and
//! `content-type` headers, plus the W3C `traceparent`/`tracestate`/`baggage`
//! of the transaction that produced the event), a JSON payload, and the user
//! id as the record key so one user's events stay in order.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// CheckoutCompleted and CheckoutFailed.
pub const CHECKOUT_EVENTS: &str = "checkout-events";
/// OrderCreated and OrderStatusChanged.
pub const ORDER_EVENTS: &str = "order-events";

/// The `ce_type` of each event.
pub mod event_type {
    pub const CHECKOUT_COMPLETED: &str = "dev.storefront.checkout.completed.v1";
    pub const CHECKOUT_FAILED: &str = "dev.storefront.checkout.failed.v1";
    pub const ORDER_CREATED: &str = "dev.storefront.order.created.v1";
    pub const ORDER_STATUS_CHANGED: &str = "dev.storefront.order.status_changed.v1";
}

/// The dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

const SPEC_VERSION: &str = "1.0";
const CONTENT_TYPE: &str = "application/json";
/// Record headers that carry trace context from producer to consumer.
pub const TRACE_HEADERS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event payload is not the expected JSON: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("record lacks CloudEvents header {0}")]
    MissingHeader(&'static str),
    #[error("record header {0} is malformed: {1}")]
    BadHeader(&'static str, String),
    #[error("record has no payload")]
    EmptyPayload,
}

/// One event, as written to the outbox and read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Uuid,
    pub event_type: String,
    /// Who produced it, e.g. `/storefront/checkout`.
    pub source: String,
    pub time: DateTime<Utc>,
    /// The record key: the user id.
    pub key: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
    /// W3C trace context and baggage of the producing transaction.
    pub trace_headers: BTreeMap<String, String>,
}

impl Event {
    /// A new event with a fresh id, the current time and the current trace context.
    pub fn new<T: Serialize>(
        event_type: &str,
        source: &str,
        key: &str,
        payload: &T,
    ) -> Result<Event, EventError> {
        Ok(Event {
            id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            source: source.to_owned(),
            time: Utc::now(),
            key: key.to_owned(),
            payload: serde_json::to_vec(payload)?,
            trace_headers: crate::telemetry::current_trace_headers(),
        })
    }

    /// The payload as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// The record headers: the CloudEvents attributes and the trace context.
    pub fn kafka_headers(&self) -> OwnedHeaders {
        let id = self.id.to_string();
        let time = self
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut headers = OwnedHeaders::new_with_capacity(6 + self.trace_headers.len())
            .insert(Header {
                key: "ce_specversion",
                value: Some(SPEC_VERSION),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(&id),
            })
            .insert(Header {
                key: "ce_type",
                value: Some(&self.event_type),
            })
            .insert(Header {
                key: "ce_source",
                value: Some(&self.source),
            })
            .insert(Header {
                key: "ce_time",
                value: Some(&time),
            })
            .insert(Header {
                key: "content-type",
                value: Some(CONTENT_TYPE),
            });
        for (key, value) in &self.trace_headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: Some(value),
            });
        }
        headers
    }

    /// Reads an event back from a Kafka record.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Result<Event, EventError> {
        let mut ce: BTreeMap<&str, String> = BTreeMap::new();
        let mut trace_headers = BTreeMap::new();
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                let Some(value) = header.value else { continue };
                let value = String::from_utf8_lossy(value).into_owned();
                if let Some(name) = TRACE_HEADERS.iter().find(|name| **name == header.key) {
                    trace_headers.insert((*name).to_owned(), value);
                } else {
                    ce.insert(header.key, value);
                }
            }
        }
        let mut take = |name: &'static str| ce.remove(name).ok_or(EventError::MissingHeader(name));
        let id = take("ce_id")?;
        let time = take("ce_time")?;
        let event_type = take("ce_type")?;
        let source = take("ce_source")?;
        let version = take("ce_specversion")?;
        if version != SPEC_VERSION {
            return Err(EventError::BadHeader("ce_specversion", version));
        }
        Ok(Event {
            id: Uuid::parse_str(&id).map_err(|e| EventError::BadHeader("ce_id", e.to_string()))?,
            event_type,
            source,
            time: DateTime::parse_from_rfc3339(&time)
                .map_err(|e| EventError::BadHeader("ce_time", e.to_string()))?
                .with_timezone(&Utc),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            payload: message.payload().ok_or(EventError::EmptyPayload)?.to_vec(),
            trace_headers,
        })
    }
}

/// Publishes `event` to `topic` and waits for the broker's acknowledgement.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    event: &Event,
) -> Result<(), KafkaError> {
    let record = FutureRecord::to(topic)
        .key(&event.key)
        .payload(&event.payload)
        .headers(event.kafka_headers());
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        checkout_id: String,
    }

    #[test]
    fn headers_carry_the_cloudevents_attributes() {
        let mut event = Event::new(
            event_type::CHECKOUT_FAILED,
            "/storefront/test",
            "user-1",
            &Sample {
                checkout_id: "c1".into(),
            },
        )
        .expect("event");
        event.trace_headers.insert(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        let headers = event.kafka_headers();
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert_eq!(
            names,
            [
                "ce_specversion",
                "ce_id",
                "ce_type",
                "ce_source",
                "ce_time",
                "content-type",
                "traceparent"
            ]
        );
        assert_eq!(
            event.decode::<Sample>().expect("decode"),
            Sample {
                checkout_id: "c1".into()
            }
        );
    }
}
