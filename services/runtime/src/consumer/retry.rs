//! How a consumer treats a handler's failure. An unreachable store says
//! nothing about the record, so it is waited for and never dead-lettered; a
//! record that fails for any other reason gets a bounded number of attempts
//! with exponential backoff, then goes to the DLQ; a record that can never
//! succeed goes there at once.

use std::fmt::Display;
use std::time::Duration;

use crate::db;

/// Why a handler could not process an event; the variant decides what the
/// consumer does with the record.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A store or dependency the handler needs cannot be reached (connection
    /// refused or lost, pool exhausted, server shutting down). The record is
    /// retried with backoff for as long as it takes, never dead-lettered:
    /// every record would fail the same way until the store is back.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This record failed and may fail again however often it is tried (a
    /// statement the database refuses, a value it cannot decode, a row that
    /// breaks an invariant). Retried up to [`RetryPolicy::max_attempts`]
    /// times, then dead-lettered with this reason.
    #[error("failed: {0}")]
    Failed(String),
    /// Can never succeed (a payload the handler cannot accept): dead-lettered
    /// at once.
    #[error("rejected: {0}")]
    Reject(String),
}

impl HandlerError {
    /// Classifies a database error met while handling a record: the database
    /// unreachable → [`Unavailable`](Self::Unavailable); the data refused
    /// (SQLSTATE classes 22 and 23) → [`Reject`](Self::Reject); anything else
    /// → [`Failed`](Self::Failed). `context` (e.g. the event) leads the message.
    pub fn from_database(context: impl Display, error: &sqlx::Error) -> HandlerError {
        let message = format!("{context}: {error}");
        if db::is_unreachable(error) {
            HandlerError::Unavailable(message)
        } else if db::is_data_refused(error) {
            HandlerError::Reject(message)
        } else {
            HandlerError::Failed(message)
        }
    }
}

/// How often, and how patiently, a failing record is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts a [`HandlerError::Failed`] record gets before it is
    /// dead-lettered (at least 1). Waiting for an unreachable store does not
    /// count.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling up to 10 s: a failing record holds its
    /// lane for 3 s (0.2 + 0.4 + 0.8 + 1.6) before it is dead-lettered.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failure in a row (1-based):
    /// `initial_backoff × 2^(failures − 1)`, at most `max_backoff`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff.max(self.initial_backoff))
    }

    /// How long a record that always fails holds its lane: the sum of the
    /// waits between its attempts.
    pub fn budget(&self) -> Duration {
        (1..self.max_attempts.max(1))
            .map(|failures| self.backoff(failures))
            .sum()
    }
}

/// Settings of an [`EventConsumer`](super::EventConsumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSettings {
    pub retry: RetryPolicy,
    /// librdkafka's `max.poll.interval.ms`: a member that does not poll for
    /// this long is evicted from its group. The consumer polls (with its
    /// partitions paused) while it retries, so retries never reach it; a
    /// handler stuck longer than this does.
    pub max_poll_interval: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            retry: RetryPolicy::default(),
            max_poll_interval: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let policy = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let waits: Vec<u128> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500, 500]);
        // Five waits between six attempts.
        assert_eq!(policy.budget(), Duration::from_millis(1_700));
        assert_eq!(
            RetryPolicy::default().budget(),
            Duration::from_millis(3_000)
        );
        // No overflow however many failures.
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(500));
        let one = RetryPolicy {
            max_attempts: 1,
            ..policy
        };
        assert_eq!(one.budget(), Duration::ZERO, "one attempt, no wait");
    }
}
