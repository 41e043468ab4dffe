//! The test OpenID provider (`hack/oidc`, zitadel/oidc's OP) for integration
//! tests (feature `testing`): built once, started on a free loopback port,
//! and signed in to through the code flow with PKCE over plain HTTP, as a
//! browser would, without one.

// Test support: a failure here should stop the test with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::LOCATION;
use serde_json::Value;

use super::{Discovery, Pkce, random_token};

/// The provider's built-in user.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "storefront-test";
pub const USER_NAME: &str = "Alice Example";
/// The client the tests register unless they name another.
pub const CLIENT_ID: &str = "storefront-web";
pub const CLIENT_SECRET: &str = "storefront-web-secret";
pub const REDIRECT_URI: &str = "http://127.0.0.1:8081/auth/callback";

/// The provider's binary: `$STOREFRONT_OIDC_PROVIDER`, else built (once per
/// test process; the build itself is cached) by `hack/oidc/build.sh`.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("STOREFRONT_OIDC_PROVIDER") {
                return PathBuf::from(path);
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../hack/oidc/build.sh");
            let output = Command::new("bash")
                .arg(script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("running {script}: {e}"));
            assert!(output.status.success(), "{script} failed");
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        })
        .clone()
}

/// The client the provider registers.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    /// `None`: a public client (PKCE only).
    pub secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            id: CLIENT_ID.to_owned(),
            secret: Some(CLIENT_SECRET.to_owned()),
            redirect_uris: vec![REDIRECT_URI.to_owned()],
            post_logout_redirect_uris: Vec::new(),
        }
    }
}

/// A running provider; stopped when dropped.
pub struct TestProvider {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/`
    pub issuer: String,
    pub client: Client,
    child: Child,
    log: PathBuf,
    /// A browser that follows no redirects, so each step can be seen.
    browser: reqwest::Client,
}

impl TestProvider {
    /// Starts the provider with the default client on a free port.
    pub async fn start() -> Self {
        Self::start_with(Client::default()).await
    }

    pub async fn start_with(client: Client) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        Self::start_on(addr, client).await
    }

    async fn start_on(addr: SocketAddr, client: Client) -> Self {
        let issuer = format!("http://{addr}/");
        // One log per start: a restart's old handle removes only its own.
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!(
            "storefront-oidc-{}-{}-{start}.log",
            std::process::id(),
            addr.port()
        ));
        let log_file = std::fs::File::create(&log).expect("provider log file");
        let mut command = Command::new(binary());
        command
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--issuer")
            .arg(&issuer)
            .arg("--client-id")
            .arg(&client.id)
            .arg("--client-secret")
            .arg(client.secret.as_deref().unwrap_or(""));
        for uri in &client.redirect_uris {
            command.arg("--redirect-uri").arg(uri);
        }
        for uri in &client.post_logout_redirect_uris {
            command.arg("--post-logout-redirect-uri").arg(uri);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let mut provider = TestProvider {
            addr,
            issuer,
            client,
            child,
            log,
            browser,
        };
        provider.wait_ready().await;
        provider
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the OIDC provider exited ({status}):\n{}", self.log_text());
            }
            if Discovery::fetch(&self.browser, &self.issuer).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the OIDC provider did not start:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The provider's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the provider and starts it again on the same port: it comes
    /// back with a new signing key (a key rotation) and no sessions.
    pub async fn restart(&mut self) {
        self.stop();
        let fresh = Self::start_on(self.addr, self.client.clone()).await;
        // Dropping the old handle signals nothing: its process was reaped.
        drop(std::mem::replace(self, fresh));
    }

    pub async fn discovery(&self) -> Discovery {
        Discovery::fetch(&self.browser, &self.issuer)
            .await
            .expect("discovery")
    }

    fn resolve(&self, location: &str) -> Url {
        Url::parse(&self.issuer)
            .and_then(|base| base.join(location))
            .unwrap_or_else(|e| panic!("redirect {location}: {e}"))
    }

    async fn redirect(&self, response: reqwest::Response, step: &str) -> Url {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        match location {
            Some(location) if status.is_redirection() => self.resolve(&location),
            _ => panic!(
                "{step}: expected a redirect, got {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// Signs `username` in at `authorize_url` as a browser would (authorize →
    /// login form → credentials → callback) and returns where the provider
    /// sends the browser back: the client's redirect URI with `code` and
    /// `state`, or with `error`. `Err` carries the login page's complaint.
    pub async fn log_in(
        &self,
        authorize_url: &str,
        username: &str,
        password: &str,
    ) -> Result<Url, String> {
        let authorize = self
            .browser
            .get(authorize_url)
            .send()
            .await
            .expect("authorize");
        let login = self.redirect(authorize, "authorize").await;
        if !login.as_str().starts_with(&self.issuer) {
            // An error sent straight back to the client.
            return Ok(login);
        }
        let page = self
            .browser
            .get(login.clone())
            .send()
            .await
            .expect("login page");
        assert!(page.status().is_success(), "login page: {}", page.status());
        let html = page.text().await.expect("login page body");
        let id = hidden_input(&html, "id").expect("the login form names its request");
        let form = [
            ("id", id.as_str()),
            ("username", username),
            ("password", password),
        ];
        let answer = self
            .browser
            .post(login)
            .form(&form)
            .send()
            .await
            .expect("login form");
        if answer.status().is_success() {
            return Err(answer.text().await.unwrap_or_default());
        }
        let callback = self.redirect(answer, "login").await;
        let back = self.browser.get(callback).send().await.expect("callback");
        Ok(self.redirect(back, "callback").await)
    }

    /// An ID token for `username` issued to the registered client, through
    /// the code flow with PKCE and `client_secret_basic`.
    pub async fn id_token_for(&self, username: &str, password: &str) -> String {
        let discovery = self.discovery().await;
        let pkce = Pkce::new();
        let state = random_token();
        let redirect_uri = self.client.redirect_uris[0].clone();
        let authorize = Url::parse_with_params(
            &discovery.authorization_endpoint,
            [
                ("response_type", "code"),
                ("client_id", self.client.id.as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("scope", "openid profile email"),
                ("state", state.as_str()),
                ("nonce", random_token().as_str()),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .expect("authorize URL");
        let back = self
            .log_in(authorize.as_str(), username, password)
            .await
            .unwrap_or_else(|page| panic!("login refused: {page}"));
        let query = |name: &str| {
            back.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(query("state"), Some(state), "state comes back: {back}");
        let code = query("code").unwrap_or_else(|| panic!("no code in {back}"));
        let mut request = self.browser.post(&discovery.token_endpoint).form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
            ("client_id", self.client.id.as_str()),
        ]);
        if let Some(secret) = &self.client.secret {
            request = request.basic_auth(&self.client.id, Some(secret));
        }
        let answer = request.send().await.expect("token endpoint");
        let status = answer.status();
        let body: Value = answer.json().await.expect("token response");
        assert!(status.is_success(), "token endpoint {status}: {body}");
        body["id_token"]
            .as_str()
            .expect("an id_token in the token response")
            .to_owned()
    }

    /// An ID token for the built-in user.
    pub async fn id_token(&self) -> String {
        self.id_token_for(USER, PASSWORD).await
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.stop();
        // The log is kept only when a test fails, to be read.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The value of `<input type="hidden" name="NAME" value="...">` in a page.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let tag_start = html.find(&marker)?;
    let tag = &html[html[..tag_start].rfind('<')?..];
    let tag = &tag[..tag.find('>')?];
    let value = tag.split("value=\"").nth(1)?;
    Some(value[..value.find('"')?].to_owned())
}
