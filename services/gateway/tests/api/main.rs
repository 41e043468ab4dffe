//! The REST gateway tested black-box over real HTTP on a random loopback
//! port, in front of real tonic servers: the real product service (SQLite)
//! for the catalog, in-memory fakes of cart, checkout and orders for the
//! rest, each fake with a knob (down, slow) and a call counter.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod auth;
mod cart;
mod catalog;
mod checkout;
mod edge;
mod orders;
mod resilience;
mod support;
