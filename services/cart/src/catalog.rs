//! The product service as the cart sees it: whether a product exists, and
//! what it is called and costs right now.

use std::time::Duration;

use storefront_proto::product::v1 as pb;
use storefront_proto::product::v1::product_service_client::ProductServiceClient;
use storefront_runtime::client::TracedChannel as Channel;
use storefront_runtime::{Money, StartError};
use tonic::Code;

use crate::domain::{Product, ProductId};
use crate::error::CartError;

#[derive(Clone)]
pub struct Catalog {
    products: ProductServiceClient<Channel>,
}

impl Catalog {
    /// A lazily connected client; every call fails after `deadline`.
    pub fn connect(url: &str, deadline: Duration) -> Result<Self, StartError> {
        let channel = storefront_runtime::client::channel(url, deadline)?;
        Ok(Catalog {
            products: ProductServiceClient::new(channel),
        })
    }

    pub async fn product(&self, id: ProductId) -> Result<Product, CartError> {
        let answer = self
            .products
            .clone()
            .get_product(pb::GetProductRequest {
                product_id: id.get(),
            })
            .await;
        let product = match answer {
            Ok(product) => product.into_inner(),
            Err(status) => return Err(failure(id, &status)),
        };
        let price = Money::from_proto("price", product.price.as_ref())
            .map_err(|e| CartError::ProductService(format!("product {id}: {e}")))?;
        Ok(Product {
            id,
            name: product.name,
            price,
        })
    }
}

fn failure(id: ProductId, status: &tonic::Status) -> CartError {
    match status.code() {
        Code::NotFound => CartError::ProductNotFound(id),
        Code::DeadlineExceeded => CartError::ProductUnavailable {
            code: Code::DeadlineExceeded,
            message: format!("no answer in time for product {id}"),
        },
        Code::Unavailable | Code::ResourceExhausted | Code::Cancelled | Code::Aborted => {
            CartError::ProductUnavailable {
                code: Code::Unavailable,
                message: format!("unavailable: {}", status.message()),
            }
        }
        code => CartError::ProductService(format!("{code:?}: {}", status.message())),
    }
}
