//! The reservation sweeper: expires pending reservations past their deadline
//! and returns their stock, so an abandoned checkout never holds stock for long.

use std::time::Duration;

use storefront_runtime::Shutdown;

use crate::store::StockLedger;

pub async fn run(ledger: StockLedger, interval: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Expire everything due now, one reservation per transaction.
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match ledger.expire_one().await {
                Ok(Some(id)) => {
                    metrics::counter!("inventory_reservations_expired_total").increment(1);
                    tracing::info!(reservation_id = %id, "reservation expired; stock returned");
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "reservation sweep failed; retrying next tick");
                    break;
                }
            }
        }
    }
}
