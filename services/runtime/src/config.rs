//! Configuration shared by every subcommand of the `storefront` binary. Each
//! service's own settings live in its crate as a `clap::Args` struct whose
//! flags carry the service's name (`--inventory-listen`, `INVENTORY_LISTEN`),
//! so `storefront all` can take every service's flags at once.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default; what log collectors expect).
    Json,
    /// Human-readable lines for a terminal.
    Text,
}

/// How a process logs: every `storefront` subcommand and `storefront-operator`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogConfig {
    /// Log line format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "json",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter in `tracing` EnvFilter syntax, e.g. `info,storefront_inventory=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    #[command(flatten)]
    pub log: LogConfig,
    /// Address of the Prometheus `/metrics` endpoint; `off` disables it.
    #[arg(
        long,
        env = "METRICS_LISTEN",
        default_value = "0.0.0.0:9464",
        global = true
    )]
    pub metrics_listen: String,
    /// After SIGTERM, how long to keep serving before draining: time for
    /// Kubernetes to take the pod out of its Services' endpoints (the
    /// operator sets 5s in pods). Meanwhile the gateway asks clients to close
    /// their connections. A second signal skips the rest of it.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration, global = true)]
    pub shutdown_delay: Duration,
    /// How long in-flight work may take to drain after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration, global = true)]
    pub shutdown_grace: Duration,
}

impl CommonConfig {
    /// The metrics address, or `None` when metrics are switched off.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, crate::StartError> {
        if self.metrics_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.metrics_listen
            .parse()
            .map(Some)
            .map_err(|e| crate::StartError::Config(format!("--metrics-listen: {e}")))
    }
}

/// Parses durations written as `250ms`, `5s`, `5m`, `1h` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_human_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("five").is_err());
    }
}
