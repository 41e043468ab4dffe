//! The Redis cache-aside, observed in Redis itself: reads fill the cache
//! (with the TTL plus jitter), writes empty it, and a Redis that is down or
//! hangs leaves the cart working from PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test]
async fn reads_fill_the_cache_and_writes_invalidate_it() {
    let shop = Shop::start().await;
    let mut client = shop.client.clone();
    let user = "user-cache";

    add(&mut client, user, 1, 2).await.expect("add");
    assert_eq!(
        shop.cached(user).await,
        None,
        "a write leaves nothing cached"
    );
    get(&mut client, user).await.expect("get");
    assert!(shop.cached(user).await.is_some(), "a read fills the cache");
    let ttl = shop.cache_ttl_ms(user).await;
    assert!(
        (14 * 60_000..=20 * 60_000).contains(&ttl),
        "15 min plus up to 5 min of jitter, got {ttl} ms"
    );

    // Behind the cache's back: the next read still comes from Redis.
    let mut db = shop.database().await;
    sqlx::query("UPDATE carts SET items = '[]'::jsonb WHERE user_id = $1")
        .bind(user)
        .execute(&mut db)
        .await
        .expect("empty the row");
    let cached = get(&mut client, user).await.expect("get");
    assert_eq!(lines(&cached), vec![(1, 2)], "served from the cache");

    // Every kind of write invalidates; the next read is fresh from PostgreSQL.
    let written = add(&mut client, user, 2, 1).await.expect("add");
    assert_eq!(lines(&written), vec![(2, 1)]);
    assert_eq!(shop.cached(user).await, None, "AddItem invalidates");
    assert_eq!(lines(&get(&mut client, user).await.unwrap()), vec![(2, 1)]);
    assert!(shop.cached(user).await.is_some());

    update(&mut client, user, 2, 4).await.expect("update");
    assert_eq!(shop.cached(user).await, None, "UpdateItem invalidates");
    assert_eq!(lines(&get(&mut client, user).await.unwrap()), vec![(2, 4)]);

    remove(&mut client, user, 2).await.expect("remove");
    assert_eq!(shop.cached(user).await, None, "RemoveItem invalidates");
    assert!(get(&mut client, user).await.unwrap().items.is_empty());
    assert!(
        shop.cached(user).await.is_some(),
        "an empty cart is cached too"
    );

    add(&mut client, user, 3, 1).await.expect("add");
    get(&mut client, user).await.expect("get");
    clear(&mut client, user).await.expect("clear");
    assert_eq!(shop.cached(user).await, None, "ClearCart invalidates");
    assert!(get(&mut client, user).await.unwrap().items.is_empty());
    shop.stop().await;
}

/// Add, read, change, remove and clear, each answered within `limit`.
async fn shop_without_a_cache(client: &mut Client, limit: Duration) {
    let user = "user-no-cache";
    let timed = Instant::now();
    assert!(get(client, user).await.expect("get").items.is_empty());
    add(client, user, 1, 1).await.expect("add");
    let cart = add(client, user, 1, 1).await.expect("add again");
    assert_eq!(lines(&cart), vec![(1, 2)]);
    add(client, user, 4, 1).await.expect("add a monitor");
    assert_eq!(
        lines(&get(client, user).await.unwrap()),
        vec![(1, 2), (4, 1)]
    );
    update(client, user, 1, 5).await.expect("update");
    assert_eq!(
        lines(&get(client, user).await.unwrap()),
        vec![(1, 5), (4, 1)]
    );
    remove(client, user, 1).await.expect("remove");
    assert_eq!(lines(&get(client, user).await.unwrap()), vec![(4, 1)]);
    clear(client, user).await.expect("clear");
    assert!(get(client, user).await.unwrap().items.is_empty());
    // Twelve calls.
    assert!(
        timed.elapsed() < limit,
        "the flow took {:?}",
        timed.elapsed()
    );
}

#[tokio::test]
async fn the_cart_works_while_redis_is_down() {
    let port = closed_port().await;
    let shop = Shop::start_with(|config| {
        config.redis_url = format!("redis://127.0.0.1:{port}");
        config.cache_timeout = Duration::from_millis(100);
    })
    .await;
    let mut client = shop.client.clone();
    shop_without_a_cache(&mut client, Duration::from_secs(10)).await;
    shop.stop().await;
}

#[tokio::test]
async fn the_cart_works_while_redis_hangs() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().unwrap().port();
    let hanging = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let shop = Shop::start_with(|config| {
        config.redis_url = format!("redis://127.0.0.1:{port}");
        config.cache_timeout = Duration::from_millis(100);
    })
    .await;
    let mut client = shop.client.clone();
    // Each Redis call gives up after 100 ms; after a failure reads skip Redis
    // for a second; only invalidations still wait.
    shop_without_a_cache(&mut client, Duration::from_secs(10)).await;
    let user = "user-hanging";
    for _ in 0..5 {
        let timed = Instant::now();
        get(&mut client, user).await.expect("get");
        assert!(
            timed.elapsed() < Duration::from_secs(1),
            "a read took {:?}",
            timed.elapsed()
        );
    }
    shop.stop().await;
    hanging.abort();
}
