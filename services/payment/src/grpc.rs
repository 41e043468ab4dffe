//! The PaymentService handlers: parse the request, consult the simulator and
//! the ledger, translate back.

use storefront_proto::payment::v1 as pb;
use storefront_proto::payment::v1::payment_service_server::PaymentService;
use storefront_runtime::error::parse_uuid;
use tonic::{Request, Response, Status};

use crate::domain::{ChargeOrder, Payment, Simulator};
use crate::error::PaymentError;
use crate::store::PaymentLedger;

pub struct PaymentApi {
    ledger: PaymentLedger,
    simulator: Simulator,
}

impl PaymentApi {
    pub fn new(ledger: PaymentLedger, simulator: Simulator) -> Self {
        PaymentApi { ledger, simulator }
    }
}

fn to_proto(payment: Payment) -> pb::Payment {
    let status: pb::PaymentStatus = payment.status.into();
    let decline = payment
        .decline_reason
        .map_or(pb::DeclineReason::Unspecified, Into::into);
    pb::Payment {
        payment_id: payment.id.to_string(),
        checkout_id: payment.checkout_id.to_string(),
        user_id: payment.user_id,
        amount: Some(payment.amount.into()),
        payment_method: payment.method,
        status: status as i32,
        decline_reason: decline as i32,
    }
}

fn payment_id(text: &str) -> Result<uuid::Uuid, PaymentError> {
    Ok(parse_uuid("payment_id", text)?)
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn charge(
        &self,
        request: Request<pb::ChargeRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let order = ChargeOrder::try_from(request.get_ref()).map_err(PaymentError::from)?;
        if let Some(previous) = self.ledger.by_checkout(order.checkout_id).await? {
            if !previous.matches(&order) {
                return Err(PaymentError::ConflictingCharge(order.checkout_id).into());
            }
            return Ok(Response::new(to_proto(previous)));
        }
        if !self.simulator.provider_call().await {
            metrics::counter!("payment_charges_total", "outcome" => "provider_unavailable")
                .increment(1);
            return Err(PaymentError::ProviderUnavailable.into());
        }
        let payment = self.ledger.record(&order, order.method.decline()).await?;
        let outcome = payment.decline_reason.map_or("succeeded", |r| r.as_str());
        metrics::counter!("payment_charges_total", "outcome" => outcome).increment(1);
        Ok(Response::new(to_proto(payment)))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let id = payment_id(&request.get_ref().payment_id)?;
        Ok(Response::new(to_proto(self.ledger.refund(id).await?)))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let id = payment_id(&request.get_ref().payment_id)?;
        Ok(Response::new(to_proto(self.ledger.get(id).await?)))
    }
}
