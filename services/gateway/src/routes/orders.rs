//! The caller's orders, and the admin's status changes.

use axum::Json;
use axum::extract::State;
use storefront_proto::orders::v1 as pb;

use crate::auth::{Admin, Caller};
use crate::input::{JsonBody, OrderId, OrderStatus, OrderStatusBody, Page, Param};
use crate::json::{OrderJson, OrdersJson};
use crate::problem::ApiError;
use crate::routes::AppState;

pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    page: Page,
) -> Result<Json<OrdersJson>, ApiError> {
    let request = pb::ListOrdersRequest {
        user_id: caller.user.as_str().to_owned(),
        page_size: page.size,
        page_token: page.token,
    };
    let answer = app
        .backends
        .orders
        .call("ListOrders", request, |mut c, r| async move {
            c.list_orders(r).await
        })
        .await?;
    Ok(Json(answer.try_into()?))
}

/// An order of the caller; an admin may read anyone's.
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Param(id): Param<OrderId>,
) -> Result<Json<OrderJson>, ApiError> {
    let owner = if caller.admin {
        String::new()
    } else {
        caller.user.as_str().to_owned()
    };
    let request = pb::GetOrderRequest {
        order_id: id.get().to_string(),
        user_id: owner,
    };
    let order = app
        .backends
        .orders
        .call("GetOrder", request, |mut c, r| async move {
            c.get_order(r).await
        })
        .await?;
    Ok(Json(order.try_into()?))
}

pub async fn set_status(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Param(id): Param<OrderId>,
    JsonBody(body): JsonBody<OrderStatusBody>,
) -> Result<Json<OrderJson>, ApiError> {
    let status = pb::OrderStatus::from(OrderStatus::try_from(body)?);
    let request = pb::UpdateOrderStatusRequest {
        order_id: id.get().to_string(),
        status: status as i32,
    };
    let order = app
        .backends
        .orders
        .call("UpdateOrderStatus", request, |mut c, r| async move {
            c.update_order_status(r).await
        })
        .await?;
    tracing::info!(
        admin = admin.user.as_str(),
        order_id = %id.get(),
        status = ?status,
        "order status changed"
    );
    Ok(Json(order.try_into()?))
}
