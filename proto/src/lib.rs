//! The gRPC contracts of every Storefront service and the event payloads, as
//! generated Rust types. Services share nothing but these and the runtime crate.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]

/// The encoded `FileDescriptorSet` of every proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/storefront_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("storefront.common.v1");
    }
}
pub mod product {
    pub mod v1 {
        tonic::include_proto!("storefront.product.v1");
    }
}
pub mod inventory {
    pub mod v1 {
        tonic::include_proto!("storefront.inventory.v1");
    }
}
pub mod payment {
    pub mod v1 {
        tonic::include_proto!("storefront.payment.v1");
    }
}
pub mod cart {
    pub mod v1 {
        tonic::include_proto!("storefront.cart.v1");
    }
}
pub mod checkout {
    pub mod v1 {
        tonic::include_proto!("storefront.checkout.v1");
    }
}
pub mod orders {
    pub mod v1 {
        tonic::include_proto!("storefront.orders.v1");
    }
}
pub mod events {
    pub mod v1 {
        tonic::include_proto!("storefront.events.v1");
    }
}

pub use common::v1::{LineItem, Money, ShippingAddress};
