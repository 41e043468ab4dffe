//! The InventoryService handlers: parse the request, ask the ledger, translate back.

use std::time::Duration;

use storefront_proto::inventory::v1 as pb;
use storefront_proto::inventory::v1::inventory_service_server::InventoryService;
use storefront_runtime::FieldError;
use storefront_runtime::error::parse_uuid;
use tonic::{Request, Response, Status};

use crate::domain::{Reservation, ReserveOrder};
use crate::error::InventoryError;
use crate::store::StockLedger;

pub struct InventoryApi {
    ledger: StockLedger,
    reservation_ttl: Duration,
}

impl InventoryApi {
    pub fn new(ledger: StockLedger, reservation_ttl: Duration) -> Self {
        InventoryApi {
            ledger,
            reservation_ttl,
        }
    }
}

fn to_proto(reservation: Reservation) -> pb::Reservation {
    let status: pb::ReservationStatus = reservation.status.into();
    pb::Reservation {
        reservation_id: reservation.id.to_string(),
        checkout_id: reservation.checkout_id.to_string(),
        status: status as i32,
        lines: reservation
            .lines
            .iter()
            .map(|line| pb::ReservationLine {
                product_id: line.product_id,
                quantity: line.quantity,
            })
            .collect(),
        expires_at: Some(prost_types::Timestamp {
            seconds: reservation.expires_at.timestamp(),
            nanos: reservation.expires_at.timestamp_subsec_nanos() as i32,
        }),
    }
}

fn reservation_id(text: &str) -> Result<uuid::Uuid, InventoryError> {
    Ok(parse_uuid("reservation_id", text)?)
}

#[tonic::async_trait]
impl InventoryService for InventoryApi {
    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        let ids = &request.get_ref().product_ids;
        if ids.is_empty() || ids.len() > 100 {
            let error = FieldError::new(
                "product_ids",
                format!("must name 1 to 100 products, got {}", ids.len()),
            );
            return Err(InventoryError::from(error).into());
        }
        if let Some(bad) = ids.iter().find(|id| **id <= 0) {
            let error = FieldError::new(
                "product_ids",
                format!("must be positive product ids, got {bad}"),
            );
            return Err(InventoryError::from(error).into());
        }
        let levels = self.ledger.levels(ids).await?;
        if let Some(missing) = ids
            .iter()
            .find(|id| !levels.iter().any(|l| l.product_id == **id))
        {
            return Err(InventoryError::UnknownProduct(*missing).into());
        }
        Ok(Response::new(pb::GetStockResponse {
            stock: levels
                .into_iter()
                .map(|l| pb::StockLevel {
                    product_id: l.product_id,
                    on_hand: l.on_hand,
                    reserved: l.reserved,
                    available: l.on_hand - l.reserved,
                })
                .collect(),
        }))
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let order = ReserveOrder::try_from(request.get_ref()).map_err(InventoryError::from)?;
        let reservation = self.ledger.reserve(&order, self.reservation_ttl).await?;
        Ok(Response::new(to_proto(reservation)))
    }

    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let id = reservation_id(&request.get_ref().reservation_id)?;
        Ok(Response::new(to_proto(self.ledger.confirm(id).await?)))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let id = reservation_id(&request.get_ref().reservation_id)?;
        Ok(Response::new(to_proto(self.ledger.release(id).await?)))
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let id = reservation_id(&request.get_ref().reservation_id)?;
        Ok(Response::new(to_proto(self.ledger.get(id).await?)))
    }
}
