//! The outbox relay and the event consumer against a real PostgreSQL and
//! Kafka: committed events are published once, in order per key, rolled-back
//! ones never; consumed records are committed only when handled, failures
//! are retried a bounded number of times and an unreachable store for as
//! long as it takes, and records that cannot be handled reach the DLQ.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sqlx::PgPool;
use storefront_runtime::consumer::{
    ConsumerSettings, EventConsumer, EventHandler, HandlerError, RetryPolicy,
};
use storefront_runtime::events::{self, Event, dead_letter_topic};
use storefront_runtime::outbox::{self, OutboxRelay};
use storefront_runtime::testing::{fresh_database, kafka_bootstrap_servers};
use storefront_runtime::{Shutdown, kafka};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Step {
    user: String,
    n: u32,
}

async fn topic_pair(label: &str) -> String {
    let topic = format!("test-{label}-{}", uuid::Uuid::new_v4().simple());
    let admin = kafka::admin(&kafka_bootstrap_servers()).expect("admin");
    kafka::ensure_topic(&admin, &topic, 3, 1)
        .await
        .expect("topic");
    kafka::ensure_topic(&admin, &dead_letter_topic(&topic), 1, 1)
        .await
        .expect("dlq topic");
    topic
}

async fn outbox_database() -> PgPool {
    let url = fresh_database("outbox").await;
    let pool = storefront_runtime::db::pg_pool(&url, 8)
        .await
        .expect("pool");
    sqlx::raw_sql(outbox::SCHEMA)
        .execute(&pool)
        .await
        .expect("outbox table");
    pool
}

/// Reads `count` records from `topic` (from the start) as events.
async fn read_events(topic: &str, count: usize) -> Vec<Event> {
    let consumer =
        kafka::consumer(&kafka_bootstrap_servers(), &format!("{topic}-reader")).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < count {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records within 60 s", seen.len()))
            .expect("stream")
            .expect("record");
        seen.push(Event::from_message(&message).expect("a CloudEvent"));
    }
    // Nothing more arrives: no duplicates.
    let extra = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
    assert!(extra.is_err(), "unexpected extra record");
    seen
}

#[tokio::test]
async fn committed_events_are_published_in_order_and_rolled_back_ones_never() {
    let pool = outbox_database().await;
    let topic = topic_pair("outbox").await;
    // 5 users x 8 steps, each in its own transaction; every 4th rolled back.
    let mut expected: HashMap<String, Vec<u32>> = HashMap::new();
    for n in 0..8 {
        for u in 0..5 {
            let user = format!("user-{u}");
            let event = Event::new(
                "dev.storefront.test.step.v1",
                "/storefront/test",
                &user,
                &Step {
                    user: user.clone(),
                    n,
                },
            )
            .expect("event");
            let mut tx = pool.begin().await.expect("begin");
            outbox::enqueue(&mut tx, &topic, &event)
                .await
                .expect("enqueue");
            if (n + u) % 4 == 3 {
                tx.rollback().await.expect("rollback");
            } else {
                tx.commit().await.expect("commit");
                expected.entry(user).or_default().push(n);
            }
        }
    }
    let total: usize = expected.values().map(Vec::len).sum();

    // Two relays side by side, as two replicas would run.
    let producer = kafka::producer(&kafka_bootstrap_servers()).expect("producer");
    let shutdown = Shutdown::new();
    let relays: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(OutboxRelay::new(pool.clone(), producer.clone()).run(shutdown.clone()))
        })
        .collect();

    let received = read_events(&topic, total).await;
    let mut per_user: HashMap<String, Vec<u32>> = HashMap::new();
    for event in &received {
        assert_eq!(event.event_type, "dev.storefront.test.step.v1");
        assert_eq!(event.source, "/storefront/test");
        let step: Step = event.decode().expect("payload");
        assert_eq!(step.user, event.key, "the key is the user");
        per_user.entry(event.key.clone()).or_default().push(step.n);
    }
    assert_eq!(
        per_user, expected,
        "every committed event once, in order per user"
    );

    let backlog = OutboxRelay::new(pool.clone(), producer)
        .backlog()
        .await
        .expect("backlog");
    assert_eq!(backlog, 0);
    shutdown.cancel();
    for relay in relays {
        relay.await.expect("relay task");
    }
}

