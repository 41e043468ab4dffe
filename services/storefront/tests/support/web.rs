//! A browser's part, without the browser: a client of the web storefront
//! that keeps its cookies, follows no redirects (tests look at them), and
//! sends forms with the page's CSRF token, as the pages' forms do.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> &str {
        self.header("location").unwrap_or_default()
    }

    /// The text of the error summary at the top of the page.
    pub fn error_summary(&self) -> Option<String> {
        let start = self.body.find("class=\"error-summary\"")?;
        let rest = &self.body[start..];
        let para = rest.find("<p>")? + 3;
        let end = rest[para..].find("</p>")?;
        Some(rest[para..para + end].to_owned())
    }
}

pub struct WebClient {
    pub base: String,
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

impl WebClient {
    pub fn new(base: &str) -> WebClient {
        WebClient {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let answer = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("the web answers");
        for set in answer.headers().get_all("set-cookie") {
            let set = set.to_str().expect("ascii cookie");
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if set.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Page {
            status: answer.status(),
            headers: answer.headers().clone(),
            body: answer.text().await.expect("body"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// The CSRF token the pages put in their forms (the visitor's cookie).
    pub async fn csrf(&mut self) -> String {
        if !self.cookies.contains_key("sf_csrf") {
            self.get("/").await;
        }
        self.cookies["sf_csrf"].clone()
    }

    /// Submits a form as a page would: with the CSRF token added.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &csrf));
        self.post_raw(path, &form, &[]).await
    }

    /// Submits exactly `fields` (no token added) with extra headers.
    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Signs in with the development sign-in.
    pub async fn sign_in(&mut self, name: &str) {
        let page = self.post("/sign-in/dev", &[("name", name)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert!(self.cookies.contains_key("sf_session"), "no session cookie");
    }

    pub async fn add_to_cart(&mut self, product_id: i64, quantity: i64) -> Page {
        let (id, quantity) = (product_id.to_string(), quantity.to_string());
        self.post(
            "/cart/items",
            &[("product_id", &id), ("quantity", &quantity)],
        )
        .await
    }

    /// Places the order from the checkout form with `payment_method`.
    pub async fn checkout(&mut self, payment_method: &str, headers: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let key = uuid::Uuid::new_v4().to_string();
        let fields = [
            ("name", "Ada Lovelace"),
            ("line1", "12 Analytical Row"),
            ("city", "London"),
            ("postal_code", "N1 1AA"),
            ("country", "United Kingdom"),
            ("payment_method", payment_method),
            ("idempotency_key", key.as_str()),
            ("csrf", csrf.as_str()),
        ];
        self.post_raw("/checkout", &fields, headers).await
    }
}
