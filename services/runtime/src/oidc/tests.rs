//! Edge cases of discovery and the key cache, against a tiny provider on a
//! loopback port whose answers each test changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const AUDIENCE: &str = "storefront-web";

fn jwk(kid: &str) -> Value {
    let text = match kid {
        "rsa-1" => include_str!("testdata/rsa-1.jwk.json"),
        "rsa-2" => include_str!("testdata/rsa-2.jwk.json"),
        "ec-1" => include_str!("testdata/ec-1.jwk.json"),
        _ => panic!("no test key {kid}"),
    };
    serde_json::from_str(text).unwrap()
}

fn key_set(kids: &[&str]) -> Value {
    json!({"keys": kids.iter().map(|kid| jwk(kid)).collect::<Vec<_>>()})
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What the fake provider answers.
struct Answers {
    issuer: Option<String>,
    jwks: Value,
    jwks_status: StatusCode,
    discoveries: usize,
    fetches: usize,
}

type Shared = Arc<Mutex<Answers>>;

struct Provider {
    issuer: String,
    answers: Shared,
    shutdown: Shutdown,
}

impl Provider {
    async fn start(kids: &[&str]) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, kids)
    }

    fn serve(listener: tokio::net::TcpListener, kids: &[&str]) -> Provider {
        let issuer = format!("http://{}/", listener.local_addr().unwrap());
        let answers = Arc::new(Mutex::new(Answers {
            issuer: None,
            jwks: key_set(kids),
            jwks_status: StatusCode::OK,
            discoveries: 0,
            fetches: 0,
        }));
        let app = axum::Router::new()
            .route(DISCOVERY_PATH, get(discovery))
            .route("/keys", get(keys))
            .with_state((issuer.clone(), answers.clone()));
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Provider {
            issuer,
            answers,
            shutdown,
        }
    }

    fn set(&self, change: impl FnOnce(&mut Answers)) {
        change(&mut self.answers.lock().unwrap());
    }

    fn fetches(&self) -> usize {
        self.answers.lock().unwrap().fetches
    }

    fn jwks(&self) -> Jwks {
        Jwks::for_issuer(reqwest::Client::new(), &self.issuer)
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            issuer: &self.issuer,
            audience: AUDIENCE,
            leeway: 0,
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn discovery(State((issuer, answers)): State<(String, Shared)>) -> Json<Value> {
    let mut answers = answers.lock().unwrap();
    answers.discoveries += 1;
    let named = answers.issuer.clone().unwrap_or_else(|| issuer.clone());
    Json(json!({
        "issuer": named,
        "authorization_endpoint": format!("{issuer}auth"),
        "token_endpoint": format!("{issuer}oauth/token"),
        "jwks_uri": format!("{issuer}keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn keys(State((_, answers)): State<(String, Shared)>) -> Response {
    let mut answers = answers.lock().unwrap();
    answers.fetches += 1;
    (answers.jwks_status, Json(answers.jwks.clone())).into_response()
}

/// A token signed by the test key `kid` (named in the header unless `None`).
fn sign_with(kid: &str, header_kid: Option<&str>, claims: &Value) -> String {
    let (alg, key) = match kid {
        "ec-1" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(include_bytes!("testdata/ec-1.pem")).unwrap(),
        ),
        "rsa-1" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(include_bytes!("testdata/rsa-1.pem")).unwrap(),
        ),
        "rsa-2" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(include_bytes!("testdata/rsa-2.pem")).unwrap(),
        ),
        _ => panic!("no test key {kid}"),
    };
    let mut header = Header::new(alg);
    header.kid = header_kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(issuer: &str) -> Value {
    json!({"iss": issuer, "aud": [AUDIENCE], "sub": "alice", "exp": now() + 600, "iat": now()})
}

fn token(provider: &Provider, kid: &str) -> String {
    sign_with(kid, Some(kid), &claims(&provider.issuer))
}

async fn subject(jwks: &Jwks, provider: &Provider, token: &str) -> Result<String, TokenError> {
    jwks.verify::<Value>(token, &provider.expected())
        .await
        .map(|claims| claims["sub"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn discovery_names_the_endpoints_and_must_speak_for_the_issuer() {
    let provider = Provider::start(&["rsa-1"]).await;
    let http = reqwest::Client::new();
    // Either spelling of the issuer finds the same document.
    let bare = provider.issuer.trim_end_matches('/');
    let found = Discovery::fetch(&http, bare).await.unwrap();
    assert_eq!(found.issuer, provider.issuer);
    assert_eq!(found.jwks_uri, format!("{}keys", provider.issuer));
    assert_eq!(found.end_session_endpoint, None);
    assert_eq!(
        found.token_endpoint_auth_methods_supported,
        vec!["client_secret_basic".to_owned()]
    );

    provider.set(|a| a.issuer = Some("https://evil.example/".into()));
    let error = Discovery::fetch(&http, &provider.issuer).await.unwrap_err();
    assert!(
        matches!(&error, FetchError::IssuerMismatch { found, .. } if found == "https://evil.example/"),
        "{error}"
    );

    let error = Discovery::fetch(&http, "http://127.0.0.1:9/")
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Unreachable { .. }), "{error}");
    assert!(
        error.to_string().contains("could not be reached"),
        "{error}"
    );
}

#[tokio::test]
async fn keys_are_chosen_by_kid_rsa_and_ec() {
    let provider = Provider::start(&["rsa-1", "ec-1"]).await;
    let jwks = provider.jwks();
    assert_eq!(jwks.refresh().await.unwrap(), 2);
    assert_eq!(jwks.key_ids(), vec!["rsa-1".to_owned(), "ec-1".to_owned()]);
    assert_eq!(
        subject(&jwks, &provider, &token(&provider, "rsa-1")).await,
        Ok("alice".to_owned())
    );
    assert_eq!(
        subject(&jwks, &provider, &token(&provider, "ec-1")).await,
        Ok("alice".to_owned())
    );
    // An RS256 token naming the EC key's kid: no key fits.
    let confused = sign_with("rsa-1", Some("ec-1"), &claims(&provider.issuer));
    assert!(matches!(
        subject(&jwks, &provider, &confused).await,
        Err(TokenError::UnknownKey { .. })
    ));
    // Without a kid, the one RSA key is unambiguous.
    let unnamed = sign_with("rsa-1", None, &claims(&provider.issuer));
    assert_eq!(
        subject(&jwks, &provider, &unnamed).await,
        Ok("alice".to_owned())
    );
    // Signed by another key under a known kid: a bad signature.
    let forged = sign_with("rsa-2", Some("rsa-1"), &claims(&provider.issuer));
    assert_eq!(
        subject(&jwks, &provider, &forged).await,
        Err(TokenError::Signature)
    );
}

#[tokio::test]
async fn claims_are_checked() {
    let provider = Provider::start(&["rsa-1"]).await;
    let jwks = provider.jwks();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims(&provider.issuer);
        change(&mut claims);
        sign_with("rsa-1", Some("rsa-1"), &claims)
    };
    let refused = |token: String| {
        let jwks = jwks.clone();
        let expected = provider.expected();
        async move { jwks.verify::<Value>(&token, &expected).await.unwrap_err() }
    };
    let wrong_aud = refused(with(&|c| c["aud"] = json!("someone-else"))).await;
    assert_eq!(
        wrong_aud.to_string(),
        "the token was not issued to storefront-web"
    );
    let wrong_iss = refused(with(&|c| c["iss"] = json!("https://evil.example/"))).await;
    assert!(matches!(wrong_iss, TokenError::Claims(_)), "{wrong_iss}");
    let expired = refused(with(&|c| c["exp"] = json!(now() - 60))).await;
    assert_eq!(expired, TokenError::Expired);
    let no_exp = refused(with(&|c| {
        c.as_object_mut().unwrap().remove("exp");
    }))
    .await;
    assert_eq!(no_exp, TokenError::MissingClaim("exp".into()));
    let no_aud = refused(with(&|c| {
        c.as_object_mut().unwrap().remove("aud");
    }))
    .await;
    assert_eq!(no_aud, TokenError::MissingClaim("aud".into()));

    // The issuer's other spelling is the same issuer.
    let bare = with(&|c| c["iss"] = json!(provider.issuer.trim_end_matches('/')));
    assert!(
        jwks.verify::<Value>(&bare, &provider.expected())
            .await
            .is_ok()
    );

    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&provider.issuer),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert_eq!(
        refused(hs256).await,
        TokenError::Algorithm(Algorithm::HS256)
    );
    assert!(matches!(
        refused("not.a.token".into()).await,
        TokenError::Malformed(_)
    ));
}

#[tokio::test]
async fn an_unknown_kid_refreshes_at_once_but_at_most_every_interval() {
    let provider = Provider::start(&["rsa-1"]).await;
    let interval = Duration::from_millis(300);
    let jwks = provider.jwks().with_min_refresh_interval(interval);
    jwks.refresh().await.unwrap();
    tokio::time::sleep(interval).await;

    // The provider rotates: the next token names a new key, fetched at once.
    provider.set(|a| a.jwks = key_set(&["rsa-2"]));
    assert_eq!(
        subject(&jwks, &provider, &token(&provider, "rsa-2")).await,
        Ok("alice".to_owned())
    );
    assert_eq!(provider.fetches(), 2);
    // The old key is gone from the set, so its tokens no longer verify.
    assert!(matches!(
        subject(&jwks, &provider, &token(&provider, "rsa-1")).await,
        Err(TokenError::UnknownKey { kid: Some(kid) }) if kid == "rsa-1"
    ));
    assert_eq!(provider.fetches(), 2, "no fetch within the interval");

    // Concurrent unknown kids after the interval: one fetch between them.
    tokio::time::sleep(interval).await;
    let forged = sign_with("rsa-2", Some("nobody"), &claims(&provider.issuer));
    let attempts = (0..5).map(|_| subject(&jwks, &provider, &forged));
    for outcome in futures::future::join_all(attempts).await {
        assert!(matches!(outcome, Err(TokenError::UnknownKey { .. })));
    }
    assert_eq!(provider.fetches(), 3);
    // Discovery was fetched once, for the first refresh.
    assert_eq!(provider.answers.lock().unwrap().discoveries, 1);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_known_keys() {
    let provider = Provider::start(&["rsa-1"]).await;
    let jwks = provider.jwks();
    jwks.refresh().await.unwrap();

    provider.set(|a| a.jwks_status = StatusCode::SERVICE_UNAVAILABLE);
    let error = jwks.refresh().await.unwrap_err();
    assert!(
        matches!(error, FetchError::Status { status: 503, .. }),
        "{error}"
    );
    provider.set(|a| {
        a.jwks_status = StatusCode::OK;
        a.jwks = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]});
    });
    let error = jwks.refresh().await.unwrap_err();
    assert!(matches!(error, FetchError::NoKeys { .. }), "{error}");
    provider.set(|a| a.jwks = json!("not a key set"));
    assert!(jwks.refresh().await.is_err());

    assert_eq!(jwks.key_ids(), vec!["rsa-1".to_owned()]);
    assert_eq!(
        subject(&jwks, &provider, &token(&provider, "rsa-1")).await,
        Ok("alice".to_owned())
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_not_fatal() {
    // A port where nothing listens yet.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let issuer = format!("http://{addr}/");
    let jwks = Jwks::for_issuer(reqwest::Client::new(), &issuer)
        .with_min_refresh_interval(Duration::from_millis(200));
    let refresher = jwks.spawn_refresh(Duration::from_secs(3600), Shutdown::new());
    let expected = Expected {
        issuer: &issuer,
        audience: AUDIENCE,
        leeway: 0,
    };
    let early = sign_with("rsa-1", Some("rsa-1"), &claims(&issuer));
    assert!(matches!(
        jwks.verify::<Value>(&early, &expected).await,
        Err(TokenError::UnknownKey { .. })
    ));

    // The provider comes up; the refresher's retry or the next token finds its keys.
    let provider = Provider::serve(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        &["rsa-1"],
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        subject(&jwks, &provider, &token(&provider, "rsa-1")).await,
        Ok("alice".to_owned())
    );
    // The refresher stops when every handle on the keys is gone.
    drop(jwks);
    tokio::time::timeout(Duration::from_secs(2), refresher)
        .await
        .expect("the refresher ends with its keys")
        .unwrap();
}

#[tokio::test]
async fn the_refresher_follows_a_rotation_and_stops_on_shutdown() {
    let provider = Provider::start(&["rsa-1"]).await;
    let jwks = provider.jwks();
    let shutdown = Shutdown::new();
    let refresher = jwks.spawn_refresh(Duration::from_millis(100), shutdown.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(jwks.key_ids(), vec!["rsa-1".to_owned()]);
    provider.set(|a| a.jwks = key_set(&["rsa-2", "ec-1"]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(jwks.key_ids(), vec!["rsa-2".to_owned(), "ec-1".to_owned()]);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), refresher)
        .await
        .expect("the refresher stops on shutdown")
        .unwrap();
}

#[test]
fn odd_keys_are_left_out_of_the_set() {
    let mut encryption = jwk("rsa-1");
    encryption["use"] = json!("enc");
    encryption["kid"] = json!("enc");
    let mut oaep = jwk("rsa-2");
    oaep["alg"] = json!("RSA-OAEP");
    let mut mislabelled = jwk("ec-1");
    mislabelled["alg"] = json!("RS256");
    let set = json!({"keys": [
        encryption,
        oaep,
        mislabelled,
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
        {"kty": "EC", "crv": "P-256", "kid": "broken"},
        jwk("rsa-1"),
        jwk("ec-1"),
    ]});
    let kids: Vec<_> = signing_keys(&set).into_iter().map(|k| k.kid).collect();
    assert_eq!(
        kids,
        vec![Some("rsa-1".to_owned()), Some("ec-1".to_owned())]
    );
    assert!(signing_keys(&json!({"nothing": []})).is_empty());
}

#[test]
fn pkce_matches_rfc_7636() {
    // RFC 7636, appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let pkce = Pkce::new();
    assert_eq!(pkce.verifier.len(), 43);
    assert_eq!(pkce.challenge, pkce_challenge(&pkce.verifier));
    assert_ne!(Pkce::new().verifier, pkce.verifier);
}

#[test]
fn the_issuer_is_read_before_verification_only_to_route() {
    let token = sign_with("rsa-1", Some("rsa-1"), &claims("https://id.example/"));
    assert_eq!(
        unverified_issuer(&token).as_deref(),
        Some("https://id.example/")
    );
    assert_eq!(unverified_issuer("a.b.c"), None);
    assert_eq!(unverified_issuer("garbage"), None);
    assert!(same_issuer("https://id.example", "https://id.example/"));
    assert!(same_issuer("https://id.example/", "https://id.example"));
    assert!(!same_issuer(
        "https://id.example/",
        "https://id.example.evil/"
    ));
    assert!(!same_issuer("", ""));
    assert_eq!(
        discovery_url("https://id.example/"),
        "https://id.example/.well-known/openid-configuration"
    );
}