#[tokio::test]
async fn the_relay_keeps_events_while_kafka_is_unreachable() {
    let pool = outbox_database().await;
    let topic = topic_pair("outbox-down").await;
    let event = Event::new(
        "dev.storefront.test.step.v1",
        "/storefront/test",
        "u",
        &Step {
            user: "u".into(),
            n: 1,
        },
    )
    .expect("event");
    let mut tx = pool.begin().await.expect("begin");
    outbox::enqueue(&mut tx, &topic, &event)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    // A producer pointed at a port where no broker listens.
    let dead = storefront_runtime::testing::loopback_listener().await;
    let unreachable = dead.0.local_addr().expect("addr").to_string();
    drop(dead);
    let producer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &unreachable)
        .set("message.timeout.ms", "2000")
        .create()
        .expect("producer");
    let relay = OutboxRelay::new(pool.clone(), producer);
    assert!(
        relay.publish_batch().await.is_err(),
        "publishing to nowhere fails"
    );
    assert_eq!(
        relay.backlog().await.expect("backlog"),
        1,
        "the event is kept"
    );

    // With Kafka reachable the same row goes out.
    let relay = OutboxRelay::new(
        pool.clone(),
        kafka::producer(&kafka_bootstrap_servers()).expect("producer"),
    );
    assert_eq!(relay.publish_batch().await.expect("publish"), 1);
    let received = read_events(&topic, 1).await;
    assert_eq!(received[0].id, event.id);
}

async fn enqueue_step(pool: &PgPool, topic: &str, user: &str, n: u32) -> Event {
    let event = Event::new(
        "dev.storefront.test.step.v1",
        "/storefront/test",
        user,
        &Step {
            user: user.to_owned(),
            n,
        },
    )
    .expect("event");
    let mut tx = pool.begin().await.expect("begin");
    outbox::enqueue(&mut tx, topic, &event)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    event
}

/// The relay claims the rows a commit named by their id, but never a row
/// whose key still has an earlier pending row, nor one already published.
#[tokio::test]
async fn named_rows_are_claimed_by_id_in_key_order() {
    let pool = outbox_database().await;
    let topic = topic_pair("named").await;
    let a1 = enqueue_step(&pool, &topic, "a", 1).await;
    let a2 = enqueue_step(&pool, &topic, "a", 2).await;
    let b1 = enqueue_step(&pool, &topic, "b", 1).await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("ids");
    let relay = OutboxRelay::new(
        pool.clone(),
        kafka::producer(&kafka_bootstrap_servers()).expect("producer"),
    );
    assert_eq!(
        relay
            .publish_named(&[ids[1], ids[2]])
            .await
            .expect("publish"),
        1,
        "b's row goes; a's second waits for a's first"
    );
    assert_eq!(relay.backlog().await.expect("backlog"), 2);
    assert_eq!(relay.publish_named(&[ids[0]]).await.expect("publish"), 1);
    assert_eq!(relay.publish_named(&[ids[1]]).await.expect("publish"), 1);
    assert_eq!(
        relay.publish_named(&ids).await.expect("publish"),
        0,
        "published rows are not claimed again"
    );
    assert_eq!(relay.backlog().await.expect("backlog"), 0);
    let received: Vec<uuid::Uuid> = read_events(&topic, 3).await.iter().map(|e| e.id).collect();
    let at = |id| received.iter().position(|r| *r == id).expect("received");
    assert!(at(a1.id) < at(a2.id), "a's events in their order");
    assert!(received.contains(&b1.id));
}

