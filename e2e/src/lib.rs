//! Support for the end-to-end tests on the real node of the local test
//! cluster (`hack/cluster/node.sh`): the charts installed with the cluster's
//! pinned helm, namespaces whose pods run on the real node, the shop's REST
//! API reached at its gateway Service's cluster IP (this host routes the
//! Service range onto the node's bridge), and an OTLP receiver on the
//! bridge address that the shop's pods export their spans to.
//!
//! The images the tests install are the ones `hack/cluster/images.sh`
//! imported into the node: this checkout's `storefront` (tags `dev` and
//! `dev-next`) and `storefront-operator` (`dev`), and the test stand-ins for
//! the managed stores (hack/images/README.md).

#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod cluster;
pub mod otlp;
pub mod shop;

/// The real node's address on its bridge (hack/cluster/node.sh).
pub const NODE_IP: &str = "10.244.0.1";
/// The real node's name.
pub const NODE_NAME: &str = "storefront-node-0";

/// Images imported by hack/cluster/images.sh.
pub mod images {
    pub const SHOP_REPOSITORY: &str = "docker.io/library/storefront";
    pub const SHOP_TAG: &str = "dev";
    pub const SHOP_NEXT_TAG: &str = "dev-next";
    pub const OPERATOR_REPOSITORY: &str = "docker.io/library/storefront-operator";
    pub const OPERATOR_TAG: &str = "dev";
    pub const POSTGRES: &str = "docker.io/storefront-test/postgres:15";
    pub const REDIS: &str = "docker.io/storefront-test/redis:7";
    pub const KAFKA: &str = "docker.io/storefront-test/kafka:4";
}
