//! Limits at the edge: token-bucket rate limits per user (per client address
//! for requests without a valid token) and the 64 KiB cap on request bodies.
//! The client address is the connection's peer, or behind trusted proxies the
//! address they say they saw ([`client_address`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use ipnet::IpNet;

use crate::auth::{Identity, UserId};
use crate::config::Config;
use crate::problem::ApiError;

/// Largest request body, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key: `burst` tokens, refilled at `rate` per second.
#[derive(Debug)]
struct Buckets<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash> Buckets<K> {
    fn new(rate: f64, burst: u32) -> Self {
        Buckets {
            rate: if rate.is_finite() { rate.max(0.0) } else { 0.0 },
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            // A bucket that has refilled completely holds nothing worth remembering.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

/// Rate limits of the API routes.
#[derive(Debug)]
pub struct RateLimits {
    per_user: Buckets<UserId>,
    per_ip: Buckets<IpAddr>,
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(config: &Config) -> Self {
        RateLimits {
            per_user: Buckets::new(config.rate_limit_per_user, config.rate_limit_per_user_burst),
            per_ip: Buckets::new(config.rate_limit_per_ip, config.rate_limit_per_ip_burst),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }
}

/// Admits the request or answers 429 with `Retry-After`. Signed-in callers
/// are limited per user; everyone else (no token, or a refused one) per
/// client address.
pub fn rate_limit(limits: &RateLimits, request: &Request) -> Result<(), ApiError> {
    let now = Instant::now();
    let (kind, admitted) = match request.extensions().get::<Identity>() {
        Some(Identity::Caller(caller)) => ("user", limits.per_user.take(caller.user.clone(), now)),
        _ => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
            let ip = client_address(peer, request.headers(), &limits.trusted_proxies);
            ("ip", limits.per_ip.take(rate_key(ip), now))
        }
    };
    admitted.map_err(|retry_after| {
        metrics::counter!("http_server_rate_limited_total", "limit" => kind).increment(1);
        ApiError::RateLimited { retry_after }
    })
}

/// The address a per-address limit counts: an IPv6 client is its /64 (one
/// subscriber usually holds a whole /64 and can pick any address in it), an
/// IPv4 address written as IPv6 counts as that IPv4 address.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

/// Who sent the request. The peer, unless it is a trusted proxy: then
/// `X-Forwarded-For` (every proxy appends the address it saw; several headers
/// read as one list) is walked from the right, and the first address that is
/// not a trusted proxy is the client. A client can write anything at the left
/// of the header, so nothing left of that address is believed; an entry that
/// is not an address ends the walk at the proxy that passed it on.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|value| value.to_str().unwrap_or("?").rsplit(','))
        .map(str::trim);
    for hop in hops {
        if !is_trusted(&client) {
            break;
        }
        // `1.2.3.4`, `::1`, or with a port: `1.2.3.4:80`, `[::1]:80`.
        let Some(ip) = hop
            .parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        else {
            break;
        };
        client = ip;
    }
    client
}

/// Declared bodies up to this size are read and discarded before the 413, so
/// a client still sending can read the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Refuses a declared body over [`BODY_LIMIT`] before any handler reads it; a
/// body without a length is cut off by `DefaultBodyLimit` where it is read.
pub async fn cap_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > BODY_LIMIT as u64 => {
            if length <= DRAIN_LIMIT as u64 {
                discard(request.into_body()).await;
            }
            let mut response = ApiError::PayloadTooLarge.into_response();
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

/// Reads a refused body into nothing, for at most [`DRAIN_LIMIT`] bytes
/// and [`DRAIN_TIME`]: nothing is kept, and a client that stops sending
/// cannot hold the answer back.
async fn discard(body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = 0;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |data| data.len());
            if read > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// Longest wait for a refused body to be read away.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_limited_by_its_64() {
        let key =
            |ip: &str| rate_key(ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"))).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
    }

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(
                "x-forwarded-for",
                value.parse().unwrap_or_else(|e| panic!("{e}")),
            );
        }
        let trusted: Vec<IpNet> = trusted
            .iter()
            .map(|t| t.parse().unwrap_or_else(|e| panic!("{t}: {e}")))
            .collect();
        let peer = peer.parse().unwrap_or_else(|e| panic!("{peer}: {e}"));
        client_address(peer, &headers, &trusted).to_string()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let ingress: &[&str] = &["10.0.0.0/8"];
        // (peer, X-Forwarded-For headers, trusted, the client address)
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            // No trusted proxies, or a peer that is not one: the header is ignored.
            ("203.0.113.9", &["198.51.100.1"], &[], "203.0.113.9"),
            ("203.0.113.9", &["198.51.100.1"], ingress, "203.0.113.9"),
            // Behind the ingress: the address it saw.
            ("10.1.2.3", &["198.51.100.1"], ingress, "198.51.100.1"),
            // A client's own X-Forwarded-For is left of what the proxy appended.
            (
                "10.1.2.3",
                &["6.6.6.6, 198.51.100.1"],
                ingress,
                "198.51.100.1",
            ),
            // Two proxies (a load balancer, then the ingress), over two headers.
            (
                "10.1.2.3",
                &["6.6.6.6, 198.51.100.1", "10.9.9.9"],
                ingress,
                "198.51.100.1",
            ),
            // Ports and IPv6 are read; all hops trusted gives the left-most.
            ("10.1.2.3", &["[2001:db8::1]:443"], ingress, "2001:db8::1"),
            ("10.1.2.3", &["198.51.100.1:5000"], ingress, "198.51.100.1"),
            ("10.1.2.3", &["10.0.0.1, 10.0.0.2"], ingress, "10.0.0.1"),
            // Garbage ends the walk at the proxy that passed it on; no header, the peer.
            ("10.1.2.3", &["unknown"], ingress, "10.1.2.3"),
            (
                "10.1.2.3",
                &["198.51.100.1, junk, 10.0.0.7"],
                ingress,
                "10.0.0.7",
            ),
            ("10.1.2.3", &[], ingress, "10.1.2.3"),
        ];
        for (peer, forwarded, trusted, expected) in cases {
            assert_eq!(
                client(peer, forwarded, trusted),
                *expected,
                "peer {peer}, X-Forwarded-For {forwarded:?}, trusted {trusted:?}"
            );
        }
    }

    #[test]
    fn burst_then_sustained_rate() {
        let buckets = Buckets::new(2.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.take("a", start), Ok(()));
        }
        let refused = buckets.take("a", start);
        assert_eq!(refused, Err(Duration::from_millis(500)));
        assert_eq!(buckets.take("b", start), Ok(()), "keys are independent");
        let later = start + Duration::from_millis(500);
        assert_eq!(buckets.take("a", later), Ok(()), "one token refilled");
        assert!(buckets.take("a", later).is_err());
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let buckets = Buckets::new(0.0, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(buckets.take(1, now), Ok(()));
        }
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let buckets = Buckets::new(1000.0, 1);
        let start = Instant::now();
        for key in 0..=PRUNE_ABOVE {
            let _ = buckets.take(key, start);
        }
        let later = start + Duration::from_secs(1);
        let _ = buckets.take(usize::MAX, later);
        let kept = buckets.buckets.lock().map(|b| b.len()).unwrap_or_default();
        assert_eq!(kept, 1);
    }
}
