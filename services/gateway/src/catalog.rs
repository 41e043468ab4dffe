//! The catalog as the gateway serves it: each answer of `GET
//! /api/v1/products` (per page size and token) is kept, serialized, for
//! `--gateway-catalog-ttl`, so browsing costs no backend call, no protobuf
//! decoding and no JSON encoding most of the time. The catalog is written only
//! in the product service's database (migrations, an operator's SQL), so a
//! change shows through the gateway within one TTL; every answer carries an
//! `ETag` (a hash of its bytes, the same in every replica) and answers a
//! matching `If-None-Match` with 304, and `Cache-Control` lets browsers and
//! shared caches keep it as long as the gateway does.
//!
//! At expiry one request fetches the page again while the others wait for it
//! (single flight per process); an error is answered as is and not kept.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::input::Page;
use crate::problem::ApiError;

/// Most distinct pages kept; page tokens come from clients, so the number of
/// keys is bounded, and a page past the bound is served uncached.
const MAX_PAGES: usize = 256;

/// One serialized page and when it was fetched.
#[derive(Clone)]
struct Kept {
    body: Bytes,
    etag: HeaderValue,
    fetched: Instant,
}

pub struct Catalog {
    ttl: Duration,
    cache_control: HeaderValue,
    pages: RwLock<HashMap<(i32, String), Kept>>,
    /// Held while a page is fetched, so that one request per expiry calls the backend.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalog kept `ttl` (zero: every request asks the product service).
    pub fn new(ttl: Duration) -> Self {
        let cache_control = match ttl.as_secs() {
            0 => HeaderValue::from_static("no-cache"),
            secs => HeaderValue::from_str(&format!("public, max-age={secs}"))
                .unwrap_or(HeaderValue::from_static("no-cache")),
        };
        Catalog {
            ttl,
            cache_control,
            pages: RwLock::new(HashMap::new()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, key: &(i32, String)) -> Option<Kept> {
        let pages = self.pages.read().unwrap_or_else(|e| e.into_inner());
        pages
            .get(key)
            .filter(|kept| kept.fetched.elapsed() < self.ttl)
            .cloned()
    }

    /// The answer for `page`: kept, or made by `fetch` (the page as JSON bytes).
    pub async fn page<F, Fut>(
        &self,
        page: Page,
        conditions: &IfNoneMatch,
        fetch: F,
    ) -> Result<Response, ApiError>
    where
        F: FnOnce(Page) -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        if self.ttl.is_zero() {
            return Ok(self.answer(&made(fetch(page).await?), conditions));
        }
        let key = (page.size, page.token.clone());
        if let Some(kept) = self.fresh(&key) {
            return Ok(self.answer(&kept, conditions));
        }
        let _turn = self.refresh.lock().await;
        // Whoever held the turn before may have fetched this very page.
        if let Some(kept) = self.fresh(&key) {
            return Ok(self.answer(&kept, conditions));
        }
        let kept = made(fetch(page).await?);
        let mut pages = self.pages.write().unwrap_or_else(|e| e.into_inner());
        if pages.len() >= MAX_PAGES {
            pages.retain(|_, kept| kept.fetched.elapsed() < self.ttl);
        }
        if pages.len() < MAX_PAGES || pages.contains_key(&key) {
            pages.insert(key, kept.clone());
        }
        Ok(self.answer(&kept, conditions))
    }

    fn answer(&self, kept: &Kept, conditions: &IfNoneMatch) -> Response {
        let common = [
            (header::ETAG, kept.etag.clone()),
            (header::CACHE_CONTROL, self.cache_control.clone()),
        ];
        if matches_etag(conditions, &kept.etag) {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        (
            common,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            kept.body.clone(),
        )
            .into_response()
    }
}

fn made(body: Bytes) -> Kept {
    let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(&body)))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    Kept {
        body,
        etag,
        fetched: Instant::now(),
    }
}

