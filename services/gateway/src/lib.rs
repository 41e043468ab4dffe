//! The gateway service (being written).
