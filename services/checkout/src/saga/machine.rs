//! The checkout saga as a pure state machine: [`next_step`] says what a
//! session needs next, [`apply`] says where a step's outcome takes it. The
//! driver (live request or recovery) only runs steps and records states, so
//! every rule of the saga is here and tested without a network.
//!
//! A failure is recorded before its compensation runs (the session keeps its
//! status, with `failure` set), each compensation is recorded when done, and
//! FAILED is recorded only once nothing is held or charged any more. A crash
//! at any point therefore leaves a state from which [`next_step`] resumes.

use std::fmt;

use storefront_proto::checkout::v1 as pb;
use uuid::Uuid;

/// Where a session stands; COMPLETED, FAILED and NEEDS_ATTENTION are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Initiated,
    InventoryReserved,
    PaymentPending,
    PaymentCompleted,
    Completed,
    Failed,
    /// A participant answered in a way the saga has no rule for, so money or
    /// stock is in a state only a person can settle. Nothing retries it.
    NeedsAttention,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Initiated,
        Status::InventoryReserved,
        Status::PaymentPending,
        Status::PaymentCompleted,
        Status::Completed,
        Status::Failed,
        Status::NeedsAttention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initiated => "INITIATED",
            Status::InventoryReserved => "INVENTORY_RESERVED",
            Status::PaymentPending => "PAYMENT_PENDING",
            Status::PaymentCompleted => "PAYMENT_COMPLETED",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::NeedsAttention => "NEEDS_ATTENTION",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::NeedsAttention
        )
    }
}

impl From<Status> for pb::CheckoutStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Initiated => pb::CheckoutStatus::Initiated,
            Status::InventoryReserved => pb::CheckoutStatus::InventoryReserved,
            Status::PaymentPending => pb::CheckoutStatus::PaymentPending,
            Status::PaymentCompleted => pb::CheckoutStatus::PaymentCompleted,
            Status::Completed => pb::CheckoutStatus::Completed,
            Status::Failed => pb::CheckoutStatus::Failed,
            Status::NeedsAttention => pb::CheckoutStatus::NeedsAttention,
        }
    }
}

/// Why a session failed: the lowercase `failure_reason` of the API and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The inventory could not hold every line.
    InsufficientStock,
    /// A product of the cart is not in the catalog (or has no stock record).
    ProductUnavailable,
    /// The payment provider declined the charge (`decline_reason` says why).
    PaymentDeclined,
    /// The payment service refused the payment method.
    InvalidPaymentMethod,
    /// The reservation expired before it could be confirmed.
    ReservationExpired,
    /// The reservation was released before it could be confirmed.
    ReservationReleased,
    /// A participant answered something the saga has no rule for, before
    /// anything was charged for good (what was taken is given back).
    UnexpectedAnswer,
}

impl FailureReason {
    pub const ALL: [FailureReason; 7] = [
        FailureReason::InsufficientStock,
        FailureReason::ProductUnavailable,
        FailureReason::PaymentDeclined,
        FailureReason::InvalidPaymentMethod,
        FailureReason::ReservationExpired,
        FailureReason::ReservationReleased,
        FailureReason::UnexpectedAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::InsufficientStock => "insufficient_stock",
            FailureReason::ProductUnavailable => "product_unavailable",
            FailureReason::PaymentDeclined => "payment_declined",
            FailureReason::InvalidPaymentMethod => "invalid_payment_method",
            FailureReason::ReservationExpired => "reservation_expired",
            FailureReason::ReservationReleased => "reservation_released",
            FailureReason::UnexpectedAnswer => "unexpected_answer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure, recorded before compensation starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: FailureReason,
    /// For a decline: CARD_DECLINED, NO_FUNDS, CARD_EXPIRED, INVALID_CVC.
    pub decline_reason: Option<String>,
    /// A sentence for people (logs, the CheckoutFailed event).
    pub detail: String,
}

/// The saga's part of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaState {
    pub status: Status,
    /// Set once stock is held.
    pub reservation_id: Option<Uuid>,
    /// Set once a charge succeeded (declined charges leave it empty).
    pub payment_id: Option<Uuid>,
    /// Set when the saga fails; compensation follows until FAILED.
    pub failure: Option<Failure>,
    /// Compensation progress: the reservation holds no stock any more.
    pub released: bool,
    /// Compensation progress: the charge was refunded.
    pub refunded: bool,
    /// Why the session needs a person (NEEDS_ATTENTION only).
    pub attention: Option<String>,
}

impl SagaState {
    /// A new session, before anything is reserved.
    pub fn initiated() -> Self {
        SagaState {
            status: Status::Initiated,
            reservation_id: None,
            payment_id: None,
            failure: None,
            released: false,
            refunded: false,
            attention: None,
        }
    }

