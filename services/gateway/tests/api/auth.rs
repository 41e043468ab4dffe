//! Authentication: HS256, RS256 and ES256 tokens, and every way a token is refused.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{SECRET, Shop, fixture, now_secs, token_for};

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn rsa_key() -> EncodingKey {
    let pem = std::fs::read(fixture("rsa-private.pem")).expect("RSA fixture");
    EncodingKey::from_rsa_pem(&pem).expect("RSA key")
}

fn valid(sub: &str) -> Value {
    json!({"sub": sub, "exp": now_secs() + 3600, "iat": now_secs()})
}

/// Asserts a 401 problem with a Bearer challenge.
async fn refused(shop: &Shop, token: &str, code: &str) {
    let reply = shop.get("/api/v1/cart", Some(token)).await;
    reply.problem(401, code);
    let challenge = reply.header("www-authenticate").expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
}

#[tokio::test]
async fn tokens_that_must_be_refused() {
    let shop = Shop::start().await;

    let missing = shop.get("/api/v1/cart", None).await;
    missing.problem(401, "missing_token");
    assert!(
        missing
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );

    let expired = json!({"sub": "alice", "exp": now_secs() - 3600});
    refused(&shop, &hs256(&expired), "token_expired").await;

    let no_exp = json!({"sub": "alice"});
    refused(&shop, &hs256(&no_exp), "invalid_token").await;

    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"not-the-gateway-secret-at-all-000000"),
        &valid("alice"),
    );
    refused(&shop, &forged, "invalid_token").await;

    // A genuine token whose payload was swapped for another user's.
    let genuine = token_for("alice");
    let parts: Vec<_> = genuine.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(valid("mallory").to_string());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    refused(&shop, &tampered, "invalid_token").await;

    // `alg: none` with no signature at all.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!(
        "{header}.{}.",
        URL_SAFE_NO_PAD.encode(valid("alice").to_string())
    );
    refused(&shop, &unsigned, "invalid_token").await;

    // Key confusion: HS256 "signed" with the RSA public key as the secret.
    let public = std::fs::read(fixture("rsa-public.pem")).unwrap();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public),
        &valid("alice"),
    );
    refused(&shop, &confused, "invalid_token").await;

    refused(&shop, "not.a.jwt", "invalid_token").await;
    let basic = shop
        .request(Method::GET, "/api/v1/cart", None)
        .header("Authorization", "Basic YWxpY2U6cGFzcw==")
        .send()
        .await
        .unwrap();
    crate::support::read(basic)
        .await
        .problem(401, "invalid_token");

    assert_eq!(
        shop.cart.knob.calls(),
        0,
        "no refused request reached a backend"
    );
    shop.stop().await;
}

#[tokio::test]
async fn hs256_and_rs256_tokens_are_accepted() {
    let shop = Shop::start().await;
    shop.get("/api/v1/cart", Some(&token_for("alice")))
        .await
        .json(200);

    let rs256 = sign(Algorithm::RS256, &rsa_key(), &valid("rita"));
    shop.send(
        Method::POST,
        "/api/v1/cart/items",
        Some(&rs256),
        Some(json!({"product_id": 2, "quantity": 1})),
    )
    .await
    .json(201);
    assert_eq!(
        shop.carts.quantities("rita"),
        vec![(2, 1)],
        "the user is the RS256 token's sub"
    );
    shop.stop().await;
}

#[tokio::test]
async fn es256_tokens_are_accepted_with_an_ec_key() {
    let shop = Shop::builder()
        .config(|c| {
            c.jwt_secret = None;
            c.jwt_public_key_file = Some(fixture("ec-public.pem"));
        })
        .start()
        .await;
    let pem = std::fs::read(fixture("ec-private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let es256 = sign(Algorithm::ES256, &key, &valid("eve"));
    shop.get("/api/v1/cart", Some(&es256)).await.json(200);
    // With no secret configured, HS256 tokens are not accepted at all.
    refused(&shop, &token_for("alice"), "invalid_token").await;
    shop.stop().await;
}

#[tokio::test]
async fn a_numeric_user_id_claim_stands_in_for_sub() {
    let shop = Shop::start().await;
    let token = hs256(&json!({"user_id": 42, "exp": now_secs() + 3600}));
    shop.send(
        Method::POST,
        "/api/v1/cart/items",
        Some(&token),
        Some(json!({"product_id": 3, "quantity": 2})),
    )
    .await
    .json(201);
    assert_eq!(shop.carts.quantities("42"), vec![(3, 2)]);
    let same_user = shop.get("/api/v1/cart", Some(&token_for("42"))).await;
    assert_eq!(same_user.json(200)["items"][0]["product_id"], 3);
    shop.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_when_configured() {
    let shop = Shop::builder()
        .config(|c| {
            c.jwt_issuer = Some("https://auth.storefront.dev".into());
            c.jwt_audience = Some("storefront".into());
        })
        .start()
        .await;
    let exp = now_secs() + 3600;
    let good = hs256(
        &json!({"sub": "a", "exp": exp, "iss": "https://auth.storefront.dev", "aud": "storefront"}),
    );
    shop.get("/api/v1/cart", Some(&good)).await.json(200);
    let wrong_aud = hs256(
        &json!({"sub": "a", "exp": exp, "iss": "https://auth.storefront.dev", "aud": "other"}),
    );
    refused(&shop, &wrong_aud, "invalid_token").await;
    refused(&shop, &token_for("a"), "invalid_token").await;
    shop.stop().await;
}

#[tokio::test]
async fn the_gateway_will_not_start_without_a_key() {
    let (listener, _) = storefront_runtime::testing::loopback_listener().await;
    let mut config = crate::support::config("http://127.0.0.1:9");
    config.jwt_secret = None;
    config.jwt_public_key_file = None;
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        storefront_gateway::run(config, listener, storefront_runtime::Shutdown::new()),
    )
    .await
    .expect("fails fast");
    let message = outcome.expect_err("no key is a start-up error").to_string();
    assert!(message.contains("JWT_SECRET"), "{message}");
    assert!(message.contains("JWT_PUBLIC_KEY_FILE"), "{message}");

    let (listener, _) = storefront_runtime::testing::loopback_listener().await;
    let mut config = crate::support::config("http://127.0.0.1:9");
    config.jwt_public_key_file = Some(fixture("missing.pem"));
    let outcome =
        storefront_gateway::run(config, listener, storefront_runtime::Shutdown::new()).await;
    let message = outcome.expect_err("an unreadable key file").to_string();
    assert!(message.contains("missing.pem"), "{message}");
}
