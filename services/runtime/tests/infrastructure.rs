//! The local infrastructure (`make infra-up`) does what the services need:
//! Kafka creates topics through the admin API and carries records with keys
//! and headers from rdkafka's producer to a consumer group; Redis stores keys
//! with a TTL; PostgreSQL gives each test its own database; a consumer
//! notices a topic made after it subscribed within seconds.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sqlx::Connection;
use storefront_runtime::kafka;
use storefront_runtime::testing::{fresh_database, kafka_bootstrap_servers};

#[tokio::test]
async fn kafka_creates_topics_and_carries_records_with_headers() {
    let bootstrap = kafka_bootstrap_servers();
    let topic = format!("test-infra-{}", uuid::Uuid::new_v4().simple());
    let admin = kafka::admin(&bootstrap).expect("admin client");
    kafka::ensure_topic(&admin, &topic, 3, 1)
        .await
        .expect("create topic");
    kafka::ensure_topic(&admin, &topic, 3, 1)
        .await
        .expect("creating it again is a no-op");

    let producer = kafka::producer(&bootstrap).expect("producer");
    for i in 0..20 {
        let key = format!("user-{}", i % 4);
        let payload = format!("{{\"n\":{i}}}");
        let id = format!("id-{i}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_type",
                value: Some("dev.storefront.test.v1"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(&id),
            });
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }

    let consumer = kafka::consumer(&bootstrap, &format!("{topic}-group")).expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);

    let mut seen = HashMap::new();
    {
        let mut stream = consumer.stream();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < 20 {
            let message = tokio::time::timeout_at(deadline, stream.next())
                .await
                .expect("all 20 records within 60 s")
                .expect("stream open")
                .expect("no consumer error");
            let headers = message.headers().expect("headers travel");
            let ce_type = headers
                .iter()
                .find(|h| h.key == "ce_type")
                .and_then(|h| h.value);
            assert_eq!(ce_type, Some(&b"dev.storefront.test.v1"[..]));
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
            let payload = String::from_utf8(message.payload().expect("payload").to_vec())
                .expect("utf-8 payload");
            consumer
                .commit_message(&message, CommitMode::Sync)
                .expect("commit");
            seen.insert(payload, key);
        }
    }
    for i in 0..20 {
        assert_eq!(
            seen.get(&format!("{{\"n\":{i}}}")),
            Some(&format!("user-{}", i % 4))
        );
    }
    let deleted = admin
        .delete_topics(&[&topic], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("delete topic");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
}

/// A consumer that subscribes before one of its topics exists (a service
/// started before the operator made its topics) sees that topic within
/// seconds of its creation. librdkafka looks again only at its periodic
/// metadata refresh (5 minutes by default) once the member has an
/// assignment, here for the topic that did exist.
#[tokio::test]
async fn a_consumer_subscribed_before_its_topic_exists_gets_its_records_soon_after() {
    let bootstrap = kafka_bootstrap_servers();
    let late = format!("test-late-topic-{}", uuid::Uuid::new_v4().simple());
    let early = format!("{late}-early");
    let admin = kafka::admin(&bootstrap).expect("admin client");
    kafka::ensure_topic(&admin, &early, 1, 1)
        .await
        .expect("create topic");
    let consumer = kafka::consumer(&bootstrap, &format!("{late}-group")).expect("consumer");
    consumer.subscribe(&[&late, &early]).expect("subscribe");
    let (records, mut received) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut stream = consumer.stream();
        // Errors (a topic that does not exist yet) are not the end.
        while let Some(message) = stream.next().await {
            if let Ok(message) = message {
                let payload = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
                if records.send(payload).is_err() {
                    break;
                }
            }
        }
    });
    let producer = kafka::producer(&bootstrap).expect("producer");
    let send = |topic: String, payload: &'static str| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key("user-1").payload(payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("delivered");
        }
    };
    // The member has joined and reads the topic that exists.
    send(early.clone(), "early").await;
    let first = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("the existing topic is read");
    assert_eq!(first.as_deref(), Some(&b"early"[..]));

    kafka::ensure_topic(&admin, &late, 1, 1)
        .await
        .expect("create topic");
    send(late.clone(), "late").await;
    let produced = std::time::Instant::now();
    // Nothing is committed here, so the rebalance that brings the new topic
    // may hand the first record over again.
    let late_record = async {
        while let Some(payload) = received.recv().await {
            if payload == b"late" {
                return true;
            }
        }
        false
    };
    let arrived = tokio::time::timeout(Duration::from_secs(15), late_record)
        .await
        .expect("the new topic's record arrives within 15 s of being produced");
    assert!(arrived, "the consumer stopped");
    eprintln!(
        "received the new topic's record {:?} after it was produced",
        produced.elapsed()
    );
    reader.abort();
    let _ = admin
        .delete_topics(&[&late, &early], &rdkafka::admin::AdminOptions::new())
        .await;
}

#[tokio::test]
async fn redis_stores_keys_with_a_ttl() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".to_owned());
    let client = redis::Client::open(url.as_str()).expect("redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("reach Redis (run `make infra-up`)");
    let key = format!("test:{}", uuid::Uuid::new_v4());
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("cart")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .expect("SET");
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert_eq!(value, "cart");
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn postgres_gives_each_test_its_own_database() {
    let first = fresh_database("infra").await;
    let second = fresh_database("infra").await;
    assert_ne!(first, second);
    let mut conn = sqlx::PgConnection::connect(&first).await.expect("connect");
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert!(first.ends_with(&name), "{first} is database {name}");
}

/// A managed shop's service starts before the operator has made its role
/// and database: start-up waits for them instead of failing (and being
/// restarted) on "password authentication failed".
#[tokio::test]
async fn start_up_waits_for_a_role_and_database_made_after_it() {
    let admin = storefront_runtime::testing::admin_database_url();
    let name = format!(
        "test_later_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let url = {
        let base = storefront_runtime::testing::with_database(&admin, &name);
        let rest = base.split_once("://").expect("a URL").1;
        let host = rest
            .split_once('@')
            .expect("credentials in the admin URL")
            .1;
        format!("postgres://{name}:later-secret@{host}")
    };
    let waiting = tokio::spawn({
        let url = url.clone();
        async move { storefront_runtime::db::pg_pool_within(&url, 1, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "start-up gave up on a role that does not exist yet"
    );
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .expect("admin");
    // The name is ours (a fixed prefix and a UUID).
    for sql in [
        format!("CREATE ROLE \"{name}\" LOGIN PASSWORD 'later-secret'"),
        format!("CREATE DATABASE \"{name}\" OWNER \"{name}\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("provision");
    }
    let pool = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("start-up connects soon after the role and database exist")
        .expect("the task")
        .expect("a pool");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("a query");
    assert_eq!(one, 1);
    pool.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop the database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("drop the role");
}

/// A wrong password still fails the start, once the patience is over.
#[tokio::test]
async fn start_up_fails_on_a_wrong_password_after_its_patience() {
    let admin = storefront_runtime::testing::admin_database_url();
    let (scheme, rest) = admin.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').expect("credentials in the admin URL");
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let wrong = format!("{scheme}://{user}:not-the-password@{host}");
    let started = std::time::Instant::now();
    let error = storefront_runtime::db::pg_pool_within(&wrong, 1, Duration::from_secs(2))
        .await
        .expect_err("a wrong password never connects");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up before its patience"
    );
    assert!(
        error.to_string().contains("password authentication failed"),
        "{error}"
    );
}
