//! The caller's cart: `/api/v1/cart` and its items.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use storefront_proto::cart::v1 as pb;

use crate::auth::Caller;
use crate::input::{AddItemBody, JsonBody, NewLine, Param, ProductId, Quantity, SetQuantityBody};
use crate::json::CartJson;
use crate::problem::ApiError;
use crate::routes::AppState;

type CartAnswer = Result<Json<CartJson>, ApiError>;

fn user_id(caller: &Caller) -> String {
    caller.user.as_str().to_owned()
}

pub async fn get(State(app): State<AppState>, caller: Caller) -> CartAnswer {
    let request = pb::GetCartRequest {
        user_id: user_id(&caller),
        ..Default::default()
    };
    let cart = app
        .backends
        .cart
        .call(
            "GetCart",
            request,
            |mut c, r| async move { c.get_cart(r).await },
        )
        .await?;
    Ok(Json(cart.try_into()?))
}

pub async fn add_item(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<AddItemBody>,
) -> Result<(StatusCode, Json<CartJson>), ApiError> {
    let line = NewLine::try_from(body)?;
    let request = pb::AddItemRequest {
        user_id: user_id(&caller),
        product_id: line.product.get(),
        quantity: line.quantity.get(),
    };
    let cart = app
        .backends
        .cart
        .call(
            "AddItem",
            request,
            |mut c, r| async move { c.add_item(r).await },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(cart.try_into()?)))
}

pub async fn set_quantity(
    State(app): State<AppState>,
    caller: Caller,
    Param(product): Param<ProductId>,
    JsonBody(body): JsonBody<SetQuantityBody>,
) -> CartAnswer {
    let quantity = Quantity::try_from(body)?;
    let request = pb::UpdateItemRequest {
        user_id: user_id(&caller),
        product_id: product.get(),
        quantity: quantity.get(),
    };
    let cart = app
        .backends
        .cart
        .call("UpdateItem", request, |mut c, r| async move {
            c.update_item(r).await
        })
        .await?;
    Ok(Json(cart.try_into()?))
}

pub async fn remove_item(
    State(app): State<AppState>,
    caller: Caller,
    Param(product): Param<ProductId>,
) -> CartAnswer {
    let request = pb::RemoveItemRequest {
        user_id: user_id(&caller),
        product_id: product.get(),
    };
    let cart = app
        .backends
        .cart
        .call("RemoveItem", request, |mut c, r| async move {
            c.remove_item(r).await
        })
        .await?;
    Ok(Json(cart.try_into()?))
}

pub async fn clear(State(app): State<AppState>, caller: Caller) -> CartAnswer {
    let request = pb::ClearCartRequest {
        user_id: user_id(&caller),
    };
    let cart = app
        .backends
        .cart
        .call("ClearCart", request, |mut c, r| async move {
            c.clear_cart(r).await
        })
        .await?;
    Ok(Json(cart.try_into()?))
}
