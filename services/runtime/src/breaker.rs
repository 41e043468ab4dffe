//! Circuit breakers for calls to other services: after a run of consecutive
//! failures the circuit opens and calls fail fast, without touching the
//! backend, for a while; then one probe call is let through (half-open) and
//! its outcome closes the circuit or opens it again.
//!
//! Only failures of the backend itself count (see [`is_backend_failure`]): an
//! answer such as NOT_FOUND or FAILED_PRECONDITION proves the backend is up,
//! so a stream of business errors never opens a circuit.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tonic::{Code, Status};

/// When a circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit; 0 never opens it.
    pub failure_threshold: u32,
    /// How long an open circuit fails fast before it lets a probe through.
    pub open_for: Duration,
}

/// What a circuit currently does with calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast until the open period is over.
    Open,
    /// One probe call is (or may be) in flight; the rest fail fast.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `circuit_breaker_state` gauge.
    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// A call refused because the circuit is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit {name} is open; retry in {retry_after:?}")]
pub struct CircuitOpen {
    pub name: String,
    /// How long until the circuit lets a probe through (at least one second
    /// while a probe is in flight, as its outcome is not known yet).
    pub retry_after: Duration,
}

/// How a call through [`CircuitBreaker::call`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// Refused without calling the backend.
    #[error(transparent)]
    Open(CircuitOpen),
    /// The call itself failed (counted as a failure or not).
    #[error(transparent)]
    Call(E),
}

/// True for the gRPC statuses that say the backend is unwell: unreachable,
/// too slow, or broken. Tonic reports a channel's own timeout as CANCELLED
/// ("Timeout expired"), so that counts too. Business answers (invalid
/// argument, not found, failed precondition, already exists, permission
/// denied, ...) do not.
pub fn is_backend_failure(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Internal
            | Code::Unknown
    )
}

#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Circuit {
    fn state(self) -> BreakerState {
        match self {
            Circuit::Closed { .. } => BreakerState::Closed,
            Circuit::Open { .. } => BreakerState::Open,
            Circuit::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// One circuit, shared by every call to one backend.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    settings: BreakerSettings,
    circuit: Mutex<Circuit>,
}

/// Leave to make one call. Report its outcome with [`Permit::success`] or
/// [`Permit::failure`]; a permit dropped unreported (the caller gave up)
/// counts as neither, and frees the probe slot if it held it.
#[derive(Debug)]
#[must_use = "report the call's outcome on the permit"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.on_success(self.probe);
    }

    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.on_failure(self.probe, Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.release_probe();
        }
    }
}

impl CircuitBreaker {
    pub fn new(name: impl Into<String>, settings: BreakerSettings) -> Self {
        let breaker = CircuitBreaker {
            name: name.into(),
            settings,
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
        };
        breaker.publish(BreakerState::Closed);
        breaker
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state()
    }