    /// A session that fails before anything was reserved (nothing to compensate).
    pub fn failed_at_start(failure: Failure) -> Self {
        SagaState {
            status: Status::Failed,
            failure: Some(failure),
            ..SagaState::initiated()
        }
    }

    fn compensation_done(&self) -> bool {
        (self.payment_id.is_none() || self.refunded)
            && (self.reservation_id.is_none() || self.released)
    }
}

/// What a session needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reserve the items (idempotent per checkout id).
    Reserve,
    /// Record PAYMENT_PENDING before the charge is attempted.
    StartPayment,
    /// Charge the total (idempotent per checkout id: a repeat returns the first outcome).
    Charge,
    /// Confirm the reservation (deducts the stock).
    Confirm { reservation_id: Uuid },
    /// Compensation: refund the charge.
    Refund { payment_id: Uuid },
    /// Compensation: give the reserved stock back.
    Release { reservation_id: Uuid },
    /// Compensation is complete: record FAILED.
    RecordFailure,
    /// The session is COMPLETED or FAILED.
    Done,
}

/// What a step came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reserved {
        reservation_id: Uuid,
    },
    /// Reserve held nothing. `reservation_id` names a reservation that exists
    /// but no longer holds stock (it expired or was released before the
    /// session recorded it), so there is nothing to release.
    ReserveRefused {
        failure: Failure,
        reservation_id: Option<Uuid>,
    },
    PaymentStarted,
    Charged {
        payment_id: Uuid,
    },
    /// Nothing was charged: declined, or the payment method was refused.
    ChargeRefused {
        failure: Failure,
    },
    Confirmed,
    /// The reservation can no longer be confirmed; it holds no stock.
    ConfirmRefused {
        failure: Failure,
    },
    Refunded,
    Released,
    FailureRecorded,
    /// A participant answered something the saga has no rule for; `detail`
    /// says who and what.
    Unexpected {
        detail: String,
    },
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Reserved { .. } => "Reserved",
            Outcome::ReserveRefused { .. } => "ReserveRefused",
            Outcome::PaymentStarted => "PaymentStarted",
            Outcome::Charged { .. } => "Charged",
            Outcome::ChargeRefused { .. } => "ChargeRefused",
            Outcome::Confirmed => "Confirmed",
            Outcome::ConfirmRefused { .. } => "ConfirmRefused",
            Outcome::Refunded => "Refunded",
            Outcome::Released => "Released",
            Outcome::FailureRecorded => "FailureRecorded",
            Outcome::Unexpected { .. } => "Unexpected",
        }
    }
}

/// An outcome that cannot follow the state it was applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outcome {outcome} does not apply to a session in {status}{}", if *.failing { " (failing)" } else { "" })]
pub struct InvalidTransition {
    pub status: &'static str,
    pub failing: bool,
    pub outcome: &'static str,
}

