//! The services the saga talks to, and what their answers mean for it. A
//! transient failure (the backend down, slow or overloaded) is retried a few
//! times with backoff; a definite answer becomes a saga [`Outcome`] or, when
//! the saga has no rule for it, a [`CallError::Unexpected`].

use std::future::Future;
use std::time::Duration;

use storefront_proto::cart::v1 as cart;
use storefront_proto::cart::v1::cart_service_client::CartServiceClient;
use storefront_proto::inventory::v1 as inventory;
use storefront_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use storefront_proto::payment::v1 as payment;
use storefront_proto::payment::v1::payment_service_client::PaymentServiceClient;
use storefront_proto::product::v1 as product;
use storefront_proto::product::v1::product_service_client::ProductServiceClient;
use storefront_runtime::client::TracedChannel as Channel;
use storefront_runtime::error::reason_of;
use storefront_runtime::{StartError, client};
use tonic::{Code, Response, Status};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::{CartLine, CatalogEntry, CheckoutId, Quantity, Session, UserId};
use crate::saga::machine::{Failure, FailureReason, Outcome};

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Why a participant call did not produce an answer the saga can use.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Still unavailable after every attempt; try again later.
    #[error("{backend} unavailable: {message}")]
    Transient {
        backend: &'static str,
        message: String,
    },
    /// An answer the saga has no rule for.
    #[error("{backend} answered unexpectedly: {message}")]
    Unexpected {
        backend: &'static str,
        message: String,
    },
}

impl CallError {
    fn unexpected(backend: &'static str, status: &Status) -> Self {
        CallError::Unexpected {
            backend,
            message: describe(status),
        }
    }
}

fn describe(status: &Status) -> String {
    match reason_of(status) {
        Some(reason) => format!("{:?} {reason}: {}", status.code(), status.message()),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// Failures worth retrying: the call may not have reached the backend, or the
/// backend could not serve it now. Every saga call is idempotent, so a retry
/// after an answer that was lost on the way back is harmless.
fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            // tonic reports its own request timeout as CANCELLED.
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
    )
}

/// The cart, product, inventory and payment services.
#[derive(Clone)]
pub struct Participants {
    cart: CartServiceClient<Channel>,
    product: ProductServiceClient<Channel>,
    inventory: InventoryServiceClient<Channel>,
    payment: PaymentServiceClient<Channel>,
}

impl Participants {
    /// Lazily connected clients, each request bounded by the backend timeout.
    pub fn connect(config: &Config) -> Result<Self, StartError> {
        let deadline = config.backend_timeout;
        Ok(Participants {
            cart: CartServiceClient::new(client::channel(&config.cart_url, deadline)?),
            product: ProductServiceClient::new(client::channel(&config.product_url, deadline)?),
            inventory: InventoryServiceClient::new(client::channel(
                &config.inventory_url,
                deadline,
            )?),
            payment: PaymentServiceClient::new(client::channel(&config.payment_url, deadline)?),
        })
    }