    /// Runs `call` unless the circuit is open; `is_failure` says which of its
    /// errors count against the backend.
    pub async fn call<T, E, Fut>(
        &self,
        call: Fut,
        is_failure: impl FnOnce(&E) -> bool,
    ) -> Result<T, BreakerError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.acquire().map_err(BreakerError::Open)?;
        match call.await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(error) => {
                if is_failure(&error) {
                    permit.failure();
                } else {
                    permit.success();
                }
                Err(BreakerError::Call(error))
            }
        }
    }

    /// Leave for one call, or why not.
    pub fn acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        self.acquire_at(Instant::now())
    }

    fn acquire_at(&self, now: Instant) -> Result<Permit<'_>, CircuitOpen> {
        let mut circuit = self.lock();
        let probe = match *circuit {
            Circuit::Closed { .. } => false,
            Circuit::Open { until } if now >= until => {
                *circuit = Circuit::HalfOpen { probing: true };
                drop(circuit);
                tracing::info!(breaker = %self.name, "circuit half-open; probing the backend");
                self.publish(BreakerState::HalfOpen);
                true
            }
            Circuit::Open { until } => {
                drop(circuit);
                return Err(self.refuse(until - now));
            }
            Circuit::HalfOpen { probing: false } => {
                *circuit = Circuit::HalfOpen { probing: true };
                true
            }
            Circuit::HalfOpen { probing: true } => {
                drop(circuit);
                return Err(self.refuse(Duration::from_secs(1)));
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    fn refuse(&self, retry_after: Duration) -> CircuitOpen {
        metrics::counter!("circuit_breaker_rejected_total", "breaker" => self.name.clone())
            .increment(1);
        CircuitOpen {
            name: self.name.clone(),
            retry_after,
        }
    }

    fn on_success(&self, probe: bool) {
        let mut circuit = self.lock();
        match *circuit {
            Circuit::Closed { .. } => *circuit = Circuit::Closed { failures: 0 },
            Circuit::HalfOpen { .. } if probe => {
                *circuit = Circuit::Closed { failures: 0 };
                drop(circuit);
                tracing::info!(breaker = %self.name, "circuit closed; backend answers again");
                self.publish(BreakerState::Closed);
            }
            // A call that started before the circuit opened says little about now.
            Circuit::HalfOpen { .. } | Circuit::Open { .. } => {}
        }
    }

    fn on_failure(&self, probe: bool, now: Instant) {
        let mut circuit = self.lock();
        let opened = match *circuit {
            Circuit::Closed { failures } => {
                let failures = failures.saturating_add(1);
                let threshold = self.settings.failure_threshold;
                if threshold > 0 && failures >= threshold {
                    *circuit = Circuit::Open {
                        until: now + self.settings.open_for,
                    };
                    Some(failures)
                } else {
                    *circuit = Circuit::Closed { failures };
                    None
                }
            }
            Circuit::HalfOpen { .. } if probe => {
                *circuit = Circuit::Open {
                    until: now + self.settings.open_for,
                };
                Some(1)
            }
            Circuit::HalfOpen { .. } | Circuit::Open { .. } => None,
        };
        drop(circuit);
        if let Some(failures) = opened {
            tracing::warn!(
                breaker = %self.name,
                failures,
                open_for = ?self.settings.open_for,
                "circuit opened; failing fast"
            );
            metrics::counter!("circuit_breaker_opened_total", "breaker" => self.name.clone())
                .increment(1);
            self.publish(BreakerState::Open);
        }
    }

    fn release_probe(&self) {
        let mut circuit = self.lock();
        if let Circuit::HalfOpen { probing: true } = *circuit {
            *circuit = Circuit::HalfOpen { probing: false };
        }
    }

    fn publish(&self, state: BreakerState) {
        metrics::gauge!("circuit_breaker_state", "breaker" => self.name.clone()).set(state.gauge());
    }

    /// The circuit is plain data, always valid: a panic elsewhere cannot leave it half-written.
    fn lock(&self) -> MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerSettings {
                failure_threshold: threshold,
                open_for: Duration::from_secs(10),
            },
        )
    }

    fn fail(breaker: &CircuitBreaker, now: Instant) {
        match breaker.acquire_at(now) {
            Ok(mut permit) => {
                permit.settled = true;
                breaker.on_failure(permit.probe, now);
            }
            Err(open) => panic!("expected a permit, circuit open: {open}"),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(3);
        let now = Instant::now();
        fail(&b, now);
        fail(&b, now);
        b.acquire_at(now).map(Permit::success).ok();
        fail(&b, now);
        fail(&b, now);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        fail(&b, now);
        assert_eq!(b.state(), BreakerState::Open);
        let refused = b.acquire_at(now + Duration::from_secs(4)).err();
        assert_eq!(
            refused.map(|open| open.retry_after),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let b = breaker(1);
        let start = Instant::now();
        fail(&b, start);
        let later = start + Duration::from_secs(10);
        let probe = b.acquire_at(later).ok();
        assert!(probe.is_some(), "the open period is over");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.acquire_at(later).is_err(), "only one probe at a time");
        if let Some(probe) = probe {
            probe.success();
        }
        assert_eq!(b.state(), BreakerState::Closed);

        fail(&b, later);
        let again = later + Duration::from_secs(10);
        fail(&b, again);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe re-opens");
        assert!(b.acquire_at(again + Duration::from_secs(9)).is_err());
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let b = breaker(1);
        let start = Instant::now();
        fail(&b, start);
        let later = start + Duration::from_secs(11);
        drop(b.acquire_at(later));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.acquire_at(later).is_ok(), "the slot is free again");
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = breaker(0);
        let now = Instant::now();
        for _ in 0..100 {
            fail(&b, now);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn only_backend_failures_count() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unknown,
        ] {
            assert!(is_backend_failure(&Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Aborted,
        ] {
            assert!(!is_backend_failure(&Status::new(code, "x")), "{code:?}");
        }
    }

    #[tokio::test]
    async fn call_counts_by_the_classifier() {
        let b = breaker(2);
        for _ in 0..5 {
            let answer: Result<(), _> = b
                .call(async { Err(Status::not_found("no")) }, is_backend_failure)
                .await;
            assert!(matches!(answer, Err(BreakerError::Call(_))));
        }
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..2 {
            let _: Result<(), _> = b
                .call(
                    async { Err(Status::unavailable("down")) },
                    is_backend_failure,
                )
                .await;
        }
        let refused: Result<(), _> = b
            .call(async { Ok::<_, Status>(()) }, is_backend_failure)
            .await;
        assert!(matches!(refused, Err(BreakerError::Open(_))));
    }
}