/// A stored state the saga cannot continue from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session in {0} has no reservation to confirm")]
pub struct InvalidState(&'static str);

/// What `state` needs next.
pub fn next_step(state: &SagaState) -> Result<Step, InvalidState> {
    if state.status.is_terminal() {
        return Ok(Step::Done);
    }
    if state.failure.is_some() {
        // Refund first: money matters more than stock, and an expired
        // reservation needs no release at all.
        return Ok(match (state.payment_id, state.reservation_id) {
            (Some(payment_id), _) if !state.refunded => Step::Refund { payment_id },
            (_, Some(reservation_id)) if !state.released => Step::Release { reservation_id },
            _ => Step::RecordFailure,
        });
    }
    Ok(match (state.status, state.reservation_id) {
        (Status::Initiated, _) => Step::Reserve,
        (Status::InventoryReserved, _) => Step::StartPayment,
        (Status::PaymentPending, _) => Step::Charge,
        (Status::PaymentCompleted, Some(reservation_id)) => Step::Confirm { reservation_id },
        (Status::PaymentCompleted, None) => return Err(InvalidState(state.status.as_str())),
        (Status::Completed | Status::Failed | Status::NeedsAttention, _) => Step::Done,
    })
}

/// Where `outcome` takes `state`. Failing states move to FAILED by themselves
/// once nothing is left to compensate.
pub fn apply(state: &SagaState, outcome: Outcome) -> Result<SagaState, InvalidTransition> {
    let invalid = InvalidTransition {
        status: state.status.as_str(),
        failing: state.failure.is_some(),
        outcome: outcome.name(),
    };
    if state.status.is_terminal() {
        return Err(invalid);
    }
    let failing = state.failure.is_some();
    let mut next = state.clone();
    match (state.status, failing, outcome) {
        (Status::Initiated, false, Outcome::Reserved { reservation_id }) => {
            next.status = Status::InventoryReserved;
            next.reservation_id = Some(reservation_id);
        }
        (
            Status::Initiated,
            false,
            Outcome::ReserveRefused {
                failure,
                reservation_id,
            },
        ) => {
            next.failure = Some(failure);
            next.reservation_id = reservation_id;
            next.released = reservation_id.is_some();
        }
        (Status::InventoryReserved, false, Outcome::PaymentStarted) => {
            next.status = Status::PaymentPending;
        }
        (Status::PaymentPending, false, Outcome::Charged { payment_id }) => {
            next.status = Status::PaymentCompleted;
            next.payment_id = Some(payment_id);
        }
        (Status::PaymentPending, false, Outcome::ChargeRefused { failure }) => {
            next.failure = Some(failure);
        }
        (Status::PaymentCompleted, false, Outcome::Confirmed) if state.reservation_id.is_some() => {
            next.status = Status::Completed;
        }
        (Status::PaymentCompleted, false, Outcome::ConfirmRefused { failure }) => {
            next.failure = Some(failure);
            // An expired or released reservation holds no stock.
            next.released = true;
        }
        (_, true, Outcome::Refunded) if state.payment_id.is_some() => {
            next.refunded = true;
        }
        (_, true, Outcome::Released) if state.reservation_id.is_some() => {
            next.released = true;
        }
        (_, true, Outcome::FailureRecorded) if state.compensation_done() => {}
        // Before the charge, or after it while confirming: fail, and give
        // back what is known to be held (the charge; a reservation that is not
        // found on release held nothing).
        (
            Status::Initiated | Status::InventoryReserved | Status::PaymentCompleted,
            false,
            Outcome::Unexpected { detail },
        ) => {
            next.failure = Some(Failure {
                reason: FailureReason::UnexpectedAnswer,
                decline_reason: None,
                detail,
            });
        }
        // The charge's fate is unknown, or compensation itself cannot go on:
        // retrying would loop for ever, so a person settles it.
        (Status::PaymentPending, false, Outcome::Unexpected { detail })
        | (_, true, Outcome::Unexpected { detail }) => {
            next.status = Status::NeedsAttention;
            next.attention = Some(detail);
            return Ok(next);
        }
        _ => return Err(invalid),
    }
    if next.failure.is_some() && next.compensation_done() {
        next.status = Status::Failed;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(reason: FailureReason) -> Failure {
        Failure {
            reason,
            decline_reason: None,
            detail: reason.as_str().into(),
        }
    }

    /// Runs `outcomes` from a new session, checking each step asked for.
    fn run(outcomes: Vec<(Step, Outcome)>) -> SagaState {
        let mut state = SagaState::initiated();
        for (expected, outcome) in outcomes {
            assert_eq!(next_step(&state), Ok(expected), "in {state:?}");
            state = apply(&state, outcome).unwrap_or_else(|e| panic!("{e}"));
        }
        state
    }

    #[test]
    fn happy_path_reserves_charges_confirms() {
        let reservation_id = Uuid::new_v4();
        let payment_id = Uuid::new_v4();
        let state = run(vec![
            (Step::Reserve, Outcome::Reserved { reservation_id }),
            (Step::StartPayment, Outcome::PaymentStarted),
            (Step::Charge, Outcome::Charged { payment_id }),
            (Step::Confirm { reservation_id }, Outcome::Confirmed),
        ]);
        assert_eq!(state.status, Status::Completed);
        assert_eq!(state.reservation_id, Some(reservation_id));
        assert_eq!(state.payment_id, Some(payment_id));
        assert_eq!(next_step(&state), Ok(Step::Done));
    }

    #[test]
    fn statuses_follow_the_contract_order() {
        let reservation_id = Uuid::new_v4();
        let mut state = SagaState::initiated();
        let mut seen = vec![state.status];
        for outcome in [
            Outcome::Reserved { reservation_id },
            Outcome::PaymentStarted,
            Outcome::Charged {
                payment_id: Uuid::new_v4(),
            },
            Outcome::Confirmed,
        ] {
            state = apply(&state, outcome).unwrap_or_else(|e| panic!("{e}"));
            seen.push(state.status);
        }
        assert_eq!(seen, Status::ALL[..5].to_vec());
    }

    #[test]
    fn stock_shortage_fails_at_once_with_nothing_to_compensate() {
        let state = run(vec![(
            Step::Reserve,
            Outcome::ReserveRefused {
                failure: failure(FailureReason::InsufficientStock),
                reservation_id: None,
            },
        )]);
        assert_eq!(state.status, Status::Failed);
        assert_eq!(
            state.failure.map(|f| f.reason),
            Some(FailureReason::InsufficientStock)
        );
    }

    #[test]
    fn a_lapsed_reservation_found_on_resume_fails_without_release() {
        let reservation_id = Uuid::new_v4();
        let state = run(vec![(
            Step::Reserve,
            Outcome::ReserveRefused {
                failure: failure(FailureReason::ReservationExpired),
                reservation_id: Some(reservation_id),
            },
        )]);
        assert_eq!(state.status, Status::Failed);
        assert_eq!(state.reservation_id, Some(reservation_id));
    }

    #[test]
    fn decline_is_recorded_then_the_stock_released_then_failed() {
        let reservation_id = Uuid::new_v4();
        let mut state = run(vec![
            (Step::Reserve, Outcome::Reserved { reservation_id }),
            (Step::StartPayment, Outcome::PaymentStarted),
            (
                Step::Charge,
                Outcome::ChargeRefused {
                    failure: Failure {
                        reason: FailureReason::PaymentDeclined,
                        decline_reason: Some("CARD_DECLINED".into()),
                        detail: "declined".into(),
                    },
                },
            ),
        ]);
        // The intermediate state a crash may leave behind: failing, not FAILED.
        assert_eq!(state.status, Status::PaymentPending);
        assert_eq!(next_step(&state), Ok(Step::Release { reservation_id }));
        state = apply(&state, Outcome::Released).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.status, Status::Failed);
        let failure = state.failure.unwrap_or_else(|| panic!("failure kept"));
        assert_eq!(failure.reason, FailureReason::PaymentDeclined);
        assert_eq!(failure.decline_reason.as_deref(), Some("CARD_DECLINED"));
    }

    #[test]
    fn expiry_after_payment_refunds_then_fails() {
        let reservation_id = Uuid::new_v4();
        let payment_id = Uuid::new_v4();
        let mut state = run(vec![
            (Step::Reserve, Outcome::Reserved { reservation_id }),
            (Step::StartPayment, Outcome::PaymentStarted),
            (Step::Charge, Outcome::Charged { payment_id }),
            (
                Step::Confirm { reservation_id },
                Outcome::ConfirmRefused {
                    failure: failure(FailureReason::ReservationExpired),
                },
            ),
        ]);
        assert_eq!(state.status, Status::PaymentCompleted);
        assert_eq!(next_step(&state), Ok(Step::Refund { payment_id }));
        state = apply(&state, Outcome::Refunded).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.status, Status::Failed);
        assert!(state.refunded && state.released);
    }

    #[test]
    fn refund_comes_before_release_and_both_are_recorded() {
        let reservation_id = Uuid::new_v4();
        let payment_id = Uuid::new_v4();
        let failing = SagaState {
            status: Status::PaymentCompleted,
            reservation_id: Some(reservation_id),
            payment_id: Some(payment_id),
            failure: Some(failure(FailureReason::ReservationReleased)),
            released: false,
            refunded: false,
            attention: None,
        };
        assert_eq!(next_step(&failing), Ok(Step::Refund { payment_id }));
        let refunded = apply(&failing, Outcome::Refunded).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(refunded.status, Status::PaymentCompleted);
        assert_eq!(next_step(&refunded), Ok(Step::Release { reservation_id }));
        let done = apply(&refunded, Outcome::Released).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.status, Status::Failed);
    }

    fn unexpected(detail: &str) -> Outcome {
        Outcome::Unexpected {
            detail: detail.into(),
        }
    }

    #[test]
    fn an_unexpected_confirm_refunds_releases_and_fails() {
        let reservation_id = Uuid::new_v4();
        let payment_id = Uuid::new_v4();
        let state = run(vec![
            (Step::Reserve, Outcome::Reserved { reservation_id }),
            (Step::StartPayment, Outcome::PaymentStarted),
            (Step::Charge, Outcome::Charged { payment_id }),
            (
                Step::Confirm { reservation_id },
                unexpected("inventory answered NotFound"),
            ),
            (Step::Refund { payment_id }, Outcome::Refunded),
            (Step::Release { reservation_id }, Outcome::Released),
        ]);
        assert_eq!(state.status, Status::Failed);
        assert_eq!(
            state.failure.map(|f| (f.reason, f.detail)),
            Some((
                FailureReason::UnexpectedAnswer,
                "inventory answered NotFound".to_owned()
            ))
        );
        assert_eq!(next_step(&SagaState::initiated()), Ok(Step::Reserve));
    }

    #[test]
    fn an_unexpected_answer_during_compensation_needs_a_person_and_ends_the_saga() {
        let reservation_id = Uuid::new_v4();
        let payment_id = Uuid::new_v4();
        let state = run(vec![
            (Step::Reserve, Outcome::Reserved { reservation_id }),
            (Step::StartPayment, Outcome::PaymentStarted),
            (Step::Charge, Outcome::Charged { payment_id }),
            (
                Step::Confirm { reservation_id },
                unexpected("inventory answered NotFound"),
            ),
            (Step::Refund { payment_id }, Outcome::Refunded),
            (
                Step::Release { reservation_id },
                unexpected("inventory answered RESERVATION_CONFIRMED"),
            ),
        ]);
        assert_eq!(state.status, Status::NeedsAttention);
        assert!(state.status.is_terminal());
        assert_eq!(
            state.attention.as_deref(),
            Some("inventory answered RESERVATION_CONFIRMED")
        );
        // Nothing retries it: recovery sees a finished session.
        assert_eq!(next_step(&state), Ok(Step::Done));
        assert!(apply(&state, Outcome::Released).is_err());
    }

    #[test]
    fn an_unexpected_charge_answer_needs_a_person_and_an_unexpected_reserve_fails() {
        let reservation_id = Uuid::new_v4();
        let state = run(vec![
            (Step::Reserve, Outcome::Reserved { reservation_id }),
            (Step::StartPayment, Outcome::PaymentStarted),
            (Step::Charge, unexpected("payment answered status 3")),
        ]);
        assert_eq!(state.status, Status::NeedsAttention);
        let state = run(vec![(
            Step::Reserve,
            unexpected("inventory answered Internal"),
        )]);
        assert_eq!(state.status, Status::Failed);
        assert_eq!(
            state.failure.map(|f| f.reason),
            Some(FailureReason::UnexpectedAnswer)
        );
    }

    #[test]
    fn resuming_picks_up_where_the_session_stopped() {
        let reservation_id = Uuid::new_v4();
        let at = |status| SagaState {
            status,
            reservation_id: Some(reservation_id),
            ..SagaState::initiated()
        };
        assert_eq!(next_step(&at(Status::Initiated)), Ok(Step::Reserve));
        assert_eq!(
            next_step(&at(Status::InventoryReserved)),
            Ok(Step::StartPayment)
        );
        assert_eq!(next_step(&at(Status::PaymentPending)), Ok(Step::Charge));
        assert_eq!(
            next_step(&at(Status::PaymentCompleted)),
            Ok(Step::Confirm { reservation_id })
        );
        assert_eq!(next_step(&at(Status::Completed)), Ok(Step::Done));
        assert_eq!(next_step(&at(Status::Failed)), Ok(Step::Done));
        // A paid session with no reservation is corrupt, not confirmable.
        let corrupt = SagaState {
            status: Status::PaymentCompleted,
            payment_id: Some(Uuid::new_v4()),
            ..SagaState::initiated()
        };
        assert!(next_step(&corrupt).is_err());
    }

    #[test]
    fn out_of_order_outcomes_are_refused() {
        let initiated = SagaState::initiated();
        for outcome in [
            Outcome::PaymentStarted,
            Outcome::Charged {
                payment_id: Uuid::new_v4(),
            },
            Outcome::Confirmed,
            Outcome::Refunded,
            Outcome::Released,
        ] {
            assert!(apply(&initiated, outcome).is_err());
        }
        let completed = SagaState {
            status: Status::Completed,
            reservation_id: Some(Uuid::new_v4()),
            payment_id: Some(Uuid::new_v4()),
            ..SagaState::initiated()
        };
        let error = apply(&completed, Outcome::Refunded).err();
        assert_eq!(
            error.map(|e| e.to_string()),
            Some("outcome Refunded does not apply to a session in COMPLETED".into())
        );
        // A failing session is never charged or confirmed again.
        let failing = SagaState {
            status: Status::PaymentPending,
            reservation_id: Some(Uuid::new_v4()),
            failure: Some(failure(FailureReason::PaymentDeclined)),
            ..SagaState::initiated()
        };
        assert!(
            apply(
                &failing,
                Outcome::Charged {
                    payment_id: Uuid::new_v4()
                }
            )
            .is_err()
        );
        assert!(apply(&failing, Outcome::Confirmed).is_err());
        // FAILED only once compensation is complete.
        assert!(apply(&failing, Outcome::FailureRecorded).is_err());
    }

    #[test]
    fn names_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        for reason in FailureReason::ALL {
            assert_eq!(FailureReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Status::parse("SHIPPED"), None);
    }
}
