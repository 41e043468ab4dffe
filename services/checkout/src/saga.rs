//! The checkout saga's driver: starts a session for a Checkout request and
//! moves it through [`machine`] by calling the participants, recording each
//! state (and, at the end, the event) before taking the next step. The live
//! request and the recovery loop drive sessions the same way; a lease on the
//! session row keeps them from driving one session at once.

pub mod machine;

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use storefront_runtime::FieldError;

use crate::domain::{self, CheckoutId, CheckoutOrder, Session, UserId};
use crate::error::CheckoutError;
use crate::events;
use crate::participants::{CallError, Participants};
use crate::store::{Inserted, Lease, SessionStore};
use machine::{Failure, FailureReason, Outcome, SagaState, Status, Step, apply, next_step};

/// A Checkout answer: the session, and whether it was stored by an earlier request.
#[derive(Debug)]
pub struct Checkout {
    pub session: Session,
    pub replayed: bool,
}

pub struct CheckoutSaga {
    store: SessionStore,
    participants: Participants,
    /// How often a driver renews its lease while it waits on a backend.
    heartbeat: Duration,
}

impl CheckoutSaga {
    pub fn new(store: SessionStore, participants: Participants, heartbeat: Duration) -> Self {
        CheckoutSaga {
            store,
            participants,
            heartbeat,
        }
    }

    /// Runs a checkout of the user's cart, or answers with the session an
    /// earlier request with the same key stored.
    pub async fn checkout(&self, order: CheckoutOrder) -> Result<Checkout, CheckoutError> {
        if let Some(existing) = self
            .store
            .by_key(&order.user_id, &order.idempotency_key)
            .await?
        {
            return replay(existing);
        }
        // The cart takes a completed checkout's lines out only when its event
        // arrives: until then the lines it bought are still in the cart, and
        // must not be bought again.
        let completed = self.store.recently_completed(&order.user_id).await?;
        let known: Vec<CheckoutId> = completed.iter().map(|session| session.id).collect();
        let cart = self
            .participants
            .cart(&order.user_id, &known)
            .await
            .map_err(before_session)?;
        let bought = completed
            .iter()
            .filter(|session| !cart.applied.contains(&session.id))
            .flat_map(|session| session.items.iter());
        let lines = domain::without_bought(cart.lines, bought);
        if lines.is_empty() {
            return Err(CheckoutError::CartEmpty);
        }
        let mut product_ids: Vec<i64> = lines.iter().map(|line| line.product_id).collect();
        product_ids.sort_unstable();
        product_ids.dedup();
        let catalog = self
            .participants
            .catalog(product_ids)
            .await
            .map_err(before_session)?;
        let pricing = domain::price(&lines, &catalog)?;
        let saga = if pricing.missing.is_empty() {
            SagaState::initiated()
        } else {
            SagaState::failed_at_start(Failure {
                reason: FailureReason::ProductUnavailable,
                decline_reason: None,
                detail: format!("products not in the catalog: {:?}", pricing.missing),
            })
        };
        let now = Utc::now();
        let mut session = Session {
            id: CheckoutId::generate(),
            user_id: order.user_id,
            idempotency_key: order.idempotency_key,
            payment_method: order.payment_method,
            shipping_address: order.shipping_address,
            items: pricing.items,
            total: pricing.total,
            saga,
            created_at: now,
            updated_at: now,
        };
        let event = match session.saga.status {
            Status::Failed => Some(events::failed(&session)?),
            _ => None,
        };
        let lease = Lease::fresh();
        match self
            .store
            .insert(&mut session, lease, event.as_ref(), &known)
            .await?
        {
            Inserted::Created => {}
            Inserted::CartBusy(first) => return Err(CheckoutError::CartBusy(first)),
            Inserted::KeyTaken => {
                // A concurrent request with the same key stored its session first.
                return self.replay_key(&session).await;
            }
        }
        if session.saga.status.is_terminal() {
            record_outcome(&session);
        } else {
            self.drive(&mut session, lease).await?;
        }
        answer(session, false)
    }

