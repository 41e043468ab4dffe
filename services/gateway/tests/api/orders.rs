//! Orders: the caller's list and orders, and the admin's status changes.

use reqwest::Method;
use serde_json::json;
use storefront_proto::orders::v1::OrderStatus;

use crate::support::{Shop, admin_token, now_secs, token_for};

#[tokio::test]
async fn orders_are_listed_newest_first_in_the_documented_shape() {
    let shop = Shop::start().await;
    let now = now_secs() as i64;
    let oldest = shop.orders.seed("alice", now - 300);
    let newest = shop.orders.seed("alice", now - 10);
    let middle = shop.orders.seed("alice", now - 100);
    shop.orders.seed("bob", now);

    let reply = shop.get("/api/v1/orders", Some(&token_for("alice"))).await;
    let body = reply.json(200);
    let ids: Vec<_> = body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![newest.clone(), middle, oldest]);
    assert!(body.get("next_page_token").is_none());

    let order = &body["orders"][0];
    assert_eq!(order["id"], newest.as_str());
    assert!(uuid::Uuid::parse_str(order["checkout_id"].as_str().unwrap()).is_ok());
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["total"], "1359.97");
    assert_eq!(order["currency"], "USD");
    assert_eq!(
        order["items"],
        json!([
            {"product_id": 1, "name": "Laptop", "unit_price": "1299.99", "quantity": 1, "line_total": "1299.99"},
            {"product_id": 2, "name": "Mouse", "unit_price": "29.99", "quantity": 2, "line_total": "59.98"}
        ])
    );
    let created = order["created_at"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(created).expect("RFC 3339");
    assert_eq!(parsed.timestamp(), now - 10);

    let empty = shop.get("/api/v1/orders", Some(&token_for("carol"))).await;
    assert_eq!(empty.json(200)["orders"], json!([]));
    shop.stop().await;
}

#[tokio::test]
async fn one_order_belongs_to_its_owner() {
    let shop = Shop::start().await;
    let id = shop.orders.seed("alice", now_secs() as i64);
    let mine = shop
        .get(&format!("/api/v1/orders/{id}"), Some(&token_for("alice")))
        .await;
    let body = mine.json(200);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "CONFIRMED");

    shop.get(&format!("/api/v1/orders/{id}"), Some(&token_for("bob")))
        .await
        .problem(404, "order_not_found");
    shop.get(
        &format!("/api/v1/orders/{}", uuid::Uuid::new_v4()),
        Some(&token_for("alice")),
    )
    .await
    .problem(404, "order_not_found");
    shop.get("/api/v1/orders/12345", Some(&token_for("alice")))
        .await
        .problem(400, "invalid_order_id");
    // An admin may read anyone's order.
    shop.get(&format!("/api/v1/orders/{id}"), Some(&admin_token("ops")))
        .await
        .json(200);
    shop.stop().await;
}

#[tokio::test]
async fn admins_move_orders_along_the_allowed_transitions() {
    let shop = Shop::start().await;
    let id = shop.orders.seed("alice", now_secs() as i64);
    let path = format!("/api/v1/orders/{id}");
    let admin = admin_token("ops");
    let patch = |token: String, body: serde_json::Value| {
        let path = path.clone();
        let shop = &shop;
        async move {
            shop.send(Method::PATCH, &path, Some(&token), Some(body))
                .await
        }
    };

    patch(token_for("alice"), json!({"status": "SHIPPED"}))
        .await
        .problem(403, "forbidden");
    assert_eq!(shop.orders.status_of(&id), Some(OrderStatus::Confirmed));
    patch(String::new(), json!({"status": "SHIPPED"}))
        .await
        .problem(401, "invalid_token");

    let processing = patch(admin.clone(), json!({"status": "PROCESSING"})).await;
    let body = processing.json(200);
    assert_eq!(body["status"], "PROCESSING");
    assert_eq!(body["id"], id.as_str());
    let shipped = patch(admin.clone(), json!({"status": "shipped"})).await;
    assert_eq!(shipped.json(200)["status"], "SHIPPED");
    assert_eq!(shop.orders.status_of(&id), Some(OrderStatus::Shipped));

    patch(admin.clone(), json!({"status": "CANCELLED"}))
        .await
        .problem(409, "invalid_transition");
    patch(admin.clone(), json!({"status": "LOST"}))
        .await
        .problem(400, "invalid_status");
    patch(admin.clone(), json!({}))
        .await
        .problem(400, "invalid_status");
    shop.send(
        Method::PATCH,
        "/api/v1/orders/not-an-id",
        Some(&admin),
        Some(json!({"status": "SHIPPED"})),
    )
    .await
    .problem(400, "invalid_order_id");
    patch(admin, json!({"status": "DELIVERED"})).await.json(200);
    assert_eq!(shop.orders.status_of(&id), Some(OrderStatus::Delivered));
    shop.stop().await;
}
