//! Graceful shutdown: one token cancelled on SIGINT or SIGTERM, which every
//! server and background loop of the process watches.
//!
//! With a delay ([`on_signal_after`]) the process first keeps serving for
//! that long while [`draining`] is true: time for Kubernetes to take the
//! terminating pod out of its Services' endpoints, so that no new request or
//! connection meets a closed port. Only then is the token cancelled and
//! in-flight work drained.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub type Shutdown = CancellationToken;

static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether a shutdown signal has arrived (the process may still serve).
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// While the process drains, an HTTP answer asks the client to close its
/// connection, so that its next request opens a new one, to a pod that
/// stays, instead of meeting this one's close.
pub fn close_if_draining(headers: &mut http::HeaderMap) {
    if draining() {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// A token that is cancelled when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub fn on_signal() -> Shutdown {
    on_signal_after(Duration::ZERO)
}

/// A token that is cancelled `delay` after SIGINT or SIGTERM; a second
/// signal cancels it at once.
pub fn on_signal_after(delay: Duration) -> Shutdown {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        DRAINING.store(true, Ordering::Relaxed);
        if !delay.is_zero() {
            tracing::info!(
                ?delay,
                "shutdown signal received; serving on while the endpoints drop this process"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wait_for_signal() => {}
            }
        }
        tracing::info!("shutdown signal received; draining");
        trigger.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