    /// The answer for a key a concurrent request stored its session under first.
    async fn replay_key(&self, session: &Session) -> Result<Checkout, CheckoutError> {
        let existing = self
            .store
            .by_key(&session.user_id, &session.idempotency_key)
            .await?
            .ok_or_else(|| {
                CheckoutError::Corrupt("a session vanished under its idempotency key".into())
            })?;
        replay(existing)
    }

    /// The session `user_id` started under `key`, if any.
    pub async fn session_by_key(
        &self,
        user_id: &UserId,
        key: &domain::IdempotencyKey,
    ) -> Result<Option<Session>, CheckoutError> {
        self.store.by_key(user_id, key).await
    }

    /// Up to `limit` sessions in `status`, for admins.
    pub async fn sessions_in(
        &self,
        status: Status,
        limit: i64,
    ) -> Result<Vec<Session>, CheckoutError> {
        self.store.of_status(status, limit).await
    }

    /// How many sessions wait for a person.
    pub async fn needing_attention(&self) -> Result<i64, CheckoutError> {
        self.store.count_in(Status::NeedsAttention).await
    }

    /// The session `id` of `user_id`; another user's session is not found.
    pub async fn session_of(
        &self,
        user_id: &UserId,
        id: CheckoutId,
    ) -> Result<Session, CheckoutError> {
        self.store
            .of_user(user_id, id)
            .await?
            .ok_or(CheckoutError::NotFound(id))
    }

    /// Moves `session` (held by `lease`) until it is COMPLETED or FAILED. On an
    /// error the session stays as last recorded, for the recovery loop.
    pub async fn drive(&self, session: &mut Session, lease: Lease) -> Result<(), CheckoutError> {
        loop {
            let step = next_step(&session.saga)
                .map_err(|e| CheckoutError::Corrupt(format!("session {}: {e}", session.id)))?;
            let participants = &self.participants;
            let outcome = match step {
                Step::Done => return Ok(()),
                Step::StartPayment => Ok(Outcome::PaymentStarted),
                Step::RecordFailure => Ok(Outcome::FailureRecorded),
                Step::Reserve => {
                    self.holding(session.id, lease, participants.reserve(session))
                        .await
                }
                Step::Charge => {
                    self.holding(session.id, lease, participants.charge(session))
                        .await
                }
                Step::Confirm { reservation_id } => {
                    self.holding(session.id, lease, participants.confirm(reservation_id))
                        .await
                }
                Step::Refund { payment_id } => {
                    self.holding(session.id, lease, participants.refund(payment_id))
                        .await
                }
                Step::Release { reservation_id } => {
                    self.holding(session.id, lease, participants.release(reservation_id))
                        .await
                }
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                // No retry can change an answer the saga has no rule for: the
                // machine fails the session or hands it to a person.
                Err(CallError::Unexpected { backend, message }) => {
                    tracing::error!(
                        checkout_id = %session.id,
                        backend,
                        message,
                        "a participant answered unexpectedly"
                    );
                    Outcome::Unexpected {
                        detail: format!("{backend} answered unexpectedly: {message}"),
                    }
                }
                // Still unavailable: the session waits for the recovery loop.
                Err(CallError::Transient { backend, message }) => {
                    return Err(CheckoutError::Pending {
                        checkout_id: session.id,
                        backend,
                        message,
                    });
                }
            };
            let next = apply(&session.saga, outcome)
                .map_err(|e| CheckoutError::Corrupt(format!("session {}: {e}", session.id)))?;
            self.record(session, next, lease).await?;
        }
    }

    /// Records `next` as the session's state; with the event when it is final.
    async fn record(
        &self,
        session: &mut Session,
        next: SagaState,
        lease: Lease,
    ) -> Result<(), CheckoutError> {
        let previous = std::mem::replace(&mut session.saga, next);
        let event = match session.saga.status {
            Status::Completed => events::completed(session).map(Some),
            Status::Failed => events::failed(session).map(Some),
            _ => Ok(None),
        };
        let saved = match event {
            Ok(event) => self.store.save(session, lease, event.as_ref()).await,
            Err(error) => Err(error.into()),
        };
        match saved {
            Ok(true) => {}
            Ok(false) => {
                session.saga = previous;
                return Err(CheckoutError::InProgress(session.id));
            }
            Err(error) => {
                session.saga = previous;
                return Err(error);
            }
        }
        tracing::info!(
            checkout_id = %session.id,
            from = previous.status.as_str(),
            to = session.saga.status.as_str(),
            failure = session.saga.failure.as_ref().map(|f| f.reason.as_str()),
            "checkout session advanced"
        );
        if session.saga.status.is_terminal() {
            record_outcome(session);
        }
        Ok(())
    }

