//! The expiry sweeper: deletes carts idle past their expiry (and their cache
//! entries), and forgets checkouts processed long ago.

use std::time::Duration;

use storefront_runtime::Shutdown;

use crate::carts::Carts;

/// How long a processed checkout is remembered: far beyond any Kafka
/// retention, so a redelivery always finds it.
const PROCESSED_CHECKOUT_RETENTION: chrono::Duration = chrono::Duration::days(30);

pub async fn run(carts: Carts, interval: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match carts.expire_idle().await {
            Ok(0) => {}
            Ok(expired) => {
                metrics::counter!("cart_carts_expired_total").increment(expired as u64);
                tracing::info!(expired, "idle carts expired");
            }
            Err(error) => tracing::warn!(%error, "cart expiry sweep failed; retrying next tick"),
        }
        if let Err(error) = carts.prune_processed(PROCESSED_CHECKOUT_RETENTION).await {
            tracing::warn!(%error, "pruning processed checkouts failed; retrying next tick");
        }
    }
}
