//! The cart service through its gRPC API, against a real PostgreSQL (one
//! fresh database per test) and the real product service: every RPC, every
//! refusal with its code, field and reason, concurrent writes, idle expiry.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use tonic::Code;

#[tokio::test]
async fn add_update_remove_and_clear() {
    let shop = Shop::start().await;
    let mut client = shop.client.clone();
    let user = "user-crud";

    let empty = get(&mut client, user).await.expect("empty cart");
    assert_eq!(empty.user_id, user);
    assert!(empty.items.is_empty());
    assert_eq!(empty.item_count, 0);
    assert_eq!(money(empty.total.as_ref()), (0, "USD"));

    let cart = add(&mut client, user, 1, 1).await.expect("add a laptop");
    let laptop = &cart.items[0];
    assert_eq!(laptop.name, "Laptop");
    assert_eq!(money(laptop.unit_price.as_ref()), (129_999, "USD"));
    assert_eq!(money(laptop.line_total.as_ref()), (129_999, "USD"));
    assert!(laptop.added_at.is_some() && cart.updated_at.is_some());

    add(&mut client, user, 2, 3).await.expect("add mice");
    let cart = add(&mut client, user, 1, 2)
        .await
        .expect("add more laptops");
    assert_eq!(
        lines(&cart),
        vec![(1, 3), (2, 3)],
        "adding adds to the line"
    );
    assert_eq!(cart.item_count, 6);
    assert_eq!(money(cart.total.as_ref()), (3 * 129_999 + 3 * 2_999, "USD"));
    assert_eq!(
        money(cart.items[0].line_total.as_ref()),
        (3 * 129_999, "USD")
    );

    let cart = update(&mut client, user, 2, 5).await.expect("update mice");
    assert_eq!(lines(&cart), vec![(1, 3), (2, 5)]);
    let cart = remove(&mut client, user, 1).await.expect("remove laptops");
    assert_eq!(lines(&cart), vec![(2, 5)]);
    assert_eq!(money(cart.total.as_ref()), (5 * 2_999, "USD"));
    assert_eq!(get(&mut client, user).await.expect("get"), cart);

    let cleared = clear(&mut client, user).await.expect("clear");
    assert!(cleared.items.is_empty());
    assert_eq!(money(cleared.total.as_ref()), (0, "USD"));
    let cart = get(&mut client, user).await.expect("get");
    assert!(cart.items.is_empty());
    assert_eq!(cart.item_count, 0);
    assert!(
        get(&mut client, "someone-else")
            .await
            .expect("get")
            .items
            .is_empty(),
        "carts are per user"
    );
    shop.stop().await;
}

#[tokio::test]
async fn bad_requests_name_their_field_or_reason() {
    let shop = Shop::start().await;
    let mut client = shop.client.clone();
    let user = "user-errors";

    let status = assert_refused(
        add(&mut client, user, 999, 1).await,
        Code::NotFound,
        "PRODUCT_NOT_FOUND",
    );
    assert!(status.message().contains("999"), "{}", status.message());

    for quantity in [0, -1, 100] {
        assert_invalid(add(&mut client, user, 1, quantity).await, "quantity");
    }
    for product_id in [0, -5] {
        assert_invalid(add(&mut client, user, product_id, 1).await, "product_id");
        assert_invalid(update(&mut client, user, product_id, 1).await, "product_id");
        assert_invalid(remove(&mut client, user, product_id).await, "product_id");
    }
    let too_long = "u".repeat(129);
    for user in ["", too_long.as_str()] {
        assert_invalid(get(&mut client, user).await, "user_id");
        assert_invalid(add(&mut client, user, 1, 1).await, "user_id");
        assert_invalid(update(&mut client, user, 1, 1).await, "user_id");
        assert_invalid(remove(&mut client, user, 1).await, "user_id");
        assert_invalid(clear(&mut client, user).await, "user_id");
    }
    let longest = "u".repeat(128);
    assert!(
        get(&mut client, &longest).await.is_ok(),
        "128 characters are fine"
    );

    add(&mut client, user, 1, 98).await.expect("98 laptops");
    let over = add(&mut client, user, 1, 2).await;
    assert_invalid(over.clone(), "quantity");
    assert!(
        over.unwrap_err().message().contains("99"),
        "says what the limit is"
    );
    let cart = get(&mut client, user).await.expect("get");
    assert_eq!(lines(&cart), vec![(1, 98)], "a refused add changes nothing");
    let cart = add(&mut client, user, 1, 1).await.expect("99 is allowed");
    assert_eq!(lines(&cart), vec![(1, 99)]);

    for quantity in [0, -1, 100] {
        assert_invalid(update(&mut client, user, 1, quantity).await, "quantity");
    }
    assert_refused(
        update(&mut client, user, 3, 1).await,
        Code::NotFound,
        "ITEM_NOT_FOUND",
    );
    assert_refused(
        remove(&mut client, user, 3).await,
        Code::NotFound,
        "ITEM_NOT_FOUND",
    );
    assert_eq!(lines(&get(&mut client, user).await.unwrap()), vec![(1, 99)]);
    shop.stop().await;
}