    /// Awaits `call` while renewing `lease`, so recovery does not take over a
    /// session whose driver is merely waiting on a slow backend.
    async fn holding<T>(&self, id: CheckoutId, lease: Lease, call: impl Future<Output = T>) -> T {
        let mut call = std::pin::pin!(call);
        let mut beat =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        loop {
            tokio::select! {
                answer = &mut call => return answer,
                _ = beat.tick() => match self.store.renew(id, lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(checkout_id = %id, "lost the session's lease; recovery drives it now"),
                    Err(error) => tracing::warn!(checkout_id = %id, %error, "cannot renew the session's lease"),
                },
            }
        }
    }

    /// Takes over up to `limit` sessions untouched for `stalled_for` and drives
    /// each to its end (or as far as the backends allow). Returns how many it took.
    pub async fn recover_stalled(
        &self,
        stalled_for: Duration,
        limit: i64,
    ) -> Result<usize, CheckoutError> {
        let lease = Lease::fresh();
        let sessions = self.store.claim_stalled(lease, stalled_for, limit).await?;
        let taken = sessions.len();
        let drives = sessions.into_iter().map(|mut session| async move {
            let from = session.saga.status;
            let result = self.drive(&mut session, lease).await;
            let to = session.saga.status;
            match &result {
                Ok(()) => tracing::info!(
                    checkout_id = %session.id,
                    from = from.as_str(),
                    to = to.as_str(),
                    "recovered a stalled checkout"
                ),
                Err(error) => tracing::warn!(
                    checkout_id = %session.id,
                    from = from.as_str(),
                    to = to.as_str(),
                    %error,
                    "cannot finish a stalled checkout yet; will retry"
                ),
            }
            let result = if result.is_ok() { "finished" } else { "retry" };
            metrics::counter!("checkout_recoveries_total", "result" => result).increment(1);
        });
        futures::future::join_all(drives).await;
        Ok(taken)
    }
}

/// The answer to a repeated key: the stored result once the saga has ended.
fn replay(session: Session) -> Result<Checkout, CheckoutError> {
    if !session.saga.status.is_terminal() {
        return Err(CheckoutError::InProgress(session.id));
    }
    answer(session, true)
}

/// A session refused for its payment method is the caller's mistake, said the
/// same way the first time and on every replay.
fn answer(session: Session, replayed: bool) -> Result<Checkout, CheckoutError> {
    if session.saga.status == Status::Failed
        && let Some(failure) = &session.saga.failure
        && failure.reason == FailureReason::InvalidPaymentMethod
    {
        let message = failure
            .detail
            .strip_prefix("payment_method: ")
            .unwrap_or(&failure.detail);
        return Err(FieldError::new("payment_method", message).into());
    }
    Ok(Checkout { session, replayed })
}

/// A backend failure before any session was stored: nothing happened.
fn before_session(error: CallError) -> CheckoutError {
    match error {
        CallError::Transient { backend, message } => {
            CheckoutError::BackendUnavailable { backend, message }
        }
        CallError::Unexpected { backend, message } => CheckoutError::Backend { backend, message },
    }
}

fn record_outcome(session: &Session) {
    let (outcome, reason) = match (session.saga.status, &session.saga.failure) {
        (Status::NeedsAttention, _) => ("needs_attention", "unexpected_answer"),
        (_, Some(failure)) => ("failed", failure.reason.as_str()),
        (_, None) => ("completed", "none"),
    };
    metrics::counter!("checkout_sagas_total", "outcome" => outcome, "reason" => reason)
        .increment(1);
    let seconds = (Utc::now() - session.created_at)
        .to_std()
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::histogram!("checkout_saga_duration_seconds", "outcome" => outcome).record(seconds);
}