    /// Calls `attempt` until it answers, fails definitely, or the attempts run out.
    async fn call<T, F, Fut>(&self, backend: &'static str, mut attempt: F) -> Result<T, Unanswered>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 1;
        loop {
            match attempt().await {
                Ok(answer) => return Ok(answer.into_inner()),
                Err(status) if is_transient(&status) => {
                    if tries >= ATTEMPTS {
                        return Err(Unanswered::Exhausted(CallError::Transient {
                            backend,
                            message: describe(&status),
                        }));
                    }
                    tracing::warn!(backend, error = %describe(&status), ?backoff, "backend call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    tries += 1;
                }
                Err(status) => return Err(Unanswered::Refused(status)),
            }
        }
    }

    /// The user's cart as committed in the cart's database (never an older
    /// cached copy), and which of `completed` it has already applied.
    pub async fn cart(
        &self,
        user_id: &UserId,
        completed: &[CheckoutId],
    ) -> Result<CartRead, CallError> {
        let request = cart::GetCartRequest {
            user_id: user_id.as_str().to_owned(),
            consistent: true,
            checkout_ids: completed.iter().map(ToString::to_string).collect(),
        };
        let answer = self
            .call("cart", || {
                let mut client = self.cart.clone();
                let request = request.clone();
                async move { client.get_cart(request).await }
            })
            .await
            .map_err(|e| e.into_error("cart"))?;
        let lines = answer
            .items
            .iter()
            .map(|item| {
                Ok(CartLine {
                    product_id: item.product_id,
                    quantity: Quantity::new(item.quantity).map_err(|e| CallError::Unexpected {
                        backend: "cart",
                        message: format!("product {}: {e}", item.product_id),
                    })?,
                })
            })
            .collect::<Result<_, CallError>>()?;
        let applied = answer
            .applied_checkout_ids
            .iter()
            .map(|id| parse_id("cart", id).map(CheckoutId::from))
            .collect::<Result<_, CallError>>()?;
        Ok(CartRead { lines, applied })
    }

    /// The catalog's names and prices of `product_ids`, in one batch call.
    /// Unknown products are left out.
    pub async fn catalog(&self, product_ids: Vec<i64>) -> Result<Vec<CatalogEntry>, CallError> {
        let request = product::GetProductsRequest { product_ids };
        let answer = self
            .call("product", || {
                let mut client = self.product.clone();
                let request = request.clone();
                async move { client.get_products(request).await }
            })
            .await
            .map_err(|e| e.into_error("product"))?;
        answer
            .products
            .into_iter()
            .map(|p| {
                let price = storefront_runtime::Money::from_proto("price", p.price.as_ref())
                    .map_err(|e| CallError::Unexpected {
                        backend: "product",
                        message: format!("product {}: {e}", p.id),
                    })?;
                Ok(CatalogEntry {
                    product_id: p.id,
                    name: p.name,
                    price,
                })
            })
            .collect()
    }

    /// Reserves the session's items (idempotent per checkout id).
    pub async fn reserve(&self, session: &Session) -> Result<Outcome, CallError> {
        let request = inventory::ReserveRequest {
            checkout_id: session.id.to_string(),
            lines: session
                .items
                .iter()
                .map(|item| inventory::ReservationLine {
                    product_id: item.product_id,
                    quantity: item.quantity.get(),
                })
                .collect(),
        };
        let answer = self
            .call("inventory", || {
                let mut client = self.inventory.clone();
                let request = request.clone();
                async move { client.reserve(request).await }
            })
            .await;
        let reservation = match answer {
            Ok(reservation) => reservation,
            Err(Unanswered::Refused(status)) => {
                let reason = match reason_of(&status).as_deref() {
                    Some("INSUFFICIENT_STOCK") => FailureReason::InsufficientStock,
                    Some("PRODUCT_NOT_FOUND") => FailureReason::ProductUnavailable,
                    _ => return Err(CallError::unexpected("inventory", &status)),
                };
                return Ok(Outcome::ReserveRefused {
                    failure: failure(reason, status.message()),
                    reservation_id: None,
                });
            }
            Err(other) => return Err(other.into_error("inventory")),
        };
        let reservation_id = parse_id("inventory", &reservation.reservation_id)?;
        // A repeated Reserve returns the reservation as it is now: one made by
        // an earlier attempt may have lapsed before the session recorded it.
        Ok(
            match inventory::ReservationStatus::try_from(reservation.status) {
                Ok(
                    inventory::ReservationStatus::Pending | inventory::ReservationStatus::Confirmed,
                ) => Outcome::Reserved { reservation_id },
                Ok(inventory::ReservationStatus::Expired) => Outcome::ReserveRefused {
                    failure: failure(
                        FailureReason::ReservationExpired,
                        "the reservation expired before payment",
                    ),
                    reservation_id: Some(reservation_id),
                },
                Ok(inventory::ReservationStatus::Released) => Outcome::ReserveRefused {
                    failure: failure(
                        FailureReason::ReservationReleased,
                        "the reservation was released before payment",
                    ),
                    reservation_id: Some(reservation_id),
                },
                _ => {
                    return Err(CallError::Unexpected {
                        backend: "inventory",
                        message: format!("reservation status {}", reservation.status),
                    });
                }
            },
        )
    }

    /// Charges the session's total (idempotent per checkout id).
    pub async fn charge(&self, session: &Session) -> Result<Outcome, CallError> {
        let request = payment::ChargeRequest {
            checkout_id: session.id.to_string(),
            user_id: session.user_id.as_str().to_owned(),
            amount: Some(session.total.into()),
            payment_method: session.payment_method.clone(),
        };
        let answer = self
            .call("payment", || {
                let mut client = self.payment.clone();
                let request = request.clone();
                async move { client.charge(request).await }
            })
            .await;
        let charge = match answer {
            Ok(charge) => charge,
            // Only the request can be invalid, and of it only the payment
            // method comes from the caller: nothing was charged.
            Err(Unanswered::Refused(status)) if status.code() == Code::InvalidArgument => {
                return Ok(Outcome::ChargeRefused {
                    failure: failure(FailureReason::InvalidPaymentMethod, status.message()),
                });
            }
            Err(other) => return Err(other.into_error("payment")),
        };
        match payment::PaymentStatus::try_from(charge.status) {
            Ok(payment::PaymentStatus::Succeeded) => Ok(Outcome::Charged {
                payment_id: parse_id("payment", &charge.payment_id)?,
            }),
            Ok(payment::PaymentStatus::Declined) => {
                let decline = payment::DeclineReason::try_from(charge.decline_reason)
                    .unwrap_or(payment::DeclineReason::Unspecified);
                let name = decline.as_str_name();
                let name = name.strip_prefix("DECLINE_REASON_").unwrap_or(name);
                Ok(Outcome::ChargeRefused {
                    failure: Failure {
                        reason: FailureReason::PaymentDeclined,
                        decline_reason: Some(name.to_owned()),
                        detail: format!("the payment was declined: {name}"),
                    },
                })
            }
            // REFUNDED: this checkout's charge was refunded by someone else.
            _ => Err(CallError::Unexpected {
                backend: "payment",
                message: format!(
                    "charge {} of a pending checkout has status {}",
                    charge.payment_id, charge.status
                ),
            }),
        }
    }

    /// Confirms the reservation, deducting the stock for good.
    pub async fn confirm(&self, reservation_id: Uuid) -> Result<Outcome, CallError> {
        let request = inventory::ConfirmRequest {
            reservation_id: reservation_id.to_string(),
        };
        let answer = self
            .call("inventory", || {
                let mut client = self.inventory.clone();
                let request = request.clone();
                async move { client.confirm(request).await }
            })
            .await;
        match answer {
            Ok(reservation)
                if reservation.status == inventory::ReservationStatus::Confirmed as i32 =>
            {
                Ok(Outcome::Confirmed)
            }
            Ok(reservation) => Err(CallError::Unexpected {
                backend: "inventory",
                message: format!("Confirm answered reservation status {}", reservation.status),
            }),
            Err(Unanswered::Refused(status)) => {
                let reason = match reason_of(&status).as_deref() {
                    Some("RESERVATION_EXPIRED") => FailureReason::ReservationExpired,
                    Some("RESERVATION_RELEASED") => FailureReason::ReservationReleased,
                    _ => return Err(CallError::unexpected("inventory", &status)),
                };
                Ok(Outcome::ConfirmRefused {
                    failure: failure(reason, status.message()),
                })
            }
            Err(other) => Err(other.into_error("inventory")),
        }
    }

    /// Compensation: returns the reserved stock (idempotent).
    pub async fn release(&self, reservation_id: Uuid) -> Result<Outcome, CallError> {
        let request = inventory::ReleaseRequest {
            reservation_id: reservation_id.to_string(),
        };
        let answer = self
            .call("inventory", || {
                let mut client = self.inventory.clone();
                let request = request.clone();
                async move { client.release(request).await }
            })
            .await;
        match answer {
            Ok(_) => Ok(Outcome::Released),
            // Never made, so nothing is held.
            Err(Unanswered::Refused(status))
                if reason_of(&status).as_deref() == Some("RESERVATION_NOT_FOUND") =>
            {
                Ok(Outcome::Released)
            }
            Err(Unanswered::Refused(status)) => Err(CallError::unexpected("inventory", &status)),
            Err(other) => Err(other.into_error("inventory")),
        }
    }

    /// Compensation: refunds the charge (idempotent).
    pub async fn refund(&self, payment_id: Uuid) -> Result<Outcome, CallError> {
        let request = payment::RefundRequest {
            payment_id: payment_id.to_string(),
        };
        let answer = self
            .call("payment", || {
                let mut client = self.payment.clone();
                let request = request.clone();
                async move { client.refund(request).await }
            })
            .await;
        match answer {
            Ok(refunded) if refunded.status == payment::PaymentStatus::Refunded as i32 => {
                Ok(Outcome::Refunded)
            }
            Ok(other) => Err(CallError::Unexpected {
                backend: "payment",
                message: format!("Refund answered payment status {}", other.status),
            }),
            // A declined charge took no money.
            Err(Unanswered::Refused(status))
                if reason_of(&status).as_deref() == Some("NOT_REFUNDABLE") =>
            {
                Ok(Outcome::Refunded)
            }
            Err(Unanswered::Refused(status)) => Err(CallError::unexpected("payment", &status)),
            Err(other) => Err(other.into_error("payment")),
        }
    }
}

/// A consistent read of a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartRead {
    pub lines: Vec<CartLine>,
    /// Of the completed checkouts asked about, those the cart has applied.
    pub applied: Vec<CheckoutId>,
}

/// How a call ended without an answer.
enum Unanswered {
    /// The backend refused the request with a non-transient status.
    Refused(Status),
    /// Every attempt failed transiently.
    Exhausted(CallError),
}

impl Unanswered {
    fn into_error(self, backend: &'static str) -> CallError {
        match self {
            Unanswered::Refused(status) => CallError::unexpected(backend, &status),
            Unanswered::Exhausted(error) => error,
        }
    }
}

fn failure(reason: FailureReason, detail: &str) -> Failure {
    Failure {
        reason,
        decline_reason: None,
        detail: detail.to_owned(),
    }
}

fn parse_id(backend: &'static str, text: &str) -> Result<Uuid, CallError> {
    Uuid::parse_str(text).map_err(|_| CallError::Unexpected {
        backend,
        message: format!("malformed id {text:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporary_conditions_are_retried() {
        assert!(is_transient(&Status::unavailable("down")));
        assert!(is_transient(&Status::deadline_exceeded("slow")));
        assert!(is_transient(&Status::cancelled("Timeout expired")));
        assert!(!is_transient(&Status::failed_precondition("short")));
        assert!(!is_transient(&Status::invalid_argument("bad")));
        assert!(!is_transient(&Status::not_found("gone")));
    }
}