/// Events committed while the relay runs are published from their
/// notifications, a user's in the order they were committed.
#[tokio::test]
async fn events_committed_while_the_relay_runs_go_out_in_order() {
    let pool = outbox_database().await;
    let topic = topic_pair("live").await;
    let producer = kafka::producer(&kafka_bootstrap_servers()).expect("producer");
    let shutdown = Shutdown::new();
    let relay = tokio::spawn(OutboxRelay::new(pool.clone(), producer).run(shutdown.clone()));
    // Let the relay start listening.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writers: Vec<_> = (0..4)
        .map(|u| {
            let (pool, topic) = (pool.clone(), topic.clone());
            tokio::spawn(async move {
                for n in 0..6 {
                    enqueue_step(&pool, &topic, &format!("user-{u}"), n).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut per_user: HashMap<String, Vec<u32>> = HashMap::new();
    for event in read_events(&topic, 24).await {
        let step: Step = event.decode().expect("payload");
        per_user.entry(event.key.clone()).or_default().push(step.n);
    }
    for u in 0..4 {
        assert_eq!(per_user[&format!("user-{u}")], (0..6).collect::<Vec<_>>());
    }
    shutdown.cancel();
    relay.await.expect("relay stops");
}

/// Records what it handled; fails the first two attempts of step 2 (fewer
/// than it gets) and rejects step 5.
#[derive(Clone, Default)]
struct Recorder {
    handled: Arc<Mutex<Vec<u32>>>,
    attempts: Arc<Mutex<HashMap<u32, u32>>>,
}

impl EventHandler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let step: Step = event
            .decode()
            .map_err(|e| HandlerError::Reject(e.to_string()))?;
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let a = attempts.entry(step.n).or_default();
            *a += 1;
            *a
        };
        if step.n == 2 && attempt <= 2 {
            return Err(HandlerError::Failed("serialization failure".into()));
        }
        if step.n == 5 {
            return Err(HandlerError::Reject("step 5 is not acceptable".into()));
        }
        self.handled.lock().unwrap().push(step.n);
        Ok(())
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_consumer_retries_dead_letters_and_commits_what_it_handled() {
    let bootstrap = kafka_bootstrap_servers();
    let topic = topic_pair("consumer").await;
    let group = format!("{topic}-group");
    let producer = kafka::producer(&bootstrap).expect("producer");
    // One key, so one partition and one order: steps 1..=6 with a poison record after step 3.
    for n in 1..=6 {
        let event = Event::new(
            "dev.storefront.test.step.v1",
            "/storefront/test",
            "same-user",
            &Step {
                user: "same-user".into(),
                n,
            },
        )
        .expect("event");
        events::publish(&producer, &topic, &event)
            .await
            .expect("publish");
        if n == 3 {
            let headers = OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key("same-user")
                        .payload("not a cloud event")
                        .headers(headers),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("poison");
        }
    }

    let recorder = Recorder::default();
    let shutdown = Shutdown::new();
    let consumer = EventConsumer::new(&bootstrap, &group, &[&topic]).expect("consumer");
    let task = tokio::spawn(consumer.run(recorder.clone(), shutdown.clone()));
    wait_until("steps 1,2,3,4,6", || {
        recorder.handled.lock().unwrap().len() == 5
    })
    .await;
    assert_eq!(
        *recorder.handled.lock().unwrap(),
        vec![1, 2, 3, 4, 6],
        "in order, step 5 rejected"
    );
    assert_eq!(
        recorder.attempts.lock().unwrap()[&2],
        3,
        "step 2 retried until it succeeded"
    );
    shutdown.cancel();
    task.await.expect("consumer task");

    // The DLQ holds the poison record and the rejected step, with reasons.
    let dlq = kafka::consumer(&bootstrap, &format!("{topic}-dlq-reader")).expect("dlq consumer");
    dlq.subscribe(&[&dead_letter_topic(&topic)])
        .expect("subscribe");
    let mut reasons = Vec::new();
    let mut stream = dlq.stream();
    while reasons.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("dead letters within 60 s")
            .expect("stream")
            .expect("record");
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header("dlq_topic").as_deref(), Some(topic.as_str()));
        assert_eq!(header("dlq_group").as_deref(), Some(group.as_str()));
        assert_eq!(message.key(), Some(&b"same-user"[..]));
        reasons.push(header("dlq_reason").expect("reason"));
    }
    assert!(reasons[0].contains("malformed record"), "{reasons:?}");
    assert!(
        reasons[1].contains("step 5 is not acceptable"),
        "{reasons:?}"
    );
    drop(stream);

    // Offsets were committed: a new member of the group sees only new records.
    let event = Event::new(
        "dev.storefront.test.step.v1",
        "/storefront/test",
        "same-user",
        &Step {
            user: "same-user".into(),
            n: 7,
        },
    )
    .expect("event");
    events::publish(&producer, &topic, &event)
        .await
        .expect("publish");
    let again = Recorder::default();
    let shutdown = Shutdown::new();
    let consumer = EventConsumer::new(&bootstrap, &group, &[&topic]).expect("consumer");
    let task = tokio::spawn(consumer.run(again.clone(), shutdown.clone()));
    wait_until("step 7", || !again.handled.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *again.handled.lock().unwrap(),
        vec![7],
        "nothing handled twice"
    );
    shutdown.cancel();
    task.await.expect("consumer task");
}

/// Holds every event of `waiting` until an event of another key is handled.
#[derive(Clone)]
struct Rendezvous {
    other_handled: Arc<tokio::sync::Notify>,
    order: Arc<Mutex<Vec<String>>>,
}

impl EventHandler for Rendezvous {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let step: Step = event
            .decode()
            .map_err(|e| HandlerError::Reject(e.to_string()))?;
        if event.key == "waiting" {
            self.other_handled.notified().await;
        } else {
            self.other_handled.notify_one();
        }
        self.order
            .lock()
            .unwrap()
            .push(format!("{}-{}", event.key, step.n));
        Ok(())
    }
}

#[tokio::test]
async fn different_keys_are_handled_side_by_side() {
    let bootstrap = kafka_bootstrap_servers();
    let admin = kafka::admin(&bootstrap).expect("admin");
    // One partition: only concurrency across keys lets "other" pass "waiting".
    let topic = format!("test-lanes-{}", uuid::Uuid::new_v4().simple());
    kafka::ensure_topic(&admin, &topic, 1, 1)
        .await
        .expect("topic");
    let producer = kafka::producer(&bootstrap).expect("producer");
    for (key, n) in [("waiting", 1), ("other", 1)] {
        let event = Event::new(
            "dev.storefront.test.step.v1",
            "/storefront/test",
            key,
            &Step {
                user: key.into(),
                n,
            },
        )
        .expect("event");
        events::publish(&producer, &topic, &event)
            .await
            .expect("publish");
    }
    let handler = Rendezvous {
        other_handled: Arc::new(tokio::sync::Notify::new()),
        order: Arc::default(),
    };
    let shutdown = Shutdown::new();
    let consumer =
        EventConsumer::new(&bootstrap, &format!("{topic}-group"), &[&topic]).expect("consumer");
    let task = tokio::spawn(consumer.run(handler.clone(), shutdown.clone()));
    wait_until("both events", || handler.order.lock().unwrap().len() == 2).await;
    assert_eq!(*handler.order.lock().unwrap(), vec!["other-1", "waiting-1"]);
    shutdown.cancel();
    task.await.expect("consumer task");
}

/// Reads `count` records of `topic`'s dead-letter topic, from its start.
async fn dead_letters(topic: &str, count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let bootstrap = kafka_bootstrap_servers();
    let reader = kafka::consumer(
        &bootstrap,
        &format!("{topic}-dlq-reader-{}", uuid::Uuid::new_v4()),
    )
    .expect("dlq consumer");
    reader
        .subscribe(&[&dead_letter_topic(topic)])
        .expect("subscribe");
    let mut records = Vec::new();
    while records.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(60), reader.recv())
            .await
            .expect("dead letters within 60 s")
            .expect("record");
        records.push(message.detach());
    }
    records
}

