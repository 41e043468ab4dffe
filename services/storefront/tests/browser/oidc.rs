//! Sign-in through a real OpenID provider's own login page (`hack/oidc`,
//! zitadel's OP with alice / storefront-test): the shop's "Sign in with …"
//! button, the provider's form, back at `/auth/callback` signed in as
//! "Alice Example" with a session whose ID token the gateway verifies from
//! the provider's keys; a purchase; sign-out through the provider's
//! end-session endpoint.

use storefront_runtime::oidc::test_provider::{CLIENT_ID, CLIENT_SECRET, Client, TestProvider};

use crate::harness::{Browser, Js};
use crate::steps::{VISA, add_to_cart, check_page, place_order};
use crate::support::{Options, Shop, free_port};

#[tokio::test]
async fn a_shopper_signs_in_at_the_provider_buys_and_signs_out() {
    let web = free_port();
    let provider = TestProvider::start_with(Client {
        redirect_uris: vec![format!("http://{web}/auth/callback")],
        post_logout_redirect_uris: vec![format!("http://{web}/?signed_out=1")],
        ..Client::default()
    })
    .await;
    let issuer = provider.issuer.clone();
    let shop = Shop::start(Options {
        web_listen: Some(web),
        extra: vec![
            (
                "web",
                vec![
                    "--web-dev-sign-in=false".into(),
                    "--web-oidc-issuer".into(),
                    issuer.clone(),
                    "--web-oidc-client-id".into(),
                    CLIENT_ID.into(),
                    "--web-oidc-client-secret".into(),
                    CLIENT_SECRET.into(),
                    "--web-oidc-provider-name".into(),
                    "Example ID".into(),
                ],
            ),
            (
                "gateway",
                vec![
                    "--oidc-issuer".into(),
                    issuer.clone(),
                    "--oidc-audience".into(),
                    CLIENT_ID.into(),
                ],
            ),
        ],
        ..Options::default()
    })
    .await;
    let browser = Browser::start().await;
    browser
        .run(async {
            let w = browser.window("alice", &shop.web_base, Js::On).await;
            w.goto("/sign-in").await;
            // Only the provider: the development sign-in is off.
            assert!(!w.main_text().await.contains("Development sign-in"));
            check_page(&w).await;
            w.click("#oidc-sign-in").await;
            // The provider's own login page, on its own origin.
            let at = w.url().await;
            assert!(at.starts_with(issuer.trim_end_matches('/')), "{at}");
            w.picture().await;
            w.fill("Username:", "alice").await;
            w.fill("Password:", "storefront-test").await;
            w.click_button("Login").await;
            // Back in the shop, signed in.
            assert!(
                w.url().await.starts_with(&shop.web_base),
                "{}",
                w.url().await
            );
            assert!(
                w.text("header")
                    .await
                    .contains("Signed in as Alice Example"),
                "{}",
                w.text("header").await
            );
            check_page(&w).await;
            // The gateway takes the provider's token: the cart works.
            add_to_cart(&w, 3, 1).await;
            place_order(&w, VISA).await;
            assert!(
                w.text("h1").await.contains("Thank you"),
                "{}",
                w.main_text().await
            );
            // Sign-out ends the session at the provider too, then comes home.
            w.click_button("Sign out").await;
            assert!(w.text("header").await.contains("Sign in"));
            assert!(w.main_text().await.contains("You have signed out"));
            w.goto("/cart").await;
            assert!(w.path().await.starts_with("/sign-in"), "{}", w.path().await);
        })
        .await;
}
