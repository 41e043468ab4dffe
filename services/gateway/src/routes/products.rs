//! The catalog: `GET /api/v1/products` and `GET /api/v1/products/{id}`.

use axum::Json;
use axum::extract::State;
use storefront_proto::product::v1 as pb;

use crate::input::{Page, Param, ProductId};
use crate::json::{ProductJson, ProductsJson};
use crate::problem::ApiError;
use crate::routes::AppState;

pub async fn list(State(app): State<AppState>, page: Page) -> Result<Json<ProductsJson>, ApiError> {
    let request = pb::ListProductsRequest {
        page_size: page.size,
        page_token: page.token,
    };
    let answer = app
        .backends
        .product
        .call("ListProducts", request, |mut c, r| async move {
            c.list_products(r).await
        })
        .await?;
    Ok(Json(answer.try_into()?))
}

pub async fn get(
    State(app): State<AppState>,
    Param(id): Param<ProductId>,
) -> Result<Json<ProductJson>, ApiError> {
    let request = pb::GetProductRequest {
        product_id: id.get(),
    };
    let product = app
        .backends
        .product
        .call("GetProduct", request, |mut c, r| async move {
            c.get_product(r).await
        })
        .await?;
    Ok(Json(product.try_into()?))
}
