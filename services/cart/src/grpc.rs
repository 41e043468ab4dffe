//! The CartService handlers: parse the request, ask the carts, translate back.

use chrono::{DateTime, Utc};
use storefront_proto::cart::v1 as pb;
use storefront_proto::cart::v1::cart_service_server::CartService;
use storefront_runtime::FieldError;
use storefront_runtime::error::parse_uuid;
use tonic::{Request, Response, Status};

use crate::carts::Carts;
use crate::domain::{AddItem, Cart, RemoveItem, UpdateItem, UserId};
use crate::error::CartError;

/// Most checkouts one consistent read asks about.
const MAX_CHECKOUT_IDS: usize = 100;

pub struct CartApi {
    carts: Carts,
}

impl CartApi {
    pub fn new(carts: Carts) -> Self {
        CartApi { carts }
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn to_proto(cart: Cart) -> Result<pb::Cart, CartError> {
    let total = cart.total().ok_or(CartError::TotalOverflow)?;
    let item_count = cart.item_count();
    let items = cart
        .lines
        .into_iter()
        .map(|line| {
            Ok(pb::CartItem {
                product_id: line.product_id.get(),
                line_total: Some(line.total().ok_or(CartError::TotalOverflow)?.into()),
                unit_price: Some(line.unit_price.into()),
                quantity: line.quantity.get(),
                added_at: Some(timestamp(line.added_at)),
                name: line.name,
            })
        })
        .collect::<Result<_, CartError>>()?;
    Ok(pb::Cart {
        user_id: cart.user_id.into(),
        items,
        item_count,
        total: Some(total.into()),
        updated_at: cart.updated_at.map(timestamp),
        applied_checkout_ids: Vec::new(),
    })
}

fn respond(cart: Result<Cart, CartError>) -> Result<Response<pb::Cart>, Status> {
    Ok(Response::new(to_proto(cart?)?))
}

fn user_id(text: &str) -> Result<UserId, CartError> {
    Ok(UserId::parse("user_id", text)?)
}

#[tonic::async_trait]
impl CartService for CartApi {
    async fn get_cart(
        &self,
        request: Request<pb::GetCartRequest>,
    ) -> Result<Response<pb::Cart>, Status> {
        let request = request.get_ref();
        let user = user_id(&request.user_id)?;
        if !request.consistent {
            return respond(self.carts.get(&user).await);
        }
        if request.checkout_ids.len() > MAX_CHECKOUT_IDS {
            return Err(CartError::from(FieldError::new(
                "checkout_ids",
                format!("at most {MAX_CHECKOUT_IDS} ids"),
            ))
            .into());
        }
        let checkouts = request
            .checkout_ids
            .iter()
            .map(|id| parse_uuid("checkout_ids", id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CartError::from)?;
        let (cart, applied) = self.carts.get_consistent(&user, &checkouts).await?;
        let mut answer = to_proto(cart)?;
        answer.applied_checkout_ids = applied.iter().map(ToString::to_string).collect();
        Ok(Response::new(answer))
    }

    async fn add_item(
        &self,
        request: Request<pb::AddItemRequest>,
    ) -> Result<Response<pb::Cart>, Status> {
        let add = AddItem::try_from(request.get_ref()).map_err(CartError::from)?;
        respond(self.carts.add(&add).await)
    }

    async fn update_item(
        &self,
        request: Request<pb::UpdateItemRequest>,
    ) -> Result<Response<pb::Cart>, Status> {
        let update = UpdateItem::try_from(request.get_ref()).map_err(CartError::from)?;
        respond(self.carts.update(&update).await)
    }

    async fn remove_item(
        &self,
        request: Request<pb::RemoveItemRequest>,
    ) -> Result<Response<pb::Cart>, Status> {
        let remove = RemoveItem::try_from(request.get_ref()).map_err(CartError::from)?;
        respond(self.carts.remove(&remove).await)
    }

    async fn clear_cart(
        &self,
        request: Request<pb::ClearCartRequest>,
    ) -> Result<Response<pb::Cart>, Status> {
        let user = user_id(&request.get_ref().user_id)?;
        respond(self.carts.clear(&user).await)
    }
}
