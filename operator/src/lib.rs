//! The Storefront operator: the `Storefront` custom resource
//! ([`crd`]), the objects it is reconciled into ([`children`], pure
//! builders), the reconcile loop ([`controller`]) with its PostgreSQL
//! ([`postgres`]) and Kafka ([`topics`]) provisioning, and leader election
//! over a Lease ([`leader`]).

pub mod children;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod names;
pub mod postgres;
pub mod run;
pub mod topics;

pub use crd::{Storefront, StorefrontSpec, StorefrontStatus};
