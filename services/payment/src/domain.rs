//! Payment types and the provider simulator's rules.

use std::time::Duration;

use storefront_proto::payment::v1 as pb;
use storefront_runtime::{FieldError, Money, UserId};
use uuid::Uuid;

/// A test payment method; the name decides the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    Visa,
    Declined,
    InsufficientFunds,
    Expired,
    CvcFail,
}

impl PaymentMethod {
    pub fn parse(name: &str) -> Result<Self, FieldError> {
        Ok(match name {
            "" | "pm_card_visa" => PaymentMethod::Visa,
            "pm_card_declined" => PaymentMethod::Declined,
            "pm_card_insufficient_funds" => PaymentMethod::InsufficientFunds,
            "pm_card_expired" => PaymentMethod::Expired,
            "pm_card_cvc_fail" => PaymentMethod::CvcFail,
            other => {
                return Err(FieldError::new(
                    "payment_method",
                    format!(
                        "unknown payment method {other:?}; use pm_card_visa, pm_card_declined, \
                         pm_card_insufficient_funds, pm_card_expired or pm_card_cvc_fail"
                    ),
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            PaymentMethod::Visa => "pm_card_visa",
            PaymentMethod::Declined => "pm_card_declined",
            PaymentMethod::InsufficientFunds => "pm_card_insufficient_funds",
            PaymentMethod::Expired => "pm_card_expired",
            PaymentMethod::CvcFail => "pm_card_cvc_fail",
        }
    }

    /// The provider's answer: `None` for success, else why it declined.
    pub fn decline(self) -> Option<DeclineReason> {
        match self {
            PaymentMethod::Visa => None,
            PaymentMethod::Declined => Some(DeclineReason::CardDeclined),
            PaymentMethod::InsufficientFunds => Some(DeclineReason::NoFunds),
            PaymentMethod::Expired => Some(DeclineReason::CardExpired),
            PaymentMethod::CvcFail => Some(DeclineReason::InvalidCvc),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    CardDeclined,
    NoFunds,
    CardExpired,
    InvalidCvc,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::CardDeclined => "CARD_DECLINED",
            DeclineReason::NoFunds => "NO_FUNDS",
            DeclineReason::CardExpired => "CARD_EXPIRED",
            DeclineReason::InvalidCvc => "INVALID_CVC",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::CardDeclined,
            Self::NoFunds,
            Self::CardExpired,
            Self::InvalidCvc,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

impl From<DeclineReason> for pb::DeclineReason {
    fn from(reason: DeclineReason) -> Self {
        match reason {
            DeclineReason::CardDeclined => pb::DeclineReason::CardDeclined,
            DeclineReason::NoFunds => pb::DeclineReason::NoFunds,
            DeclineReason::CardExpired => pb::DeclineReason::CardExpired,
            DeclineReason::InvalidCvc => pb::DeclineReason::InvalidCvc,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Succeeded,
    Declined,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Succeeded => "SUCCEEDED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Succeeded, Self::Declined, Self::Refunded]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl From<PaymentStatus> for pb::PaymentStatus {
    fn from(status: PaymentStatus) -> Self {
        match status {
            PaymentStatus::Succeeded => pb::PaymentStatus::Succeeded,
            PaymentStatus::Declined => pb::PaymentStatus::Declined,
            PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
        }
    }
}

/// A checked Charge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeOrder {
    pub checkout_id: Uuid,
    pub user_id: String,
    pub amount: Money,
    pub method: PaymentMethod,
}

impl TryFrom<&pb::ChargeRequest> for ChargeOrder {
    type Error = FieldError;

    fn try_from(request: &pb::ChargeRequest) -> Result<Self, Self::Error> {
        let checkout_id =
            storefront_runtime::error::parse_uuid("checkout_id", &request.checkout_id)?;
        let user_id = UserId::parse("user_id", &request.user_id)?;
        let amount = Money::from_proto("amount", request.amount.as_ref())?;
        if amount.minor() == 0 {
            return Err(FieldError::new("amount", "must be greater than zero"));
        }
        Ok(ChargeOrder {
            checkout_id,
            user_id: user_id.into(),
            amount,
            method: PaymentMethod::parse(&request.payment_method)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: Uuid,
    pub checkout_id: Uuid,
    pub user_id: String,
    pub amount: Money,
    pub method: String,
    pub status: PaymentStatus,
    pub decline_reason: Option<DeclineReason>,
}

impl Payment {
    /// Whether a repeated Charge asks for the same thing as the one recorded.
    pub fn matches(&self, order: &ChargeOrder) -> bool {
        self.user_id == order.user_id
            && self.amount == order.amount
            && self.method == order.method.name()
    }
}

/// The provider's behaviour apart from the test methods: latency and outages.
#[derive(Debug, Clone, Copy)]
pub struct Simulator {
    failure_rate: f64,
    latency: Duration,
}

impl Simulator {
    pub fn new(failure_rate: f64, latency: Duration) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&failure_rate) {
            return Err(format!("must be between 0.0 and 1.0, got {failure_rate}"));
        }
        Ok(Simulator {
            failure_rate,
            latency,
        })
    }

    /// Waits the configured latency; `false` when this call draws an outage.
    pub async fn provider_call(&self) -> bool {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.failure_rate == 0.0 || rand::random::<f64>() >= self.failure_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_methods_decide_the_outcome() {
        let outcome = |name| PaymentMethod::parse(name).map(PaymentMethod::decline);
        assert_eq!(outcome(""), Ok(None));
        assert_eq!(outcome("pm_card_visa"), Ok(None));
        assert_eq!(
            outcome("pm_card_declined"),
            Ok(Some(DeclineReason::CardDeclined))
        );
        assert_eq!(
            outcome("pm_card_insufficient_funds"),
            Ok(Some(DeclineReason::NoFunds))
        );
        assert_eq!(
            outcome("pm_card_expired"),
            Ok(Some(DeclineReason::CardExpired))
        );
        assert_eq!(
            outcome("pm_card_cvc_fail"),
            Ok(Some(DeclineReason::InvalidCvc))
        );
        assert_eq!(
            outcome("pm_bitcoin").map_err(|e| e.field),
            Err("payment_method")
        );
    }

    #[test]
    fn failure_rate_is_a_probability() {
        assert!(Simulator::new(1.5, Duration::ZERO).is_err());
        assert!(Simulator::new(-0.1, Duration::ZERO).is_err());
        assert!(Simulator::new(0.25, Duration::ZERO).is_ok());
    }

    #[tokio::test]
    async fn certain_outage_always_fails_and_none_never_does() {
        let down = Simulator::new(1.0, Duration::ZERO).map_err(|e| e.to_string());
        let up = Simulator::new(0.0, Duration::ZERO).map_err(|e| e.to_string());
        let (Ok(down), Ok(up)) = (down, up) else {
            panic!("fixtures")
        };
        for _ in 0..20 {
            assert!(!down.provider_call().await);
            assert!(up.provider_call().await);
        }
    }
}
