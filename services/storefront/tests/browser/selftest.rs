//! The harness checked on pages of its own (no shop needed), which also
//! shows how a test uses it: a labelled form served on a loopback port with
//! the shop's Content-Security-Policy, filled in and sent by label and button
//! text, with and without JavaScript; axe passing a good page and catching a
//! bad one; pictures of every page and of a failure.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};

use crate::harness::{Browser, Js, screenshot_dir};

/// The page contract's security headers (CONTRACT.md), so the harness is
/// known to work under them (axe is injected through WebDriver, not a tag).
const HEADERS: &str = "Content-Security-Policy: default-src 'self'; img-src 'self'; \
    style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\n";

fn page(title: &str, main: &str) -> String {
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script src="/static/mark.js"></script></head>
<body><a href="#main">Skip to content</a>
<header><nav aria-label="Site"><a href="/">Form</a></nav></header>
<main id="main"><h1>{title}</h1>{main}</main></body></html>"##
    )
}

const FORM: &str = r#"
<form method="post" action="/send">
  <label for="who">Your name</label> <input id="who" name="name" required>
  <label for="qty">Quantity</label> <input id="qty" name="quantity" type="number" value="1">
  <label><input type="checkbox" name="admin" value="on"> Sign in as an administrator</label>
  <fieldset><legend>Payment method</legend>
    <input type="radio" id="pm1" name="payment_method" value="pm_card_visa" checked>
    <label for="pm1">Visa (test card, succeeds)</label>
    <input type="radio" id="pm2" name="payment_method" value="pm_card_declined">
    <label for="pm2">Declined card (test)</label>
  </fieldset>
  <img src="/static/dot.svg" alt="A dot">
  <button type="submit">Send</button>
</form>"#;

/// An image without text and a field without a label: two critical findings.
const BAD: &str = r#"<img src="/static/dot.svg"><form><input name="nameless"></form>"#;

const DOT: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><circle cx="4" cy="4" r="4"/></svg>"#;

/// A script that marks the page, to tell whether the session ran it.
const MARK: &str = "document.documentElement.dataset.js = 'ran';";

fn answer(path: &str, body: &str) -> (&'static str, &'static str, String) {
    match path {
        "/" => ("200 OK", "text/html", page("Form", FORM)),
        "/bad" => ("200 OK", "text/html", page("Bad", BAD)),
        "/static/dot.svg" => ("200 OK", "image/svg+xml", DOT.to_owned()),
        "/static/mark.js" => ("200 OK", "text/javascript", MARK.to_owned()),
        "/send" if !body.contains("quantity=0") => {
            let fields = body
                .split('&')
                .map(|pair| format!("<li>{}</li>", pair.replace('+', " ")))
                .collect::<String>();
            (
                "200 OK",
                "text/html",
                page("Sent", &format!("<ul class=\"sent\">{fields}</ul>")),
            )
        }
        "/send" => {
            let summary = r#"<div class="error-summary" role="alert"><h2>There is a problem</h2><p>Quantity must be between 1 and 99</p></div>"#;
            (
                "422 Unprocessable Content",
                "text/html",
                page("Form", &format!("{summary}{FORM}")),
            )
        }
        _ => (
            "404 Not Found",
            "text/html",
            page("Not found", "<p>No such page</p>"),
        ),
    }
}

fn serve_one(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, content) = answer(path, &String::from_utf8_lossy(&body));
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n{HEADERS}\r\n{content}",
        content.len()
    )
}

/// Serves the pages above on a loopback port (a thread per connection, for
/// the life of the test process).
fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_one(stream));
        }
    });
    addr
}

