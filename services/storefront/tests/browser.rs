//! The web storefront in a real browser (headless Chromium through
//! chromedriver): the pages a person uses, with and without JavaScript,
//! each page checked with axe-core, against a whole shop of real processes.
//! Needs `hack/browser/install.sh`; pictures of every page go to
//! `target/browser-screenshots/<test>/`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

#[path = "browser/harness.rs"]
mod harness;
#[path = "browser/oidc.rs"]
mod oidc;
#[path = "browser/selftest.rs"]
mod selftest;
#[path = "browser/steps.rs"]
mod steps;

use harness::{Browser, Js, Window};
use steps::{DECLINED, PRODUCTS, VISA, add_to_cart, cart_line, check_page, place_order, sign_in};
use support::{Options, Shop};

/// A shop (with its web service) and a browser for one test.
async fn shop_and_browser() -> (Shop, Browser) {
    let shop = Shop::start(Options::default()).await;
    (shop, Browser::start().await)
}

#[tokio::test]
async fn anonymous_browsing_and_add_to_cart_asks_to_sign_in() {
    let (shop, browser) = shop_and_browser().await;
    browser
        .run(async {
            let w = browser.window("anon", &shop.web_base, Js::On).await;
            w.goto("/").await;
            assert_eq!(w.all("ul.products > li.product").await.len(), 5);
            for (id, name, price) in PRODUCTS {
                let item = w.text(&format!("li.product#product-{id}")).await;
                assert!(item.contains(name) && item.contains(price), "{item}");
                let css = format!("#product-{id} img");
                let image = w.one(&css).await;
                assert_eq!(image.attr("alt").await.unwrap().as_deref(), Some(name));
                let width = w
                    .script(&format!(
                        "const i = document.querySelector('{css}'); \
                         return i.complete ? i.naturalWidth : 0;"
                    ))
                    .await;
                assert!(
                    width.as_u64().unwrap_or(0) > 0,
                    "{name}'s image did not load"
                );
            }
            assert!(w.text("header").await.contains("Sign in"));
            check_page(&w).await;

            w.click_link("Laptop").await;
            assert_eq!(w.path().await, "/products/1");
            assert_eq!(w.text("h1").await, "Laptop");
            check_page(&w).await;

            w.click_button("Add to cart").await;
            assert!(
                w.path().await.starts_with("/sign-in?"),
                "{}",
                w.path().await
            );
            assert_eq!(w.query("next").await.as_deref(), Some("/products/1"));
            assert!(w.main_text().await.contains("Development sign-in"));
            check_page(&w).await;

            w.goto("/products/999").await;
            check_page(&w).await;
        })
        .await;
    let missing = shop
        .http
        .get(format!("{}/products/999", shop.web_base))
        .send()
        .await
        .expect("web reachable");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_signed_in_shopper_orders_and_finds_the_order() {
    let (shop, browser) = shop_and_browser().await;
    browser
        .run(async {
            let w = browser.window("ada", &shop.web_base, Js::On).await;
            sign_in(&w, "Ada").await;
            check_page(&w).await;
            add_to_cart(&w, 2, 1).await;
            check_page(&w).await;
            add_to_cart(&w, 3, 2).await;

            w.goto("/cart").await;
            w.fill("Quantity of Mouse", "3").await;
            w.click_button_in("#line-2", "Update").await;
            assert_eq!(w.value("Quantity of Mouse").await, "3");
            assert!(
                cart_line(&w, 3).await.is_some(),
                "the keyboard left the cart"
            );
            // 3 × 29.99 + 2 × 89.99
            assert!(
                w.main_text().await.contains("$269.95"),
                "{}",
                w.main_text().await
            );
            assert!(w.text("header").await.contains("Cart ("));
            check_page(&w).await;

            place_order(&w, VISA).await;
            assert!(
                w.path().await.starts_with("/checkout/"),
                "{}",
                w.path().await
            );
            let confirmation = w.main_text().await;
            assert!(
                confirmation.contains("Thank you") && confirmation.contains("$269.95"),
                "{confirmation}"
            );
            check_page(&w).await;

            // The order is made from a Kafka event: it shows up shortly after.
            w.goto("/orders").await;
            w.reload_until_present("main a[href^='/orders/']", 15).await;
            check_page(&w).await;
            w.click("main a[href^='/orders/']").await;
            let detail = w.main_text().await;
            for part in ["Mouse", "Keyboard", "$269.95"] {
                assert!(detail.contains(part), "{part} not in the order: {detail}");
            }
            assert!(
                detail.to_lowercase().contains("confirmed"),
                "no status: {detail}"
            );
            check_page(&w).await;

            // The checked-out lines leave the cart (through the same event).
            w.goto("/cart").await;
            w.reload_until_text("Your cart is empty", 15).await;
        })
        .await;
}

#[tokio::test]
async fn a_declined_card_says_why_and_keeps_the_cart() {
    let (shop, browser) = shop_and_browser().await;
    browser
        .run(async {
            let w = browser.window("ben", &shop.web_base, Js::On).await;
            sign_in(&w, "Ben").await;
            add_to_cart(&w, 4, 1).await;
            place_order(&w, DECLINED).await;
            assert!(
                w.path().await.starts_with("/checkout"),
                "{}",
                w.path().await
            );
            let summary = w.error_summary().await.unwrap_or_default();
            assert!(summary.contains("declined"), "error summary: {summary:?}");
            check_page(&w).await;
            w.goto("/cart").await;
            assert!(
                cart_line(&w, 4).await.is_some(),
                "the cart lost its monitor"
            );
        })
        .await;
}

/// Opens `who`'s cart and checks it holds product `mine` and not `theirs`.
async fn cart_holds_only(w: &Window, mine: u32, theirs: u32) {
    w.goto("/cart").await;
    assert!(cart_line(w, mine).await.is_some(), "product {mine} missing");
    assert!(
        cart_line(w, theirs).await.is_none(),
        "product {theirs} from another cart"
    );
}

#[tokio::test]
async fn two_shoppers_never_see_each_others_cart() {
    let (shop, browser) = shop_and_browser().await;
    browser
        .run(async {
            let cleo = browser.window("cleo", &shop.web_base, Js::On).await;
            let dan = browser.window("dan", &shop.web_base, Js::On).await;
            sign_in(&cleo, "Cleo").await;
            sign_in(&dan, "Dan").await;
            add_to_cart(&cleo, 1, 1).await;
            add_to_cart(&dan, 5, 2).await;
            cart_holds_only(&cleo, 1, 5).await;
            cart_holds_only(&dan, 5, 1).await;
            assert!(cleo.text("header").await.contains("Signed in as Cleo"));
            assert!(dan.text("header").await.contains("Signed in as Dan"));
        })
        .await;
}

#[tokio::test]
async fn the_whole_flow_works_without_javascript() {
    let (shop, browser) = shop_and_browser().await;
    browser
        .run(async {
            let w = browser.window("no-js", &shop.web_base, Js::Off).await;
            sign_in(&w, "Eve").await;
            add_to_cart(&w, 5, 1).await;
            w.goto("/cart").await;
            w.fill("Quantity of Headphones", "2").await;
            w.click_button_in("#line-5", "Update").await;
            assert!(
                w.main_text().await.contains("$499.98"),
                "{}",
                w.main_text().await
            );
            place_order(&w, VISA).await;
            assert!(
                w.path().await.starts_with("/checkout/"),
                "{}",
                w.path().await
            );
            assert!(w.main_text().await.contains("Thank you"));
        })
        .await;
}

/// An administrator finds a shopper's order by its id and moves it through
/// its statuses; the page offers only the allowed next ones, and a change
/// that is no longer allowed (another tab got there first) is explained.
#[tokio::test]
async fn an_administrator_moves_an_order_through_its_statuses() {
    let (shop, browser) = shop_and_browser().await;
    browser
        .run(async {
            let eve = browser.window("eve", &shop.web_base, Js::On).await;
            sign_in(&eve, "Eve").await;
            add_to_cart(&eve, 1, 1).await;
            place_order(&eve, VISA).await;
            eve.goto("/orders").await;
            eve.reload_until_present("main a[href^='/orders/']", 15)
                .await;
            eve.click("main a[href^='/orders/']").await;
            let order_page = eve.path().await;
            // A shopper sees the status, not the controls.
            assert!(eve.all("select#status").await.is_empty());

            let ops = browser.window("ops", &shop.web_base, Js::On).await;
            ops.goto("/sign-in").await;
            ops.fill("Your name", "Ops").await;
            ops.check("Sign in as an administrator").await;
            ops.click_button("Sign in").await;
            assert!(ops.text("header").await.contains("(administrator)"));
            ops.goto("/orders").await;
            check_page(&ops).await;
            let id = order_page.trim_start_matches("/orders/").to_owned();
            ops.fill("Order id", &id).await;
            ops.click_button("Find").await;
            assert_eq!(ops.path().await, order_page);
            check_page(&ops).await;
            let offered: Vec<String> = futures::future::join_all(
                ops.all("select#status option")
                    .await
                    .iter()
                    .map(|o| o.text()),
            )
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
            assert_eq!(offered, ["PROCESSING", "CANCELLED"]);
            ops.click_button("Update status").await;
            assert_eq!(ops.text("#order-status").await, "PROCESSING");
            check_page(&ops).await;

            // Two administrators' pages show PROCESSING's choices; one ships
            // the order, the other's cancellation then comes too late.
            let late = browser.window("ops-2", &shop.web_base, Js::On).await;
            late.goto("/sign-in").await;
            late.fill("Your name", "Ops").await;
            late.check("Sign in as an administrator").await;
            late.click_button("Sign in").await;
            late.goto(&order_page).await;
            ops.goto(&order_page).await;
            ops.click_button("Update status").await;
            assert_eq!(ops.text("#order-status").await, "SHIPPED");
            late.script("document.querySelector('#status').value = 'CANCELLED'; return null;")
                .await;
            late.click_button("Update status").await;
            let refused = late.error_summary().await.unwrap_or_default();
            assert!(refused.contains("not allowed"), "{refused:?}");
            assert_eq!(late.text("#order-status").await, "SHIPPED");
            check_page(&late).await;
            eve.goto(&order_page).await;
            assert_eq!(eve.text("#order-status").await, "SHIPPED");
        })
        .await;
}
