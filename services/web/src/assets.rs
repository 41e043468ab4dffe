//! The shop's own files, compiled into the binary: the stylesheet, the
//! icon and the seed products' pictures. Nothing comes from another site,
//! which is what lets the Content-Security-Policy say `default-src 'self'`.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};

use crate::AppState;
use crate::pages::PageError;

/// A day: the files change only with a new release, and then their content
/// (not their name) changes, so no longer than that.
const CACHE: &str = "public, max-age=86400";

const IMAGES: [(&str, &str); 5] = [
    ("laptop.svg", include_str!("../static/images/laptop.svg")),
    ("mouse.svg", include_str!("../static/images/mouse.svg")),
    (
        "keyboard.svg",
        include_str!("../static/images/keyboard.svg"),
    ),
    ("monitor.svg", include_str!("../static/images/monitor.svg")),
    (
        "headphones.svg",
        include_str!("../static/images/headphones.svg"),
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/static/style.css",
            get(|| async {
                file(
                    "text/css; charset=utf-8",
                    include_str!("../static/style.css"),
                )
            }),
        )
        .route(
            "/static/favicon.svg",
            get(|| async { file("image/svg+xml", include_str!("../static/favicon.svg")) }),
        )
        .route("/images/{name}", get(image))
}

async fn image(Path(name): Path<String>) -> Response {
    match IMAGES.iter().find(|(file_name, _)| *file_name == name) {
        Some((_, svg)) => file("image/svg+xml", svg),
        None => PageError::NotFound.into_response(),
    }
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    response
}
