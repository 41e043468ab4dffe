//! The recovery loop: sessions left mid-saga (a crash, a backend that stayed
//! down) are taken over once nobody has touched them for a while and driven to
//! COMPLETED or compensated to FAILED with the same idempotent calls.

use std::sync::Arc;
use std::time::Duration;

use storefront_runtime::Shutdown;
use tokio::time::MissedTickBehavior;

use crate::saga::CheckoutSaga;

/// Sessions taken over (and driven side by side) per round.
const BATCH: i64 = 16;

/// Every `interval`, takes over sessions untouched for `stalled_for`, until `shutdown`.
pub async fn run(
    saga: Arc<CheckoutSaga>,
    interval: Duration,
    stalled_for: Duration,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A full batch means more may be waiting. Sessions just taken are
        // touched, so the next round finds others.
        while !shutdown.is_cancelled() {
            match saga.recover_stalled(stalled_for, BATCH).await {
                Ok(taken) if taken as i64 == BATCH => {}
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "checkout recovery round failed");
                    break;
                }
            }
        }
        // The alert's input: sessions that only a person can settle.
        match saga.needing_attention().await {
            Ok(count) => metrics::gauge!("checkout_sessions_needing_attention").set(count as f64),
            Err(error) => tracing::warn!(%error, "cannot count sessions needing attention"),
        }
    }
}
