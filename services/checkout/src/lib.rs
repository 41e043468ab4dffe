//! The checkout service (being written).
