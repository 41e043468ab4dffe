//! The web storefront over HTTP, against the real shop (every service a
//! process, real PostgreSQL, Redis and Kafka): its security headers and
//! cookies, CSRF, forged sessions, the words it shows for the API's
//! refusals, hostile form input, and a gateway that is down. The same pages
//! in a real browser are `browser.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use reqwest::StatusCode;
use support::web::WebClient;
use support::{Options, Shop};

#[tokio::test]
async fn pages_are_served_with_a_strict_policy_and_cached_assets() {
    let shop = Shop::start(Options::default()).await;
    let mut browser = WebClient::new(&shop.web_base);
    let catalog = browser.get("/").await;
    assert_eq!(catalog.status, StatusCode::OK);
    let csp = catalog.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert_eq!(catalog.header("x-content-type-options"), Some("nosniff"));
    let csrf_cookie = catalog
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("sf_csrf="))
        .expect("a CSRF cookie for a new visitor");
    assert!(
        csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );
    for name in ["Laptop", "Mouse", "Keyboard", "Monitor", "Headphones"] {
        assert!(
            catalog.body.contains(name),
            "{name} missing from the catalog"
        );
    }
    // Every picture the catalog shows is the shop's own, and cached.
    let pictures: Vec<String> = catalog
        .body
        .split("src=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(pictures.len(), 5, "{pictures:?}");
    for path in pictures
        .iter()
        .map(String::as_str)
        .chain(["/static/style.css"])
    {
        assert!(path.starts_with('/'), "{path} is not served by the shop");
        let asset = browser.get(path).await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=86400"),
            "{path}"
        );
    }
    // Unknown pages are a page, not a bare status.
    let missing = browser.get("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("Page not found"), "{}", missing.body);
}