/// A request's `If-None-Match` values (taken alone: extracting the whole
/// `HeaderMap` would copy every header of every request).
#[derive(Debug, Default)]
pub struct IfNoneMatch(Vec<HeaderValue>);

impl IfNoneMatch {
    pub fn of(headers: &HeaderMap) -> Self {
        IfNoneMatch(
            headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .cloned()
                .collect(),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch::of(&parts.headers))
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak comparison, as
/// RFC 9110 asks for this header.
fn matches_etag(conditions: &IfNoneMatch, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    conditions
        .0
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
}

/// FNV-1a, 64 bits: a stable hash (the same in every replica and release),
/// so an ETag from one gateway is recognised by another.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn page() -> Page {
        Page::default()
    }

    async fn body(response: Response) -> Bytes {
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_page_is_fetched_once_per_ttl_and_answered_with_its_etag() {
        let catalog = Catalog::new(Duration::from_secs(60));
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = |calls: Arc<AtomicUsize>| {
            move |_| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(Bytes::from_static(b"{\"products\":[]}"))
            }
        };
        let first = catalog
            .page(page(), &IfNoneMatch::default(), fetch(calls.clone()))
            .await
            .unwrap();
        let etag = first.headers()[header::ETAG].clone();
        assert_eq!(first.headers()[header::CACHE_CONTROL], "public, max-age=60");
        assert_eq!(body(first).await, "{\"products\":[]}");
        let second = catalog
            .page(page(), &IfNoneMatch::default(), fetch(calls.clone()))
            .await
            .unwrap();
        assert_eq!(second.headers()[header::ETAG], etag);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the second answer was kept"
        );

        let mut conditional = HeaderMap::new();
        conditional.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", etag.to_str().unwrap())).unwrap(),
        );
        let not_modified = catalog
            .page(page(), &IfNoneMatch::of(&conditional), fetch(calls.clone()))
            .await
            .unwrap();
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert!(body(not_modified).await.is_empty());
        conditional.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        let changed = catalog
            .page(page(), &IfNoneMatch::of(&conditional), fetch(calls.clone()))
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn an_expired_page_is_fetched_again_and_a_new_body_gets_a_new_etag() {
        let catalog = Catalog::new(Duration::from_millis(30));
        let a = catalog
            .page(page(), &IfNoneMatch::default(), |_| async {
                Ok(Bytes::from_static(b"a"))
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let b = catalog
            .page(page(), &IfNoneMatch::default(), |_| async {
                Ok(Bytes::from_static(b"b"))
            })
            .await
            .unwrap();
        assert_ne!(a.headers()[header::ETAG], b.headers()[header::ETAG]);
        assert_eq!(body(b).await, "b");
    }

    #[tokio::test]
    async fn an_error_is_answered_and_not_kept() {
        let catalog = Catalog::new(Duration::from_secs(60));
        let failed = catalog
            .page(page(), &IfNoneMatch::default(), |_| async {
                Err(ApiError::bad_answer(
                    crate::backends::BackendName::Product,
                    "down",
                ))
            })
            .await;
        assert!(failed.is_err());
        let ok = catalog
            .page(page(), &IfNoneMatch::default(), |_| async {
                Ok(Bytes::from_static(b"ok"))
            })
            .await
            .unwrap();
        assert_eq!(body(ok).await, "ok");
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_backend_call() {
        let catalog = Arc::new(Catalog::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (catalog, calls) = (catalog.clone(), calls.clone());
                tokio::spawn(async move {
                    catalog
                        .page(page(), &IfNoneMatch::default(), |_| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(Bytes::from_static(b"x"))
                        })
                        .await
                        .map(|r| r.status())
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_zero_ttl_asks_every_time_and_says_no_cache() {
        let catalog = Catalog::new(Duration::ZERO);
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            let r = catalog
                .page(page(), &IfNoneMatch::default(), |_| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(Bytes::from_static(b"x"))
                })
                .await
                .unwrap();
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_etag_hash_is_stable() {
        // FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