#[tokio::test]
async fn the_harness_fills_sends_and_checks_a_form() {
    let base = format!("http://{}", serve());
    let browser = Browser::start().await;
    browser
        .run(async {
            let w = browser.window("person", &base, Js::On).await;
            w.goto("/").await;
            assert_eq!(
                w.script("return document.documentElement.dataset.js").await,
                "ran"
            );
            assert_eq!(w.value("Quantity").await, "1");
            assert!(w.is_checked("Visa (test card, succeeds)").await);
            let loaded = w
                .script("return document.querySelector('img').naturalWidth")
                .await;
            assert!(loaded.as_u64().is_some_and(|width| width > 0), "{loaded}");
            w.axe().await;

            // An empty required field stops the browser from sending the form.
            w.fill("Quantity", "3").await;
            let blocked = std::panic::AssertUnwindSafe(w.click_button("Send"));
            assert!(futures::FutureExt::catch_unwind(blocked).await.is_err());

            w.fill("Your name", "Ada O'Brien").await;
            w.fill("Quantity", "0").await;
            w.click_button("Send").await;
            let summary = w.error_summary().await.unwrap_or_default();
            assert!(summary.contains("between 1 and 99"), "{summary:?}");
            // The page sent back keeps nothing: fill it in again.
            w.fill("Your name", "Ada O'Brien").await;
            w.fill("Quantity", "3").await;
            w.check("Sign in as an administrator").await;
            w.check("Declined card (test)").await;
            w.click_button("Send").await;
            assert_eq!(w.path().await, "/send");
            let sent = w.text("ul.sent").await;
            for field in [
                "name=Ada O%27Brien",
                "quantity=3",
                "admin=on",
                "payment_method=pm_card_declined",
            ] {
                assert!(sent.contains(field), "{field} not in {sent}");
            }
            assert_eq!(w.error_summary().await, None);
        })
        .await;
    let pictures = browser_pictures("the_harness_fills_sends_and_checks_a_form");
    assert!(
        pictures.iter().any(|p| p == "01-person-home.png"),
        "{pictures:?}"
    );
    assert!(
        pictures.iter().any(|p| p.ends_with("-person-send.png")),
        "{pictures:?}"
    );
}

#[tokio::test]
async fn the_harness_works_with_javascript_off() {
    let base = format!("http://{}", serve());
    let browser = Browser::start().await;
    browser
        .run(async {
            let w = browser.window("no-js", &base, Js::Off).await;
            w.goto("/").await;
            // WebDriver's scripts still run; the page's own did not.
            assert_eq!(
                w.script("return document.documentElement.dataset.js ?? null")
                    .await,
                serde_json::Value::Null
            );
            w.fill("Your name", "").await;
            w.fill_name("name", "").await;
            // The browser's own check of `required` still holds: nothing is sent.
            let blocked = std::panic::AssertUnwindSafe(w.click_button("Send"));
            assert!(futures::FutureExt::catch_unwind(blocked).await.is_err());
            w.fill_name("name", "Grace").await;
            w.click_button("Send").await;
            assert!(w.text("ul.sent").await.contains("name=Grace"));
        })
        .await;
}

#[tokio::test]
async fn axe_catches_what_a_person_with_a_screen_reader_would_miss() {
    let base = format!("http://{}", serve());
    let browser = Browser::start().await;
    browser
        .run(async {
            let w = browser.window("person", &base, Js::On).await;
            w.goto("/bad").await;
            let found = w.axe_violations().await;
            let ids: Vec<&str> = found.iter().map(|v| v.id.as_str()).collect();
            assert!(
                ids.contains(&"image-alt") && ids.contains(&"label"),
                "{ids:?}"
            );
            let failed = std::panic::AssertUnwindSafe(w.axe());
            assert!(futures::FutureExt::catch_unwind(failed).await.is_err());
        })
        .await;
}

#[tokio::test]
async fn a_failing_step_leaves_a_picture_and_the_page_source() {
    let base = format!("http://{}", serve());
    let browser = Browser::start().await;
    let failed = std::panic::AssertUnwindSafe(browser.run(async {
        let w = browser.window("person", &base, Js::On).await;
        w.goto("/nowhere").await;
        w.click_button("A button that is not there").await;
    }));
    assert!(futures::FutureExt::catch_unwind(failed).await.is_err());
    let pictures = browser_pictures("a_failing_step_leaves_a_picture_and_the_page_source");
    assert!(pictures.contains(&"failure.png".to_owned()), "{pictures:?}");
    assert!(
        pictures.contains(&"failure.html".to_owned()),
        "{pictures:?}"
    );
}

/// The files in a test's picture folder.
fn browser_pictures(test: &str) -> Vec<String> {
    let dir = screenshot_dir(&format!("selftest-{test}"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}
