//! The soak's report (`bench/results/soak.json`) and the summary printed at
//! the end: checkouts by outcome, faults by kind, each invariant's verdict,
//! and latency percentiles and answers by status per kind of request.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::client_log::{ClientRecord, Op};
use crate::invariants::{Outcome, Verdict};

#[derive(Debug, Default, Serialize)]
pub struct Checkouts {
    /// Carts the clients filled and tried to check out.
    pub attempted: u64,
    /// Told COMPLETED (201, or a poll after a 202).
    pub completed: u64,
    /// Told FAILED (declined, out of stock, ...).
    pub failed: u64,
    /// Never told either, after every retry and new key the client allowed itself.
    pub unresolved: u64,
    /// The cart was emptied before the checkout (a racing edit removed its lines).
    pub cart_empty: u64,
    /// Keys spent: one per attempt; retries of an attempt reuse its key.
    pub keys_used: u64,
    pub by_code: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub at_s: f64,
    pub target: String,
    pub down_s: f64,
    /// How long the restart took until the target answered again.
    pub restart_s: f64,
    pub restarted: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Faults {
    pub injected: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Service processes that exited without being killed by the chaos loop
    /// (e.g. a start-up that could not reach a database); each was restarted.
    pub unplanned_exits: BTreeMap<String, u64>,
    pub timeline: Vec<FaultRecord>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct RequestStats {
    pub count: u64,
    pub latency: Latency,
    /// Answers by HTTP status; `no_answer` for timeouts and refused connections.
    pub by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Settle {
    pub waited_s: f64,
    /// Whether the shop went quiet (no open session, no pending hold, every
    /// event published) before the window ran out.
    pub quiet: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub started_at: String,
    pub duration_s: f64,
    pub settings: serde_json::Value,
    pub checkouts: Checkouts,
    /// The checkout database's sessions by status, after the settle window.
    pub sessions_by_status: BTreeMap<String, u64>,
    pub faults: Faults,
    pub settle: Settle,
    pub all_invariants_hold: bool,
    pub invariants: Vec<Verdict>,
    pub requests: BTreeMap<String, RequestStats>,
    /// Every answer that was not a success, by status, over all requests.
    pub errors_by_status: BTreeMap<String, u64>,
}

/// The `q` quantile (0..=1) of sorted values, by nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn status_name(status: u16) -> String {
    if status == 0 {
        "no_answer".to_owned()
    } else {
        status.to_string()
    }
}

/// Per kind of request: count, latency percentiles, answers by status.
pub fn request_stats(records: &[ClientRecord]) -> BTreeMap<String, RequestStats> {
    let mut by_op: BTreeMap<Op, Vec<&ClientRecord>> = BTreeMap::new();
    for record in records {
        by_op.entry(record.op).or_default().push(record);
    }
    by_op
        .into_iter()
        .map(|(op, records)| {
            let mut latencies: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            let mut by_status = BTreeMap::new();
            for record in &records {
                *by_status.entry(status_name(record.status)).or_default() += 1;
            }
            let round = |v: f64| (v * 10.0).round() / 10.0;
            let stats = RequestStats {
                count: records.len() as u64,
                latency: Latency {
                    p50_ms: round(quantile(&latencies, 0.50)),
                    p90_ms: round(quantile(&latencies, 0.90)),
                    p99_ms: round(quantile(&latencies, 0.99)),
                    max_ms: round(latencies.last().copied().unwrap_or(0.0)),
                },
                by_status,
            };
            (op.as_str().to_owned(), stats)
        })
        .collect()
}

pub fn errors_by_status(records: &[ClientRecord]) -> BTreeMap<String, u64> {
    let mut errors = BTreeMap::new();
    for record in records.iter().filter(|r| !(200..300).contains(&r.status)) {
        *errors.entry(status_name(record.status)).or_default() += 1;
    }
    errors
}

/// One line per invariant: verdict, what was checked, the violations.
pub fn verdict_lines(verdicts: &[Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .map(|v| {
            let mark = match v.outcome {
                Outcome::Holds => "HOLDS",
                Outcome::Fails => "FAILS",
                Outcome::Skipped => "SKIPPED",
            };
            let mut line = format!("{mark:<7} {:<29} checked {:>6}", v.name, v.checked);
            if !v.violations.is_empty() {
                let found: Vec<String> = v
                    .violations
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect();
                line.push_str(&format!("  violations: {}", found.join(" ")));
            }
            if !v.notes.is_empty() {
                let notes: Vec<String> = v.notes.iter().map(|(k, n)| format!("{k}={n}")).collect();
                line.push_str(&format!("  ({})", notes.join(" ")));
            }
            line
        })
        .collect()
}

impl Report {
    pub fn summary(&self) -> String {
        let c = &self.checkouts;
        let mut out = vec![
            format!(
                "soak: {:.0} s, checkouts attempted {}, completed {}, failed {}, unresolved {}, cart emptied {} ({} keys)",
                self.duration_s,
                c.attempted,
                c.completed,
                c.failed,
                c.unresolved,
                c.cart_empty,
                c.keys_used
            ),
            format!(
                "faults injected {}: {}",
                self.faults.injected,
                join(&self.faults.by_kind)
            ),
        ];
        if !self.faults.unplanned_exits.is_empty() {
            out.push(format!(
                "unplanned process exits (restarted): {}",
                join(&self.faults.unplanned_exits)
            ));
        }
        out.push(format!(
            "sessions by status: {}  (settle {:.0} s, {})",
            join(&self.sessions_by_status),
            self.settle.waited_s,
            if self.settle.quiet {
                "quiet"
            } else {
                "still busy at the end of the window"
            }
        ));
        for (op, stats) in &self.requests {
            out.push(format!(
                "{op:<14} n={:<6} p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>8.1} ms  {}",
                stats.count,
                stats.latency.p50_ms,
                stats.latency.p90_ms,
                stats.latency.p99_ms,
                stats.latency.max_ms,
                join(&stats.by_status)
            ));
        }
        out.extend(verdict_lines(&self.invariants));
        out.push(if self.all_invariants_hold {
            "every invariant holds".to_owned()
        } else {
            "SOME INVARIANTS FAIL".to_owned()
        });
        out.join("\n")
    }
}

fn join(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
        assert_eq!(quantile(&[], 0.9), 0.0);
    }

    #[test]
    fn no_answer_is_an_error_status_of_its_own() {
        let record = |status| ClientRecord {
            op: Op::Checkout,
            status,
            checkout_id: None,
            session_status: None,
            code: None,
            user: String::new(),
            cart: None,
            key: None,
            cart_lines: Default::default(),
            at_s: 0.0,
            latency_ms: 1.0,
        };
        let errors = errors_by_status(&[record(201), record(0), record(503), record(503)]);
        assert_eq!(
            errors,
            BTreeMap::from([("503".to_owned(), 2), ("no_answer".to_owned(), 1)])
        );
    }
}
