//! gRPC clients the one Storefront way: lazily connected channels with a
//! connect timeout and a deadline on every request.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::StartError;

/// How long to wait for a TCP connection to a backend.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A channel to `uri` (e.g. `http://127.0.0.1:50051`) whose every request
/// fails with DEADLINE_EXCEEDED after `deadline`. Connects on first use, so a
/// backend that starts later is not a start-up failure.
pub fn channel(uri: &str, deadline: Duration) -> Result<Channel, StartError> {
    let endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(|e| StartError::Config(format!("backend address {uri:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(deadline)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}
