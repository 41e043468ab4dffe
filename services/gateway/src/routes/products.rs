//! The catalog: `GET /api/v1/products` and `GET /api/v1/products/{id}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use storefront_proto::product::v1 as pb;

use crate::backends::BackendName;
use crate::catalog::IfNoneMatch;
use crate::input::{Page, Param, ProductId};
use crate::json::{ProductJson, ProductsJson};
use crate::problem::ApiError;
use crate::routes::AppState;

/// A page of the catalog, reused for `--gateway-catalog-ttl` (see [`crate::catalog`]).
pub async fn list(
    State(app): State<AppState>,
    page: Page,
    conditions: IfNoneMatch,
) -> Result<Response, ApiError> {
    let backends = app.backends.clone();
    app.catalog
        .page(page, &conditions, |page| async move {
            let request = pb::ListProductsRequest {
                page_size: page.size,
                page_token: page.token,
            };
            let answer = backends
                .product
                .call("ListProducts", request, |mut c, r| async move {
                    c.list_products(r).await
                })
                .await?;
            let json = ProductsJson::try_from(answer)?;
            serde_json::to_vec(&json)
                .map(Bytes::from)
                .map_err(|e| ApiError::bad_answer(BackendName::Product, e.to_string()))
        })
        .await
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