#[tokio::test]
async fn a_cart_holds_at_most_50_products() {
    let shop = Shop::start().await;
    shop.stock_catalog(6..=51).await;
    let mut client = shop.client.clone();
    let user = "user-limit";
    for product_id in 1..=50 {
        add(&mut client, user, product_id, 1)
            .await
            .unwrap_or_else(|e| panic!("product {product_id}: {e:?}"));
    }
    let status = assert_refused(
        add(&mut client, user, 51, 1).await,
        Code::FailedPrecondition,
        "CART_LIMIT_EXCEEDED",
    );
    assert!(status.message().contains("50"), "{}", status.message());
    let cart = add(&mut client, user, 50, 2)
        .await
        .expect("more of a product already held");
    assert_eq!(cart.items.len(), 50);
    assert_eq!(cart.item_count, 52);
    assert_eq!(cart.items[49].name, "Product 50");
    shop.stop().await;
}

#[tokio::test]
async fn concurrent_writes_lose_nothing() {
    let shop = Shop::start().await;
    let user = "user-concurrent";
    // 40 adds racing on a cart that does not exist yet: 8 of each product.
    let adds = (0..40).map(|i| {
        let mut client = shop.client.clone();
        async move { add(&mut client, user, i % 5 + 1, 1).await }
    });
    for result in futures::future::join_all(adds).await {
        result.expect("every add succeeds");
    }
    let mut client = shop.client.clone();
    let cart = get(&mut client, user).await.expect("get");
    assert_eq!(lines(&cart), vec![(1, 8), (2, 8), (3, 8), (4, 8), (5, 8)]);

    // Updates and removals racing with adds of other products.
    let mixed = (1..=5).map(|product_id| {
        let mut client = shop.client.clone();
        async move {
            if product_id % 2 == 0 {
                remove(&mut client, user, product_id).await
            } else {
                update(&mut client, user, product_id, 50).await
            }
        }
    });
    for result in futures::future::join_all(mixed).await {
        result.expect("every write succeeds");
    }
    let cart = get(&mut client, user).await.expect("get");
    assert_eq!(lines(&cart), vec![(1, 50), (3, 50), (5, 50)]);
    shop.stop().await;
}

#[tokio::test]
async fn the_product_service_being_down_is_unavailable_not_internal() {
    let port = closed_port().await;
    let shop = Shop::start_with(|config| {
        config.product_url = format!("http://127.0.0.1:{port}");
        config.product_timeout = Duration::from_secs(2);
    })
    .await;
    let mut client = shop.client.clone();
    assert_refused(
        add(&mut client, "user-1", 1, 1).await,
        Code::Unavailable,
        "PRODUCT_SERVICE_UNAVAILABLE",
    );
    assert!(
        get(&mut client, "user-1")
            .await
            .expect("reads need no product service")
            .items
            .is_empty()
    );
    shop.stop().await;
}

async fn stored_carts(shop: &Shop, user: &str) -> i64 {
    let mut db = shop.database().await;
    sqlx::query_scalar("SELECT count(*) FROM carts WHERE user_id = $1")
        .bind(user)
        .fetch_one(&mut db)
        .await
        .expect("count carts")
}

#[tokio::test]
async fn idle_carts_expire_and_are_swept() {
    let shop = Shop::start_with(|config| {
        config.idle_expiry = Duration::from_secs(1);
        config.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let mut client = shop.client.clone();
    let user = "user-idle";
    add(&mut client, user, 1, 1).await.expect("add");
    assert_eq!(lines(&get(&mut client, user).await.unwrap()), vec![(1, 1)]);
    assert_eq!(stored_carts(&shop, user).await, 1);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while stored_carts(&shop, user).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper never deleted the cart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shop.cached(user).await,
        None,
        "the cache entry went with it"
    );
    let cart = get(&mut client, user).await.expect("get");
    assert!(cart.items.is_empty(), "{cart:?}");
    assert_eq!(cart.updated_at, None);
    shop.stop().await;
}

#[tokio::test]
async fn an_expired_cart_reads_empty_before_the_sweep() {
    let shop = Shop::start_with(|config| {
        config.idle_expiry = Duration::from_secs(1);
        config.sweep_interval = Duration::from_secs(3600);
    })
    .await;
    let mut client = shop.client.clone();
    let user = "user-expired";
    add(&mut client, user, 1, 2).await.expect("add");
    assert_eq!(lines(&get(&mut client, user).await.unwrap()), vec![(1, 2)]);
    let ttl = shop.cache_ttl_ms(user).await;
    assert!(
        (1..=1000).contains(&ttl),
        "cached no longer than the cart lives: {ttl} ms"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(get(&mut client, user).await.unwrap().items.is_empty());
    assert_eq!(stored_carts(&shop, user).await, 1, "not swept yet");
    let cart = add(&mut client, user, 2, 1)
        .await
        .expect("add after expiry");
    assert_eq!(
        lines(&cart),
        vec![(2, 1)],
        "the expired lines do not come back"
    );
    shop.stop().await;
}
