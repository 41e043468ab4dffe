//! Kafka client settings, written once: an admin client for topics, an
//! idempotent producer, and consumers that commit only what they processed.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

fn base(bootstrap_servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("socket.keepalive.enable", "true");
    config
}

pub fn admin(bootstrap_servers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    base(bootstrap_servers).create()
}

/// An idempotent producer (`acks=all`): a retried send is never written twice.
pub fn producer(bootstrap_servers: &str) -> Result<FutureProducer, KafkaError> {
    base(bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .create()
}

/// How long a silent member stays in its group (librdkafka's default is 45 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a consumer looks at the cluster's topics again. librdkafka's
/// default, 5 minutes, is how long a member that already reads one topic
/// would take to notice another it subscribed to before it existed (a
/// service started before the operator made its topics).
const METADATA_REFRESH: Duration = Duration::from_secs(5);

/// A consumer in `group` that never auto-commits: offsets are committed by
/// the caller once a record's effects are durable.
pub fn consumer(bootstrap_servers: &str, group: &str) -> Result<StreamConsumer, KafkaError> {
    consumer_polled_within(bootstrap_servers, group, Duration::from_secs(300))
}

/// [`consumer`], evicted from its group by librdkafka when the application
/// has not polled it for `max_poll_interval` (`max.poll.interval.ms`, at
/// most 24 h; the session timeout is kept no longer than it).
pub fn consumer_polled_within(
    bootstrap_servers: &str,
    group: &str,
    max_poll_interval: Duration,
) -> Result<StreamConsumer, KafkaError> {
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let max_poll = millis(max_poll_interval).clamp(1, 86_400_000);
    let session = millis(SESSION_TIMEOUT).min(max_poll);
    base(bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("max.poll.interval.ms", max_poll.to_string())
        .set(
            "topic.metadata.refresh.interval.ms",
            millis(METADATA_REFRESH).to_string(),
        )
        .create()
}

/// Creates `name` with `partitions` partitions unless it exists already.
pub async fn ensure_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), KafkaError> {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&topic], &options).await?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}
