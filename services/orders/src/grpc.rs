//! The OrderService handlers: parse the request, ask the order book, translate back.

use chrono::{DateTime, Utc};
use storefront_proto::orders::v1 as pb;
use storefront_proto::orders::v1::order_service_server::OrderService;
use tonic::{Request, Response, Status};

use crate::domain::{Order, OrderId, OrderStatus, PageRequest, UserId};
use crate::error::OrdersError;
use crate::store::OrderBook;

pub struct OrdersApi {
    book: OrderBook,
}

impl OrdersApi {
    pub fn new(book: OrderBook) -> Self {
        OrdersApi { book }
    }
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn to_proto(order: Order) -> pb::Order {
    let status: pb::OrderStatus = order.status.into();
    pb::Order {
        id: order.id.to_string(),
        checkout_id: order.checkout_id.to_string(),
        user_id: order.user_id,
        status: status as i32,
        items: order.items.iter().map(Into::into).collect(),
        total: Some(order.total.into()),
        shipping_address: order.shipping_address,
        created_at: Some(timestamp(order.created_at)),
        updated_at: Some(timestamp(order.updated_at)),
    }
}

#[tonic::async_trait]
impl OrderService for OrdersApi {
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let request = request.get_ref();
        let id = OrderId::parse(&request.order_id).map_err(OrdersError::from)?;
        let owner = match request.user_id.as_str() {
            "" => None,
            user => Some(UserId::parse("user_id", user).map_err(OrdersError::from)?),
        };
        let order = self.book.get(id).await?;
        // Someone else's order is reported exactly like a missing one.
        if owner.is_some_and(|owner| !order.belongs_to(&owner)) {
            return Err(OrdersError::NotFound(id).into());
        }
        Ok(Response::new(to_proto(order)))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let request = request.get_ref();
        let user = UserId::parse("user_id", &request.user_id).map_err(OrdersError::from)?;
        let page = PageRequest::parse(request.page_size, &request.page_token)
            .map_err(OrdersError::from)?;
        let (orders, more) = self.book.list(&user, page).await?;
        let next_page_token = match orders.last() {
            Some(last) if more => last.cursor().encode(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders.into_iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_order_status(
        &self,
        request: Request<pb::UpdateOrderStatusRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let request = request.get_ref();
        let id = OrderId::parse(&request.order_id).map_err(OrdersError::from)?;
        let to = OrderStatus::from_proto(request.status).map_err(OrdersError::from)?;
        let order = self.book.change_status(id, to).await?;
        metrics::counter!("orders_status_changes_total", "to" => to.as_str()).increment(1);
        tracing::info!(order_id = %id, status = %to, "order status changed");
        Ok(Response::new(to_proto(order)))
    }
}
