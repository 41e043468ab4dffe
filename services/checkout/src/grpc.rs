//! The CheckoutService handlers: parse the request, run the saga, translate back.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use storefront_proto::checkout::v1 as pb;
use storefront_proto::checkout::v1::checkout_service_server::CheckoutService;
use tonic::{Request, Response, Status};

use crate::domain::{CheckoutId, CheckoutOrder, Session, UserId};
use crate::error::CheckoutError;
use crate::events::line_item;
use crate::saga::CheckoutSaga;
use crate::saga::machine::Status as SagaStatus;

pub struct CheckoutApi {
    saga: Arc<CheckoutSaga>,
}

impl CheckoutApi {
    pub fn new(saga: Arc<CheckoutSaga>) -> Self {
        CheckoutApi { saga }
    }
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn to_proto(session: &Session) -> pb::CheckoutSession {
    let status: pb::CheckoutStatus = session.saga.status.into();
    // Reasons are part of the answer once the session has failed for good.
    let failure = match session.saga.status {
        SagaStatus::Failed => session.saga.failure.as_ref(),
        _ => None,
    };
    pb::CheckoutSession {
        checkout_id: session.id.to_string(),
        user_id: session.user_id.as_str().to_owned(),
        status: status as i32,
        items: session.items.iter().map(line_item).collect(),
        total: Some(session.total.into()),
        failure_reason: failure
            .map(|f| f.reason.as_str().to_owned())
            .unwrap_or_default(),
        decline_reason: failure
            .and_then(|f| f.decline_reason.clone())
            .unwrap_or_default(),
        created_at: Some(timestamp(session.created_at)),
        updated_at: Some(timestamp(session.updated_at)),
    }
}

#[tonic::async_trait]
impl CheckoutService for CheckoutApi {
    async fn checkout(
        &self,
        request: Request<pb::CheckoutRequest>,
    ) -> Result<Response<pb::CheckoutResponse>, Status> {
        let order = CheckoutOrder::try_from(request.get_ref()).map_err(CheckoutError::from)?;
        let checkout = self.saga.checkout(order).await?;
        Ok(Response::new(pb::CheckoutResponse {
            session: Some(to_proto(&checkout.session)),
            replayed: checkout.replayed,
        }))
    }

    async fn get_checkout(
        &self,
        request: Request<pb::GetCheckoutRequest>,
    ) -> Result<Response<pb::CheckoutSession>, Status> {
        let request = request.get_ref();
        let user_id = UserId::parse("user_id", &request.user_id).map_err(CheckoutError::from)?;
        let id = CheckoutId::parse(&request.checkout_id).map_err(CheckoutError::from)?;
        let session = self.saga.session_of(&user_id, id).await?;
        Ok(Response::new(to_proto(&session)))
    }
}