#[tokio::test]
async fn a_form_without_the_visitors_csrf_token_changes_nothing() {
    let shop = Shop::start(Options::default()).await;
    let mut browser = WebClient::new(&shop.web_base);
    browser.sign_in("Carol").await;
    let forged = [
        ("product_id", "1"),
        ("quantity", "3"),
        ("csrf", "not-the-token"),
    ];
    let refused = browser.post_raw("/cart/items", &forged, &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.error_summary().is_some(), "{}", refused.body);
    // The right token, but sent from another site's page.
    let csrf = browser.csrf().await;
    let other_site = [
        ("product_id", "1"),
        ("quantity", "3"),
        ("csrf", csrf.as_str()),
    ];
    let refused = browser
        .post_raw(
            "/cart/items",
            &other_site,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let cart = shop
        .call(
            reqwest::Method::GET,
            "/api/v1/cart",
            &shop.token("carol"),
            None,
        )
        .await;
    assert_eq!(cart.body["items"], serde_json::json!([]), "{:?}", cart.body);
    // The same form with the token is taken.
    assert_eq!(
        browser.add_to_cart(1, 3).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn an_edited_session_cookie_signs_nobody_in() {
    let shop = Shop::start(Options::default()).await;
    let mut browser = WebClient::new(&shop.web_base);
    browser.sign_in("Dave").await;
    assert_eq!(browser.get("/cart").await.status, StatusCode::OK);
    let sealed = browser.cookies["sf_session"].clone();
    let (payload, tag) = sealed.split_once('.').unwrap();
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut session: serde_json::Value =
        serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap();
    session["admin"] = true.into();
    session["user"] = "someone-else".into();
    let edited = engine.encode(serde_json::to_vec(&session).unwrap());
    browser
        .cookies
        .insert("sf_session".into(), format!("{edited}.{tag}"));
    let cart = browser.get("/cart").await;
    assert_eq!(cart.status, StatusCode::SEE_OTHER);
    assert!(
        cart.location().starts_with("/sign-in"),
        "{}",
        cart.location()
    );
}

#[tokio::test]
async fn shoppers_see_only_their_own_cart_and_orders() {
    let shop = Shop::start(Options::default()).await;
    let mut erin = WebClient::new(&shop.web_base);
    let mut frank = WebClient::new(&shop.web_base);
    erin.sign_in("Erin").await;
    frank.sign_in("Frank").await;
    erin.add_to_cart(4, 1).await;
    frank.add_to_cart(2, 5).await;
    let erins = erin.get("/cart").await.body;
    let franks = frank.get("/cart").await.body;
    assert!(
        erins.contains("Monitor") && !erins.contains("Mouse"),
        "{erins}"
    );
    assert!(
        franks.contains("Mouse") && !franks.contains("Monitor"),
        "{franks}"
    );

    let placed = erin.checkout("pm_card_visa", &[]).await;
    assert_eq!(placed.status, StatusCode::SEE_OTHER, "{}", placed.body);
    let confirmation = erin.get(placed.location()).await;
    assert!(
        confirmation.body.contains("Thank you"),
        "{}",
        confirmation.body
    );
    let checkout_id = placed
        .location()
        .trim_start_matches("/checkout/")
        .to_owned();
    // Frank cannot look at Erin's checkout or order.
    assert_eq!(
        frank.get(placed.location()).await.status,
        StatusCode::NOT_FOUND
    );
    let order = shop.wait_for_order(&shop.token("erin"), &checkout_id).await;
    let order_page = format!("/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(erin.get(&order_page).await.status, StatusCode::OK);
    assert_eq!(frank.get(&order_page).await.status, StatusCode::NOT_FOUND);
    assert!(
        !frank
            .get("/orders")
            .await
            .body
            .contains(order["id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn the_apis_refusals_read_as_words_on_the_page() {
    let shop = Shop::start(Options {
        laptops: Some(1),
        ..Options::default()
    })
    .await;
    let mut browser = WebClient::new(&shop.web_base);
    browser.sign_in("Grace").await;

    let empty = browser.checkout("pm_card_visa", &[]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        empty
            .error_summary()
            .unwrap()
            .contains("Your cart is empty")
    );

    let too_many = browser.add_to_cart(1, 100).await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_many.error_summary().unwrap().contains("from 1 to 99"));

    browser.add_to_cart(1, 2).await;
    let out_of_stock = browser.checkout("pm_card_visa", &[]).await;
    assert_eq!(out_of_stock.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        out_of_stock
            .error_summary()
            .unwrap()
            .contains("out of stock"),
        "{:?}",
        out_of_stock.error_summary()
    );

    let line = browser.post("/cart/items/1", &[("quantity", "1")]).await;
    assert_eq!(line.status, StatusCode::SEE_OTHER);
    for (method, words) in [
        ("pm_card_declined", "the card was declined"),
        ("pm_card_insufficient_funds", "insufficient funds"),
        ("pm_card_expired", "the card has expired"),
        ("pm_card_cvc_fail", "security code"),
    ] {
        let declined = browser.checkout(method, &[]).await;
        assert_eq!(
            declined.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method}"
        );
        let summary = declined.error_summary().unwrap();
        assert!(summary.contains(words), "{method}: {summary}");
        // The cart is still there to pay another way.
        assert!(declined.body.contains("Laptop"), "{method}");
    }
    let bought = browser.checkout("pm_card_visa", &[]).await;
    assert_eq!(bought.status, StatusCode::SEE_OTHER, "{}", bought.body);
}

#[tokio::test]
async fn hostile_form_input_never_gives_a_server_error() {
    let shop = Shop::start(Options::default()).await;
    let mut browser = WebClient::new(&shop.web_base);
    browser.sign_in("Mallory").await;
    browser.add_to_cart(2, 1).await;
    let long = "x".repeat(5000);
    let hostile = [
        "",
        " ",
        "\u{0}",
        "a\u{0}b",
        "\u{1b}[31m",
        "-1",
        "0",
        "1e3",
        "99999999999999999999",
        "<script>alert(1)</script>",
        "'; DROP TABLE carts; --",
        "../../etc/passwd",
        "%00",
        long.as_str(),
    ];
    let mut answers = Vec::new();
    for value in hostile {
        let shown: String = value.chars().take(40).collect();
        for (path, field) in [
            ("/cart/items", "product_id"),
            ("/cart/items", "quantity"),
            ("/cart/items/2", "quantity"),
            ("/checkout", "name"),
            ("/checkout", "payment_method"),
            ("/checkout", "idempotency_key"),
            ("/sign-in/dev", "name"),
            ("/sign-in/dev", "next"),
        ] {
            let mut fields = vec![("product_id", "2"), ("quantity", "1"), ("name", "Mallory")];
            fields.retain(|(name, _)| *name != field);
            fields.push((field, value));
            let page = if path == "/checkout" {
                // The whole form, with the one field hostile.
                let csrf = browser.csrf().await;
                let mut form = vec![
                    ("line1", "1 Road"),
                    ("city", "Town"),
                    ("postal_code", "1"),
                    ("country", "Land"),
                    ("csrf", csrf.as_str()),
                ];
                form.extend(
                    fields
                        .iter()
                        .filter(|(n, _)| *n != "product_id" && *n != "quantity"),
                );
                browser.post_raw(path, &form, &[]).await
            } else {
                browser.post(path, &fields).await
            };
            answers.push((page.status, format!("POST {path} {field}={shown:?}")));
        }
        for path in ["/products/", "/orders/", "/checkout/", "/cart/items/"] {
            let segment: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let page = browser.get(&format!("{path}{segment}")).await;
            answers.push((page.status, format!("GET {path}{shown:?}")));
        }
        // A sign-in that would lead elsewhere comes back inside the shop.
        let next = [("name", "Mallory"), ("next", "https://evil.example/")];
        let signed = browser.post("/sign-in/dev", &next).await;
        assert_eq!(signed.location(), "/");
    }
    let failures: Vec<_> = answers
        .iter()
        .filter(|(s, _)| s.is_server_error())
        .collect();
    assert!(failures.is_empty(), "server errors: {failures:?}");
    // And the shop still sells.
    browser.sign_in("Mallory").await;
    let bought = browser.checkout("pm_card_visa", &[]).await;
    assert!(
        bought.status == StatusCode::SEE_OTHER || bought.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bought.status
    );
}

#[tokio::test]
async fn a_gateway_that_is_down_gives_a_page_that_says_so() {
    let mut shop = Shop::start(Options {
        extra: vec![("web", vec!["--web-catalog-ttl".into(), "0s".into()])],
        ..Options::default()
    })
    .await;
    let mut browser = WebClient::new(&shop.web_base);
    browser.sign_in("Heidi").await;
    shop.kill("gateway");
    for path in ["/", "/cart", "/orders", "/products/1"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            page.body.contains("The shop is having trouble"),
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains("<html"), "{path}: not a page");
    }
    let ready = browser.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    shop.restart("gateway", &[]).await;
    assert_eq!(browser.get("/cart").await.status, StatusCode::OK);
}
