//! The CheckoutService handlers: parse the request, run the saga, translate back.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use storefront_proto::checkout::v1 as pb;
use storefront_proto::checkout::v1::checkout_service_server::CheckoutService;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use storefront_runtime::FieldError;

use crate::domain::{CheckoutId, CheckoutOrder, IdempotencyKey, Session, UserId};
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
        attention_reason: session.saga.attention.clone().unwrap_or_default(),
    }
}

/// Default and largest page of ListCheckouts.
const DEFAULT_LIST: i64 = 50;
const MAX_LIST: i32 = 100;

#[tonic::async_trait]
impl CheckoutService for CheckoutApi {
    async fn checkout(
        &self,
        request: Request<pb::CheckoutRequest>,
    ) -> Result<Response<pb::CheckoutResponse>, Status> {
        let order = CheckoutOrder::try_from(request.get_ref()).map_err(CheckoutError::from)?;
        // Spawned, so a caller that stops waiting (its deadline, a dropped
        // connection) does not stop the saga halfway: it runs to its end now
        // instead of waiting for the recovery loop.
        let saga = Arc::clone(&self.saga);
        let run = tokio::spawn(async move { saga.checkout(order).await }.in_current_span());
        let checkout = run
            .await
            .map_err(|e| Status::internal(format!("checkout task failed: {e}")))??;
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
        if request.checkout_id.is_empty() && !request.idempotency_key.is_empty() {
            let key =
                IdempotencyKey::parse(&request.idempotency_key).map_err(CheckoutError::from)?;
            let session = self
                .saga
                .session_by_key(&user_id, &key)
                .await?
                .ok_or(CheckoutError::UnknownKey)?;
            return Ok(Response::new(to_proto(&session)));
        }
        let id = CheckoutId::parse(&request.checkout_id).map_err(CheckoutError::from)?;
        let session = self.saga.session_of(&user_id, id).await?;
        Ok(Response::new(to_proto(&session)))
    }

    async fn list_checkouts(
        &self,
        request: Request<pb::ListCheckoutsRequest>,
    ) -> Result<Response<pb::ListCheckoutsResponse>, Status> {
        let request = request.get_ref();
        let status = pb::CheckoutStatus::try_from(request.status)
            .ok()
            .and_then(|status| {
                SagaStatus::ALL
                    .into_iter()
                    .find(|s| pb::CheckoutStatus::from(*s) == status)
            })
            .ok_or_else(|| {
                CheckoutError::from(FieldError::new(
                    "status",
                    format!("must be a checkout status, got {}", request.status),
                ))
            })?;
        let limit = match request.page_size {
            0 => DEFAULT_LIST,
            n if (1..=MAX_LIST).contains(&n) => i64::from(n),
            n => {
                return Err(CheckoutError::from(FieldError::new(
                    "page_size",
                    format!("must be 1 to {MAX_LIST}, got {n}"),
                ))
                .into());
            }
        };
        let sessions = self.saga.sessions_in(status, limit).await?;
        Ok(Response::new(pb::ListCheckoutsResponse {
            sessions: sessions.iter().map(to_proto).collect(),
        }))
    }
}
