//! The shop's pages as a person uses them, by the labels and button texts of
//! the page contract (CONTRACT.md): the steps the browser tests share.

use crate::harness::Window;

/// The seed catalogue: id, name, price as the pages show it.
pub const PRODUCTS: [(u32, &str, &str); 5] = [
    (1, "Laptop", "$1,299.99"),
    (2, "Mouse", "$29.99"),
    (3, "Keyboard", "$89.99"),
    (4, "Monitor", "$399.99"),
    (5, "Headphones", "$249.99"),
];

/// What every page owes a person (CONTRACT.md): English, one `<h1>`, a
/// `<main id="main">` that a skip link leads to, a header with the shop's
/// links; then axe-core finds nothing serious on it.
pub async fn check_page(w: &Window) {
    assert_eq!(
        w.all("html[lang=en]").await.len(),
        1,
        "no lang=\"en\" on {}",
        w.path().await
    );
    assert_eq!(
        w.all("h1").await.len(),
        1,
        "not one <h1> on {}",
        w.path().await
    );
    assert_eq!(
        w.all("main#main").await.len(),
        1,
        "no <main id=\"main\"> on {}",
        w.path().await
    );
    assert!(
        !w.all("a[href='#main']").await.is_empty(),
        "no skip link on {}",
        w.path().await
    );
    let header = w.text("header").await;
    for link in ["Catalog", "Cart", "Orders"] {
        assert!(
            header.contains(link),
            "no {link} link in the header of {}: {header}",
            w.path().await
        );
    }
    w.axe().await;
}

/// Signs in with the development sign-in as `name`; the header then says so.
pub async fn sign_in(w: &Window, name: &str) {
    w.goto("/sign-in").await;
    w.fill("Your name", name).await;
    w.click_button("Sign in").await;
    let header = w.text("header").await;
    assert!(
        header.contains(&format!("Signed in as {name}")),
        "not signed in as {name}; the header says: {header}"
    );
}

/// Adds `quantity` of product `id` from its product page.
pub async fn add_to_cart(w: &Window, id: u32, quantity: u32) {
    w.goto(&format!("/products/{id}")).await;
    w.fill("Quantity", &quantity.to_string()).await;
    w.click_button("Add to cart").await;
    assert_eq!(
        w.error_summary().await,
        None,
        "adding product {id} failed on {}",
        w.path().await
    );
}

/// The cart's row of product `id`, if the cart (already open) has one.
pub async fn cart_line(w: &Window, id: u32) -> Option<String> {
    let rows = w.all(&format!("tr#line-{id}")).await;
    match rows.first() {
        Some(row) => Some(row.text().await.expect("cart row text")),
        None => None,
    }
}

/// From the cart page: goes to checkout, fills in the address, picks the
/// payment method labelled `payment` and places the order.
pub async fn place_order(w: &Window, payment: &str) {
    w.goto("/cart").await;
    w.click_link("Checkout").await;
    assert!(
        w.path().await.starts_with("/checkout"),
        "Checkout led to {}",
        w.path().await
    );
    for (label, value) in [
        ("Full name", "Ada Lovelace"),
        ("Address line 1", "12 Analytical Row"),
        ("Town or city", "London"),
        ("Postcode", "N1 9GU"),
        ("Country", "GB"),
    ] {
        w.fill(label, value).await;
    }
    w.check(payment).await;
    w.click_button("Place order").await;
}

/// The payment methods' labels.
pub const VISA: &str = "Visa (test card, succeeds)";
pub const DECLINED: &str = "Declined card (test)";
