//! The ProductService handlers: parse the request, ask the catalog, translate back.

use storefront_proto::product::v1 as pb;
use storefront_proto::product::v1::product_service_server::ProductService;
use tonic::{Request, Response, Status};

use crate::domain::{self, PageRequest, Product, ProductId};
use crate::error::CatalogError;
use crate::store::Catalog;

pub struct ProductApi {
    catalog: Catalog,
}

impl ProductApi {
    pub fn new(catalog: Catalog) -> Self {
        ProductApi { catalog }
    }
}

fn to_proto(product: Product) -> pb::Product {
    pb::Product {
        id: product.id.get(),
        name: product.name,
        description: product.description,
        price: Some(product.price.into()),
        image_url: product.image_url,
    }
}

#[tonic::async_trait]
impl ProductService for ProductApi {
    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let id = ProductId::parse("product_id", request.get_ref().product_id)
            .map_err(CatalogError::from)?;
        let product = self.catalog.get(id).await?;
        Ok(Response::new(to_proto(product)))
    }

    async fn get_products(
        &self,
        request: Request<pb::GetProductsRequest>,
    ) -> Result<Response<pb::GetProductsResponse>, Status> {
        let ids = domain::parse_batch("product_ids", &request.get_ref().product_ids)
            .map_err(CatalogError::from)?;
        let found = self.catalog.get_many(&ids).await?;
        let mut response = pb::GetProductsResponse::default();
        for (id, product) in ids.into_iter().zip(found) {
            match product {
                Some(product) => response.products.push(to_proto(product)),
                None => response.missing_ids.push(id.get()),
            }
        }
        Ok(Response::new(response))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let request = request.get_ref();
        let page = PageRequest::parse(request.page_size, &request.page_token)
            .map_err(CatalogError::from)?;
        let (products, more) = self.catalog.list(page).await?;
        let next_page_token = match products.last() {
            Some(last) if more => last.id.get().to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListProductsResponse {
            products: products.into_iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn validate_products(
        &self,
        request: Request<pb::ValidateProductsRequest>,
    ) -> Result<Response<pb::ValidateProductsResponse>, Status> {
        let ids = domain::parse_batch("product_ids", &request.get_ref().product_ids)
            .map_err(CatalogError::from)?;
        let found = self.catalog.get_many(&ids).await?;
        let results: Vec<_> = ids
            .into_iter()
            .zip(found)
            .map(|(id, product)| pb::ProductValidation {
                product_id: id.get(),
                exists: product.is_some(),
                product: product.map(to_proto),
            })
            .collect();
        let all_exist = results.iter().all(|r| r.exists);
        Ok(Response::new(pb::ValidateProductsResponse {
            results,
            all_exist,
        }))
    }
}
