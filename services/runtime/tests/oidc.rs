//! `storefront_runtime::oidc` against the real test provider (`hack/oidc`):
//! discovery, an ID token from the code flow with PKCE verified with the
//! provider's published keys, and a key rotation (the provider restarted).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use storefront_runtime::oidc::test_provider::{CLIENT_ID, PASSWORD, TestProvider, USER, USER_NAME};
use storefront_runtime::oidc::{Discovery, Expected, Jwks, TokenError};

#[tokio::test]
async fn id_tokens_of_the_real_provider_verify_across_a_key_rotation() {
    let mut provider = TestProvider::start().await;
    let http = reqwest::Client::new();
    let discovery = Discovery::fetch(&http, &provider.issuer).await.unwrap();
    assert_eq!(discovery.issuer, provider.issuer);
    assert!(discovery.end_session_endpoint.is_some());
    assert!(
        discovery
            .token_endpoint_auth_methods_supported
            .contains(&"client_secret_basic".to_owned())
    );
    let jwks = Jwks::from_discovery(http, &discovery)
        .with_min_refresh_interval(Duration::from_millis(100));
    let issuer = provider.issuer.clone();
    let expected = Expected {
        issuer: &issuer,
        audience: CLIENT_ID,
        leeway: 30,
    };

    let first = provider.id_token().await;
    let claims: Value = jwks.verify(&first, &expected).await.unwrap();
    assert_eq!(claims["sub"], USER);
    assert_eq!(claims["name"], USER_NAME);
    assert_eq!(claims["email"], "alice@example.com");
    let header = jsonwebtoken::decode_header(&first).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let first_kid = header.kid.expect("the provider names its key");
    assert_eq!(jwks.key_ids(), vec![first_kid.clone()]);

    // Another audience is refused even with a good signature.
    let other = Expected {
        audience: "another-client",
        ..expected
    };
    assert!(matches!(
        jwks.verify::<Value>(&first, &other).await,
        Err(TokenError::Claims(_))
    ));

    // Restarted, the provider signs with a new key: fetched on first sight.
    provider.restart().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = provider.id_token().await;
    let claims: Value = jwks.verify(&second, &expected).await.unwrap();
    assert_eq!(claims["sub"], USER);
    assert_ne!(jwks.key_ids(), vec![first_kid.clone()]);
    // The old key is no longer published, so its tokens are refused.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        jwks.verify::<Value>(&first, &expected).await.err(),
        Some(TokenError::UnknownKey {
            kid: Some(first_kid)
        })
    );
}

#[tokio::test]
async fn a_wrong_password_stays_on_the_login_page() {
    let provider = TestProvider::start().await;
    let discovery = provider.discovery().await;
    let authorize = format!(
        "{}?response_type=code&client_id={CLIENT_ID}&redirect_uri={}&scope=openid&state=s&nonce=n",
        discovery.authorization_endpoint, "http%3A%2F%2F127.0.0.1%3A8081%2Fauth%2Fcallback"
    );
    let page = provider
        .log_in(&authorize, USER, "not-the-password")
        .await
        .expect_err("refused");
    assert!(page.contains("username or password wrong"), "{page}");
    let back = provider.log_in(&authorize, USER, PASSWORD).await.unwrap();
    assert!(
        back.as_str()
            .starts_with("http://127.0.0.1:8081/auth/callback?code="),
        "{back}"
    );
}
