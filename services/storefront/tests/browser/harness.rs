//! A real browser for the storefront's page tests: headless Chromium driven
//! through chromedriver (WebDriver), one driver per test and one session per
//! person in it, with the steps a person takes (open a page, fill a field by
//! its label, press a button by its text), an axe-core accessibility check,
//! a screenshot of every page visited and, when a step fails, the page as it
//! was (`failure.png`, `failure.html`).
//!
//! Needs what `hack/browser/install.sh` installs, and the environment it
//! prints (`STOREFRONT_CHROMEDRIVER`, `STOREFRONT_CHROMIUM`, `STOREFRONT_AXE_JS`;
//! each has a default that matches the script's).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt as _;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const INSTALL: &str = "run `eval \"$(bash hack/browser/install.sh)\"`";

/// How long a page may take to load after a click before the step fails.
const PAGE_LOAD: Duration = Duration::from_secs(10);

/// Chromium's flags for this machine: headless as root, nothing reaching
/// out to the network on its own (there is none but loopback).
const CHROMIUM_ARGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1024",
];

/// Whether a session runs the pages' JavaScript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Js {
    On,
    Off,
}

/// A path from the environment, or its default; the test fails (never
/// skips) when the file is not there.
fn tool(var: &str, default: impl FnOnce() -> Option<PathBuf>, what: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(default)
        .unwrap_or_else(|| panic!("{what} not found and {var} is not set: {INSTALL}"));
    assert!(
        path.is_file(),
        "{what} not found at {} ({var}): {INSTALL}",
        path.display()
    );
    path
}

/// axe-core as `hack/browser/install.sh` caches it: the newest version there.
fn cached_axe() -> Option<PathBuf> {
    let cache = std::env::var_os("STOREFRONT_CACHE_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/storefront")
        },
        PathBuf::from,
    );
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache.join("browser"))
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("axe-core-"))
        })
        .map(|p| p.join("node_modules/axe-core/axe.min.js"))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| version_of(p));
    found.pop()
}

