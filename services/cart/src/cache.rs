//! The Redis cache in front of the cart table (cache-aside). Every Redis call
//! has a short deadline and a failure is only a warning: a cache that is down
//! or slow sends readers to PostgreSQL, it never fails a request. After a
//! failure, reads and fills leave Redis alone for a moment, so a dead Redis
//! costs one timeout per moment rather than one per request. Invalidations
//! are always attempted, and retried in the background when they fail.

use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue};
use storefront_runtime::StartError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::Config;
use crate::domain::{Cart, UserId};

/// How long reads and fills skip Redis after it failed.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Background attempts at a failed invalidation (backing off from 200 ms).
const INVALIDATION_RETRIES: u32 = 6;

pub struct CartCache {
    redis: ConnectionManager,
    prefix: String,
    ttl: Duration,
    jitter: Duration,
    timeout: Duration,
    resting_until: Mutex<Option<Instant>>,
}

impl CartCache {
    /// Prepares the connection without making it: Redis being down at start-up
    /// is not a start-up failure; the connection is made (and remade) on use.
    pub fn connect(config: &Config) -> Result<Self, StartError> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| StartError::Config(format!("--cart-redis-url: {e}")))?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.cache_timeout))
            .set_response_timeout(Some(config.cache_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let redis = ConnectionManager::new_lazy_with_config(client, settings)
            .map_err(|e| StartError::Config(format!("Redis connection: {e}")))?;
        Ok(CartCache {
            redis,
            prefix: config.cache_prefix.clone(),
            ttl: config.cache_ttl,
            jitter: config.cache_jitter,
            timeout: config.cache_timeout,
            resting_until: Mutex::new(None),
        })
    }

    fn key(&self, user: &UserId) -> String {
        format!("{}{}", self.prefix, user)
    }

    /// The cached cart, or `None` on a miss or when the cache cannot answer.
    pub async fn get(&self, user: &UserId) -> Option<Cart> {
        if self.resting() {
            count_request("error");
            return None;
        }
        let cached: Option<Vec<u8>> = match self
            .call(redis::cmd("GET").arg(self.key(user)), "get")
            .await
        {
            Some(cached) => cached,
            None => {
                count_request("error");
                return None;
            }
        };
        let Some(bytes) = cached else {
            count_request("miss");
            return None;
        };
        match serde_json::from_slice::<Cart>(&bytes) {
            Ok(cart) if cart.user_id == *user => {
                count_request("hit");
                return Some(cart);
            }
            Ok(_) => {
                tracing::warn!(user_id = %user, "cache entry holds another user's cart; dropping it")
            }
            Err(error) => {
                tracing::warn!(user_id = %user, %error, "undecodable cache entry; dropping it")
            }
        }
        // A bad entry is not a Redis failure: drop it and read PostgreSQL.
        count_request("error");
        self.invalidate(user).await;
        None
    }

    /// Caches `cart` for the TTL plus a random share of the jitter, but never
    /// past the cart's own expiry.
    pub async fn put(&self, cart: &Cart) {
        if self.resting() {
            return;
        }
        let jitter_ms = u64::try_from(self.jitter.as_millis()).unwrap_or(u64::MAX);
        let mut lifetime = self.ttl + Duration::from_millis(rand::random_range(0..=jitter_ms));
        if let Some(expires_at) = cart.expires_at {
            let left = (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            lifetime = lifetime.min(left);
        }
        let millis = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return;
        }
        let value = match serde_json::to_vec(cart) {
            Ok(value) => value,
            Err(error) => {
                self.failed("set", &format!("cannot encode the cart: {error}"));
                return;
            }
        };
        let set = redis::cmd("SET")
            .arg(self.key(&cart.user_id))
            .arg(value)
            .arg("PX")
            .arg(millis)
            .to_owned();
        let _: Option<()> = self.call(&set, "set").await;
    }

    /// Drops the user's cached cart. Called after every committed write; a
    /// failed attempt is retried in the background so a stale entry does not
    /// outlive a short Redis outage.
    pub async fn invalidate(&self, user: &UserId) {
        let key = self.key(user);
        let deleted: Option<i64> = self.call(redis::cmd("DEL").arg(&key), "del").await;
        if deleted.is_none() {
            self.retry_invalidation(key);
        }
    }

    fn retry_invalidation(&self, key: String) {
        let mut redis = self.redis.clone();
        let timeout = self.timeout;
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            for _ in 0..INVALIDATION_RETRIES {
                tokio::time::sleep(backoff).await;
                let del = redis::cmd("DEL").arg(&key).to_owned();
                if let Ok(Ok(_)) =
                    tokio::time::timeout(timeout, del.query_async::<i64>(&mut redis)).await
                {
                    return;
                }
                backoff *= 2;
            }
            tracing::warn!(%key, "could not invalidate a cached cart; it may be stale until its TTL");
        });
    }

    /// Runs one command within the deadline; `None` (after a warning) when Redis fails.
    async fn call<T: FromRedisValue>(&self, cmd: &Cmd, operation: &'static str) -> Option<T> {
        let mut redis = self.redis.clone();
        let command = operation.to_ascii_uppercase();
        let span = tracing::info_span!(
            "redis",
            otel.name = %command,
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = %command,
            otel.status_code = tracing::field::Empty,
        );
        let answer = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut redis))
            .instrument(span.clone())
            .await;
        if !matches!(answer, Ok(Ok(_))) {
            span.record("otel.status_code", "ERROR");
        }
        drop(span);
        match answer {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.failed(operation, &error.to_string());
                None
            }
            Err(_) => {
                self.failed(operation, &format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    fn failed(&self, operation: &'static str, error: &str) {
        tracing::warn!(operation, error, "cart cache unavailable; using PostgreSQL");
        metrics::counter!("cart_cache_errors_total", "operation" => operation).increment(1);
        let mut resting = self
            .resting_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *resting = Some(Instant::now() + REST_AFTER_FAILURE);
    }

    fn resting(&self) -> bool {
        let resting = self
            .resting_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        resting.is_some_and(|until| Instant::now() < until)
    }
}

fn count_request(result: &'static str) {
    metrics::counter!("cart_cache_requests_total", "result" => result).increment(1);
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    /// A `rediss://` URL is a TLS connection: the client's first byte
    /// opens a TLS handshake (0x16), not a RESP command.
    #[tokio::test]
    async fn a_rediss_url_speaks_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.ok()?;
            let mut first = [0u8; 1];
            socket.read_exact(&mut first).await.ok()?;
            Some(first[0])
        });
        for url in [
            format!("rediss://127.0.0.1:{port}/#insecure"),
            "rediss://cache.example:6380/0".to_owned(),
        ] {
            assert!(redis::Client::open(url.as_str()).is_ok(), "{url}");
        }
        let client = redis::Client::open(format!("rediss://127.0.0.1:{port}/#insecure").as_str())
            .expect("rediss:// is accepted");
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            client.get_multiplexed_async_connection(),
        )
        .await;
        let first = tokio::time::timeout(std::time::Duration::from_secs(3), server)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        assert_eq!(first, Some(0x16), "no TLS ClientHello");
    }
}
