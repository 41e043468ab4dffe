//! Single-flight: concurrent readers of a cart that is not cached cause one
//! database read, not one each. Alone in its test binary, because it reads
//! the process-wide metrics.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use sqlx::Connection;
use support::*;

/// The value of the series `series` (name plus labels, as rendered), 0 when absent.
fn metric(series: &str) -> f64 {
    storefront_runtime::metrics::recorder()
        .expect("metrics recorder")
        .render()
        .lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

const MISSES: &str = r#"cart_cache_requests_total{result="miss"}"#;

async fn lock_waiters(db: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(db)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test]
async fn concurrent_misses_share_one_database_read() {
    const READERS: usize = 32;
    // Installed before the service counts anything.
    metric("cart_db_loads_total");
    let shop = Shop::start().await;
    let mut client = shop.client.clone();
    let user = "user-single-flight";
    add(&mut client, user, 3, 2).await.expect("add");
    assert_eq!(shop.cached(user).await, None, "cold: nothing cached");

    // Hold every read of the carts table until all the readers have missed.
    let mut blocker = shop.database().await;
    let mut observer = shop.database().await;
    let mut tx = blocker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE carts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("lock the carts table");
    let loads_before = metric("cart_db_loads_total");
    let misses_before = metric(MISSES);

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let mut client = shop.client.clone();
            tokio::spawn(async move { get(&mut client, user).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metric(MISSES) - misses_before < READERS as f64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every reader missed the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while lock_waiters(&mut observer).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no read reached the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        lock_waiters(&mut observer).await,
        1,
        "one read waits, not {READERS}"
    );
    assert!(readers.iter().all(|reader| !reader.is_finished()));
    tx.rollback().await.expect("release the table");

    for reader in readers {
        let cart = reader.await.expect("reader task").expect("GetCart");
        assert_eq!(lines(&cart), vec![(3, 2)]);
    }
    assert_eq!(metric("cart_db_loads_total") - loads_before, 1.0);
    assert!(
        shop.cached(user).await.is_some(),
        "the one read filled the cache"
    );

    let hits = metric(r#"cart_cache_requests_total{result="hit"}"#);
    get(&mut client, user).await.expect("get");
    assert_eq!(
        metric(r#"cart_cache_requests_total{result="hit"}"#),
        hits + 1.0
    );
    assert_eq!(
        metric("cart_db_loads_total") - loads_before,
        1.0,
        "a hit reads no database"
    );
    shop.stop().await;
}