fn header(message: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

async fn publish_steps(topic: &str, key: &str, steps: std::ops::RangeInclusive<u32>) {
    let producer = kafka::producer(&kafka_bootstrap_servers()).expect("producer");
    for n in steps {
        let event = Event::new(
            "dev.storefront.test.step.v1",
            "/storefront/test",
            key,
            &Step {
                user: key.into(),
                n,
            },
        )
        .expect("event");
        events::publish(&producer, topic, &event)
            .await
            .expect("publish");
    }
}

/// Fails step 3 on every attempt, as a record the store keeps refusing
/// (for a reason that is not "unreachable") would.
#[derive(Clone, Default)]
struct Stubborn {
    handled: Arc<Mutex<Vec<u32>>>,
    attempts: Arc<Mutex<HashMap<u32, u32>>>,
}

impl EventHandler for Stubborn {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let step: Step = event
            .decode()
            .map_err(|e| HandlerError::Reject(e.to_string()))?;
        *self.attempts.lock().unwrap().entry(step.n).or_default() += 1;
        if step.n == 3 {
            return Err(HandlerError::Failed(
                "step 3 breaks a rule the store enforces".into(),
            ));
        }
        self.handled.lock().unwrap().push(step.n);
        Ok(())
    }
}

#[tokio::test]
async fn a_record_that_keeps_failing_is_dead_lettered_after_its_attempts() {
    let bootstrap = kafka_bootstrap_servers();
    let topic = topic_pair("stubborn").await;
    let group = format!("{topic}-group");
    // One key: one partition, one order.
    publish_steps(&topic, "same-user", 1..=5).await;

    let handler = Stubborn::default();
    let shutdown = Shutdown::new();
    let settings = ConsumerSettings {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        ..ConsumerSettings::default()
    };
    let consumer =
        EventConsumer::with_settings(&bootstrap, &group, &[&topic], &settings).expect("consumer");
    let task = tokio::spawn(consumer.run(handler.clone(), shutdown.clone()));
    wait_until("steps 1, 2, 4 and 5", || {
        handler.handled.lock().unwrap().len() == 4
    })
    .await;
    assert_eq!(
        *handler.handled.lock().unwrap(),
        vec![1, 2, 4, 5],
        "the records behind the failing one are handled, in order"
    );
    assert_eq!(
        handler.attempts.lock().unwrap()[&3],
        4,
        "the failing record got exactly its attempts"
    );

    let letters = dead_letters(&topic, 1).await;
    let letter = &letters[0];
    let step: Step = serde_json::from_slice(letter.payload().expect("payload")).expect("step");
    assert_eq!(step.n, 3, "the original record is kept");
    assert_eq!(letter.key(), Some(&b"same-user"[..]));
    let reason = header(letter, "dlq_reason").expect("dlq_reason");
    assert!(
        reason.contains("step 3 breaks a rule the store enforces"),
        "{reason}"
    );
    assert_eq!(header(letter, "dlq_error_class").as_deref(), Some("failed"));
    assert_eq!(header(letter, "dlq_attempts").as_deref(), Some("4"));
    assert_eq!(header(letter, "dlq_group").as_deref(), Some(group.as_str()));
    assert_eq!(
        header(letter, "ce_type").as_deref(),
        Some("dev.storefront.test.step.v1")
    );
    shutdown.cancel();
    task.await.expect("consumer task");
}

