//! The gateway accepting the ID tokens of a real OpenID provider (the test
//! provider of `hack/oidc`, signed in to through the code flow with PKCE):
//! verified with the keys the provider publishes, refused for another
//! audience or a tampered signature, and accepted across a key rotation
//! without restarting the gateway — after which the old key's tokens are
//! refused, since the provider no longer publishes that key.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::json;
use storefront_runtime::oidc::test_provider::{CLIENT_ID, Client, TestProvider, USER};
use support::{Reply, Shop, token_for};

/// The gateway accepting `issuer`'s ID tokens issued to `audience`.
async fn start(issuer: &str, audience: &str) -> Shop {
    let issuer = issuer.to_owned();
    let audience = audience.to_owned();
    Shop::builder()
        .config(move |c| {
            c.oidc_issuer = Some(issuer);
            c.oidc_audience = Some(audience);
        })
        .start()
        .await
}

async fn cart(shop: &Shop, token: &str) -> Reply {
    shop.get("/api/v1/cart", Some(token)).await
}

/// Asserts a 401 `invalid_token` whose detail says `why`.
fn refused_because(reply: &Reply, why: &str) {
    let problem = reply.problem(401, "invalid_token");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(why), "{problem}");
}

/// The token with its payload's last character changed: the signature no
/// longer matches.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("mallory");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn id_tokens_of_the_issuer_are_verified_with_its_keys() {
    let provider = TestProvider::start().await;
    let shop = start(&provider.issuer, CLIENT_ID).await;
    let id_token = provider.id_token().await;

    let body = cart(&shop, &id_token).await.json(200).clone();
    assert_eq!(body["items"], json!([]));
    // The user is the ID token's `sub`.
    shop.send(
        Method::POST,
        "/api/v1/cart/items",
        Some(&id_token),
        Some(json!({"product_id": 2, "quantity": 1})),
    )
    .await
    .json(201);
    assert_eq!(shop.carts.quantities(USER), vec![(2, 1)]);

    cart(&shop, &tampered(&id_token))
        .await
        .problem(401, "invalid_token");
    // Tokens signed with the gateway's own secret still work alongside.
    cart(&shop, &token_for("bob")).await.json(200);
    shop.stop().await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let provider = TestProvider::start().await;
    let shop = start(&provider.issuer, "some-other-client").await;
    let id_token = provider.id_token().await;
    refused_because(
        &cart(&shop, &id_token).await,
        "not issued to some-other-client",
    );
    shop.stop().await;
}

#[tokio::test]
async fn a_key_rotation_needs_no_gateway_restart() {
    let mut provider = TestProvider::start_with(Client::default()).await;
    let shop = start(&provider.issuer, CLIENT_ID).await;
    let before = provider.id_token().await;
    cart(&shop, &before).await.json(200);

    // The provider restarts with a new signing key.
    provider.restart().await;
    let after = provider.id_token().await;
    // The unknown kid makes the gateway fetch the keys again — at once, or
    // once 10 s have passed since its last fetch (the rate limit).
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let reply = cart(&shop, &after).await;
        if reply.status == 200 {
            break;
        }
        reply.problem(401, "invalid_token");
        assert!(Instant::now() < deadline, "the new key was never fetched");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The old key is no longer published: its tokens are refused now, though
    // they have not expired (the provider withdrew the key).
    refused_because(
        &cart(&shop, &before).await,
        "no signing key of the issuer matches",
    );
    shop.stop().await;
}

#[tokio::test]
async fn an_unreachable_issuer_does_not_stop_the_gateway() {
    // Nothing listens there yet: the gateway starts, and is ready.
    let provider = TestProvider::start().await;
    let id_token = provider.id_token().await;
    let issuer = provider.issuer.clone();
    drop(provider);
    let shop = start(&issuer, CLIENT_ID).await;
    shop.get("/readyz", None).await.json(200);
    cart(&shop, &id_token).await.problem(401, "invalid_token");
    cart(&shop, &token_for("bob")).await.json(200);
    shop.stop().await;
}

#[tokio::test]
async fn an_issuer_without_an_audience_is_a_configuration_error() {
    let (listener, _) = storefront_runtime::testing::loopback_listener().await;
    let mut config = support::config("http://127.0.0.1:9");
    config.oidc_issuer = Some("http://127.0.0.1:9/".into());
    let outcome =
        storefront_gateway::run(config, listener, storefront_runtime::Shutdown::new()).await;
    let message = outcome.expect_err("refused").to_string();
    assert!(message.contains("--oidc-audience"), "{message}");
}