/// `[4, 14, 1]` for `.../axe-core-4.14.1/...`, so 4.10 sorts after 4.9.
fn version_of(path: &Path) -> Vec<u32> {
    path.components()
        .find_map(|c| c.as_os_str().to_str()?.strip_prefix("axe-core-"))
        .map(|v| v.split('.').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// `target/browser-screenshots/<test>/`: beside the profile folder the test
/// binary runs from (`<target>/<profile>/deps/browser-…`), so it follows
/// `CARGO_TARGET_DIR`.
pub fn screenshot_dir(test: &str) -> PathBuf {
    crate::support::target_dir()
        .expect("the test binary lives in <target>/<profile>/deps")
        .join("browser-screenshots")
        .join(test)
}

/// The running test's name (libtest names its thread after the test), as a
/// folder name.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .replace("::", "-")
}

/// What a driver's sessions share: where pictures go, their count, and every
/// open session (to picture them all when a step fails).
struct Shared {
    dir: PathBuf,
    pictures: AtomicUsize,
    windows: Mutex<Vec<(String, Client)>>,
    /// The session of the latest step: its picture on failure is `failure.png`.
    last: Mutex<String>,
    axe_js: String,
}

impl Shared {
    fn acting(&self, label: &str) {
        label.clone_into(&mut self.last.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// One chromedriver for one test; `window` opens a session (a person's browser).
pub struct Browser {
    driver: Child,
    url: String,
    chromium: PathBuf,
    profiles: tempfile::TempDir,
    shared: Arc<Shared>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port; the pictures of the
    /// running test go to a fresh `target/browser-screenshots/<test>/`.
    pub async fn start() -> Browser {
        let driver_bin = tool(
            "STOREFRONT_CHROMEDRIVER",
            || Some("/usr/bin/chromedriver".into()),
            "chromedriver",
        );
        let chromium = tool(
            "STOREFRONT_CHROMIUM",
            || Some("/usr/bin/chromium".into()),
            "chromium",
        );
        let axe = tool("STOREFRONT_AXE_JS", cached_axe, "axe-core (axe.min.js)");
        let axe_js = std::fs::read_to_string(&axe)
            .unwrap_or_else(|e| panic!("read {}: {e}: {INSTALL}", axe.display()));
        let dir = screenshot_dir(&test_name());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let profiles = tempfile::tempdir().expect("temp dir for browser profiles");
        let addr = crate::support::free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={}", addr.port()))
            .arg(format!(
                "--log-path={}",
                profiles.path().join("chromedriver.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}: {INSTALL}", driver_bin.display()));
        let mut browser = Browser {
            driver,
            url: format!("http://{addr}"),
            chromium,
            profiles,
            shared: Arc::new(Shared {
                dir,
                pictures: AtomicUsize::new(0),
                windows: Mutex::new(Vec::new()),
                last: Mutex::new(String::new()),
                axe_js,
            }),
        };
        browser.wait_ready().await;
        browser
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = self.driver.try_wait().expect("chromedriver status") {
                panic!(
                    "chromedriver exited at start ({status}):\n{}",
                    self.driver_log()
                );
            }
            let ready = http.get(format!("{}/status", self.url)).send().await;
            if let Ok(answer) = ready
                && let Ok(status) = answer.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 20 s:\n{}",
                self.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn driver_log(&self) -> String {
        let log = std::fs::read_to_string(self.profiles.path().join("chromedriver.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A new session (fresh profile: no cookies) named `label` in pictures
    /// and messages, whose relative paths are taken from `base`.
    pub async fn window(&self, label: &str, base: &str, js: Js) -> Window {
        let profile = self.profiles.path().join(label);
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut prefs = serde_json::Map::new();
        if js == Js::Off {
            // The content setting a managed policy would set: pages run no script,
            // while WebDriver's own commands still work.
            prefs.insert(
                "profile.managed_default_content_settings.javascript".into(),
                json!(2),
            );
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": args,
                "prefs": prefs,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "start a Chromium session ({label}): {e}\n{}\n{INSTALL}",
                    self.driver_log()
                )
            });
        self.shared
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((label.to_owned(), client.clone()));
        Window {
            client,
            label: label.to_owned(),
            base: base.trim_end_matches('/').to_owned(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs a test's steps. When one fails, every open session's page is
    /// saved (`failure.png` and `failure.html` for the session of the failing
    /// step, `failure-<label>.*` for the others) before the failure goes on;
    /// either way every session is closed (so no Chromium outlives the test).
    pub async fn run<F: Future<Output = ()>>(&self, steps: F) {
        let outcome = AssertUnwindSafe(steps).catch_unwind().await;
        let windows: Vec<(String, Client)> = std::mem::take(
            &mut *self
                .shared
                .windows
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if outcome.is_err() {
            self.save_failure(&windows).await;
        }
        for (_, client) in windows {
            let _ = client.close().await;
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    async fn save_failure(&self, windows: &[(String, Client)]) {
        let last = self
            .shared
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (label, client) in windows {
            let name = if *label == last {
                "failure".to_owned()
            } else {
                format!("failure-{label}")
            };
            let png = self.shared.dir.join(format!("{name}.png"));
            if let Ok(picture) = client.screenshot().await {
                let _ = std::fs::write(&png, picture);
            }
            if let Ok(source) = client.source().await {
                let _ = std::fs::write(self.shared.dir.join(format!("{name}.html")), source);
            }
            let url = client
                .current_url()
                .await
                .map(String::from)
                .unwrap_or_default();
            eprintln!("browser ({label}) was at {url}: see {}", png.display());
        }
    }
}

/// An axe-core finding.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Violation {
    pub id: String,
    pub impact: Option<String>,
    pub help: String,
    pub nodes: Vec<Value>,
}

impl Violation {
    /// Serious and critical findings fail a test; minor and moderate are reported.
    pub fn fails(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let impact = self.impact.as_deref().unwrap_or("?");
        writeln!(f, "  {} ({impact}): {}", self.id, self.help)?;
        for node in &self.nodes {
            writeln!(f, "    at {}: {}", node["target"], node["html"])?;
        }
        Ok(())
    }
}

/// One person's browser (a WebDriver session).
pub struct Window {
    client: Client,
    label: String,
    base: String,
    shared: Arc<Shared>,
}

impl Window {
    /// `result`'s value, or the test fails saying which step did.
    fn ok<T>(&self, step: &str, result: Result<T, CmdError>) -> T {
        result.unwrap_or_else(|e| panic!("{}: {step}: {e}", self.label))
    }

    fn url_of(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Opens `path` (relative to the base, or a whole URL) and pictures it.
    pub async fn goto(&self, path: &str) {
        self.shared.acting(&self.label);
        let url = self.url_of(path);
        self.ok(&format!("open {url}"), self.client.goto(&url).await);
        self.picture().await;
    }

    /// The whole current URL (another site's, after a redirect there).
    pub async fn url(&self) -> String {
        self.ok("read the URL", self.client.current_url().await)
            .to_string()
    }

    /// The current URL's path and query, e.g. `/sign-in?next=/products/1`.
    pub async fn path(&self) -> String {
        let url = self.ok("read the URL", self.client.current_url().await);
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The current URL's query parameter `name`, decoded.
    pub async fn query(&self, name: &str) -> Option<String> {
        let url = self.ok("read the URL", self.client.current_url().await);
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// Saves a picture of the page as `<NN>-<label>-<page>.png`, the page
    /// named after the URL's path.
    pub async fn picture(&self) {
        let n = self.shared.pictures.fetch_add(1, Ordering::SeqCst) + 1;
        let path = self.path().await;
        let path = path.split('?').next().unwrap_or_default();
        let mut page: String = path
            .trim_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        if page.is_empty() {
            page = "home".into();
        }
        let file = self
            .shared
            .dir
            .join(format!("{n:02}-{}-{page}.png", self.label));
        let picture = self.ok("take a screenshot", self.client.screenshot().await);
        std::fs::write(&file, picture).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }

    /// The one element matching `css`; fails when there is none or several.
    pub async fn one(&self, css: &str) -> Element {
        let mut found = self.all(css).await;
        match found.len() {
            1 => found.remove(0),
            n => panic!(
                "{}: expected one element {css:?} on {}, found {n}",
                self.label,
                self.path().await
            ),
        }
    }

    /// Every element matching `css`.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.ok(
            &format!("find {css:?}"),
            self.client.find_all(Locator::Css(css)).await,
        )
    }

    /// The visible text of the one element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.one(css).await;
        self.ok(&format!("read {css:?}"), element.text().await)
    }

    /// The text of `<main>`.
    pub async fn main_text(&self) -> String {
        self.text("main").await
    }

    /// The error summary's text, if the page has one.
    pub async fn error_summary(&self) -> Option<String> {
        let found = self.all(".error-summary[role=alert]").await;
        let summary = found.first()?;
        Some(self.ok("read the error summary", summary.text().await))
    }

    /// The form control labelled `label` (exact text, whitespace collapsed):
    /// the label's `for` target, or the control inside the label.
    pub async fn field(&self, label: &str) -> Element {
        let xpath = format!("//label[normalize-space()={}]", xpath_literal(label));
        let labels = self.ok(
            &format!("find label {label:?}"),
            self.client.find_all(Locator::XPath(&xpath)).await,
        );
        let [found] = labels.as_slice() else {
            let mut present = Vec::new();
            for l in self.all("label").await {
                present.push(l.text().await.unwrap_or_default());
            }
            panic!(
                "{}: expected one label {label:?} on {}, found {}; labels there: {present:?}",
                self.label,
                self.path().await,
                labels.len()
            );
        };
        let step = format!("find the control labelled {label:?}");
        match self.ok(&step, found.attr("for").await) {
            Some(id) => self.ok(&step, self.client.find(Locator::Id(&id)).await),
            None => self.ok(
                &step,
                found.find(Locator::Css("input, select, textarea")).await,
            ),
        }
    }

    /// Types `value` into the field labelled `label`, replacing what was there.
    pub async fn fill(&self, label: &str, value: &str) {
        self.shared.acting(&self.label);
        let field = self.field(label).await;
        self.type_into(&field, label, value).await;
    }

    /// Types `value` into the control named `name` (for fields whose label
    /// is not unique on the page).
    pub async fn fill_name(&self, name: &str, value: &str) {
        self.shared.acting(&self.label);
        let field = self.one(&format!("[name={name:?}]")).await;
        self.type_into(&field, name, value).await;
    }

    async fn type_into(&self, field: &Element, what: &str, value: &str) {
        self.ok(&format!("clear {what:?}"), field.clear().await);
        self.ok(&format!("type into {what:?}"), field.send_keys(value).await);
    }

    /// The value of the field labelled `label`.
    pub async fn value(&self, label: &str) -> String {
        let field = self.field(label).await;
        self.ok(&format!("read {label:?}"), field.prop("value").await)
            .unwrap_or_default()
    }

    /// Ticks the checkbox or radio button labelled `label`.
    pub async fn check(&self, label: &str) {
        self.shared.acting(&self.label);
        let field = self.field(label).await;
        if !self.ok(&format!("read {label:?}"), field.is_selected().await) {
            self.ok(&format!("tick {label:?}"), field.click().await);
        }
        assert!(
            self.ok(&format!("read {label:?}"), field.is_selected().await),
            "{}: {label:?} did not become ticked",
            self.label
        );
    }

    /// Whether the checkbox or radio button labelled `label` is ticked.
    pub async fn is_checked(&self, label: &str) -> bool {
        let field = self.field(label).await;
        self.ok(&format!("read {label:?}"), field.is_selected().await)
    }

    /// Presses the one button reading `text` on the page and waits for the
    /// page it leads to.
    pub async fn click_button(&self, text: &str) {
        self.click_button_in("html", text).await;
    }

    /// Presses the one button reading `text` inside the element `scope`
    /// (e.g. a cart row, `#line-2`) and waits for the page it leads to. A
    /// button whose text goes on after `text` and a space matches too: its
    /// visually hidden rest names what it acts on ("Update Mouse").
    pub async fn click_button_in(&self, scope: &str, text: &str) {
        let t = xpath_literal(text);
        let xpath = format!(
            ".//button[normalize-space()={t} or starts-with(normalize-space(), concat({t}, ' '))] \
             | .//input[(@type='submit' or @type='button') and @value={t}]"
        );
        self.click_in(scope, &xpath, &format!("button {text:?}"))
            .await;
    }

    /// Follows the one link reading `text` on the page.
    pub async fn click_link(&self, text: &str) {
        let xpath = format!(".//a[normalize-space()={}]", xpath_literal(text));
        self.click_in("html", &xpath, &format!("link {text:?}"))
            .await;
    }

    async fn click_in(&self, scope: &str, xpath: &str, what: &str) {
        self.shared.acting(&self.label);
        let within = self.one(scope).await;
        let found = self.ok(
            &format!("find {what}"),
            within.find_all(Locator::XPath(xpath)).await,
        );
        let [target] = found.as_slice() else {
            panic!(
                "{}: expected one {what} in {scope:?} on {}, found {}",
                self.label,
                self.path().await,
                found.len()
            );
        };
        self.click_element(target, what).await;
    }

    /// Clicks the first element matching `css` (a link or button) and waits
    /// for the page it leads to.
    pub async fn click(&self, css: &str) {
        self.shared.acting(&self.label);
        let found = self.all(css).await;
        let Some(target) = found.first() else {
            panic!(
                "{}: nothing matches {css:?} on {}",
                self.label,
                self.path().await
            );
        };
        self.click_element(target, &format!("{css:?}")).await;
    }

    async fn click_element(&self, target: &Element, what: &str) {
        let page = self.one("html").await;
        self.ok(&format!("click {what}"), target.click().await);
        self.wait_for_new_page(&page, what).await;
        self.picture().await;
    }

    /// Waits until `old` (the `<html>` of the page before a click) is gone:
    /// the click loaded a page, even one at the same URL.
    async fn wait_for_new_page(&self, old: &Element, what: &str) {
        let deadline = Instant::now() + PAGE_LOAD;
        while old.tag_name().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "{}: clicking {what} on {} loaded no new page within {PAGE_LOAD:?} \
                 (a required field left empty?)",
                self.label,
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reloads the page (every 250 ms, for at most `seconds`) until an
    /// element matching `css` is on it, then pictures it: for what arrives
    /// later, like an order made from a Kafka event.
    pub async fn reload_until_present(&self, css: &str, seconds: u64) {
        self.reload_until(
            css,
            seconds,
            |w| async move { !w.all(css).await.is_empty() },
        )
        .await;
    }

    /// As `reload_until_present`, until `<main>` contains `text`.
    pub async fn reload_until_text(&self, text: &str, seconds: u64) {
        self.reload_until(text, seconds, |w| async move {
            w.main_text().await.contains(text)
        })
        .await;
    }

    async fn reload_until<'a, F, Fut>(&'a self, what: &str, seconds: u64, mut done: F)
    where
        F: FnMut(&'a Window) -> Fut,
        Fut: Future<Output = bool>,
    {
        self.shared.acting(&self.label);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !done(self).await {
            assert!(
                Instant::now() < deadline,
                "{}: {what:?} not on {} after reloading for {seconds} s:\n{}",
                self.label,
                self.path().await,
                self.main_text().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.ok("reload", self.client.refresh().await);
        }
        self.picture().await;
    }

    /// Runs `script` in the page (the body of a function) and returns its value.
    pub async fn script(&self, script: &str) -> Value {
        self.ok(
            &format!("run script {script:?}"),
            self.client.execute(script, vec![]).await,
        )
    }

    /// Every axe-core finding on the current page (WCAG 2.x A and AA rules
    /// and axe's best practices), whatever its impact.
    pub async fn axe_violations(&self) -> Vec<Violation> {
        if self.script("return typeof window.axe").await != "object" {
            self.ok(
                "inject axe-core",
                self.client.execute(&self.shared.axe_js, vec![]).await,
            );
        }
        let run = r"
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ['violations'] })
              .then(r => done({ violations: r.violations.map(v => ({
                  id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.map(n => ({ target: n.target, html: n.html })),
              })) }))
              .catch(e => done({ error: String(e) }));
        ";
        let answer = self.ok("run axe", self.client.execute_async(run, vec![]).await);
        assert!(
            answer["error"].is_null(),
            "{}: axe failed on {}: {}",
            self.label,
            self.path().await,
            answer["error"]
        );
        serde_json::from_value(answer["violations"].clone()).expect("axe's violations")
    }

    /// Checks the current page with axe-core: prints every finding, fails on
    /// any serious or critical one.
    pub async fn axe(&self) {
        self.shared.acting(&self.label);
        let violations = self.axe_violations().await;
        let path = self.path().await;
        let report: String = violations.iter().map(ToString::to_string).collect();
        // Every page's result, kept beside its pictures (axe.txt).
        let line = if violations.is_empty() {
            format!("{path} ({}): no violations\n", self.label)
        } else {
            format!("{path} ({}):\n{report}", self.label)
        };
        let kept = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.shared.dir.join("axe.txt"))
            .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
        assert!(kept.is_ok(), "could not write axe.txt: {kept:?}");
        if violations.is_empty() {
            return;
        }
        eprintln!("axe on {path} ({}):\n{report}", self.label);
        assert!(
            !violations.iter().any(Violation::fails),
            "{}: serious or critical accessibility violations on {path}:\n{report}",
            self.label
        );
    }
}

/// `s` as an XPath 1.0 string literal (which has no escapes).
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}