/// Step 2 finds its store unreachable until `back` (counted from its first
/// attempt), then succeeds.
#[derive(Clone)]
struct Outage {
    lasts: Duration,
    began: Arc<Mutex<Option<std::time::Instant>>>,
    handled: Arc<Mutex<Vec<u32>>>,
    attempts: Arc<Mutex<HashMap<u32, u32>>>,
}

impl EventHandler for Outage {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let step: Step = event
            .decode()
            .map_err(|e| HandlerError::Reject(e.to_string()))?;
        *self.attempts.lock().unwrap().entry(step.n).or_default() += 1;
        if step.n == 2 {
            let began = *self
                .began
                .lock()
                .unwrap()
                .get_or_insert_with(std::time::Instant::now);
            if began.elapsed() < self.lasts {
                return Err(HandlerError::Unavailable(
                    "connection refused (the store is down)".into(),
                ));
            }
        }
        self.handled.lock().unwrap().push(step.n);
        Ok(())
    }
}

/// An outage longer than the attempts a failing record gets, and twice as
/// long as `max.poll.interval.ms`: the record waits for the store instead of
/// going to the DLQ, and the member keeps its partitions meanwhile (a member
/// evicted for not polling would see its uncommitted records again).
#[tokio::test]
async fn an_unreachable_store_is_waited_for_and_the_member_stays_in_its_group() {
    let bootstrap = kafka_bootstrap_servers();
    let topic = topic_pair("outage").await;
    let group = format!("{topic}-group");
    publish_steps(&topic, "same-user", 1..=3).await;

    let handler = Outage {
        lasts: Duration::from_secs(16),
        began: Arc::default(),
        handled: Arc::default(),
        attempts: Arc::default(),
    };
    let settings = ConsumerSettings {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        },
        // The broker's smallest session timeout is 6 s; 7 s leaves room.
        max_poll_interval: Duration::from_secs(7),
    };
    let shutdown = Shutdown::new();
    let consumer =
        EventConsumer::with_settings(&bootstrap, &group, &[&topic], &settings).expect("consumer");
    let task = tokio::spawn(consumer.run(handler.clone(), shutdown.clone()));
    wait_until("steps 1, 2 and 3", || {
        handler.handled.lock().unwrap().len() >= 3
    })
    .await;
    // Time for a redelivery to show, had the member lost its partitions.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        *handler.handled.lock().unwrap(),
        vec![1, 2, 3],
        "each step once, in order"
    );
    assert!(
        handler.attempts.lock().unwrap()[&2] > 10,
        "step 2 was retried through the outage: {:?}",
        handler.attempts.lock().unwrap()
    );
    shutdown.cancel();
    task.await.expect("consumer task");

    let reader = kafka::consumer(&bootstrap, &format!("{topic}-watermarks")).expect("consumer");
    let (low, high) = reader
        .fetch_watermarks(&dead_letter_topic(&topic), 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(high - low, 0, "nothing dead-lettered");
}
