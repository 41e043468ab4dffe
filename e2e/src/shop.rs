//! The shop's REST API, as a client outside the cluster sees it through the
//! gateway Service.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One answer: status and JSON body (`null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

#[derive(Clone)]
pub struct Shop {
    pub http: reqwest::Client,
    pub base: String,
    secret: String,
}

impl Shop {
    /// A client of the gateway at `base`, minting tokens with the shop's
    /// JWT secret (the Secret the operator made).
    pub fn new(base: String, jwt_secret: String) -> Shop {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Shop {
            http,
            base,
            secret: jwt_secret,
        }
    }

    pub fn token(&self, user: &str) -> String {
        storefront_gateway::token(&self.secret, user, false, Duration::from_secs(3600))
            .expect("a token")
    }

    pub fn admin_token(&self, user: &str) -> String {
        storefront_gateway::token(&self.secret, user, true, Duration::from_secs(3600))
            .expect("a token")
    }

    /// One request; transport errors are an `Err` (the caller decides).
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Answer {
        self.try_call(method.clone(), path, token, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn add_to_cart(&self, token: &str, product_id: i64, quantity: i64) -> Answer {
        self.call(
            Method::POST,
            "/api/v1/cart/items",
            token,
            Some(json!({ "product_id": product_id, "quantity": quantity })),
        )
        .await
    }

    pub async fn try_checkout(
        &self,
        token: &str,
        key: &str,
        payment_method: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<Answer, reqwest::Error> {
        let mut headers = vec![("Idempotency-Key", key)];
        headers.extend_from_slice(extra_headers);
        self.try_call(
            Method::POST,
            "/api/v1/checkout",
            token,
            Some(json!({ "payment_method": payment_method })),
            &headers,
        )
        .await
    }

    /// The user's orders (`GET /api/v1/orders`).
    pub async fn orders(&self, token: &str) -> Vec<Value> {
        let answer = self.call(Method::GET, "/api/v1/orders", token, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body["orders"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Checks out with `key` until the saga has a final answer, retrying
    /// with the same key through pending answers, 5xx and lost connections
    /// (what a client does while a pod is replaced). The final answer.
    pub async fn checkout_until_final(&self, token: &str, key: &str, timeout: Duration) -> Answer {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let last = match self.try_checkout(token, key, "pm_card_visa", &[]).await {
                Ok(answer)
                    if answer.status.is_server_error()
                        || answer.status == StatusCode::ACCEPTED
                        || answer.status == StatusCode::CONFLICT
                        || answer.status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("{} {}", answer.status, answer.body)
                }
                Ok(answer) => return answer,
                Err(error) => error.to_string(),
            };
            assert!(
                std::time::Instant::now() < deadline,
                "checkout {key} had no final answer within {} s; last: {last}",
                timeout.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
