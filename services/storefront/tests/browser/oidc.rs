//! Sign-in through the OIDC provider's own login page (`hack/oidc`,
//! `STOREFRONT_OIDC_PROVIDER`): the button `#oidc-sign-in`, the provider's
//! form (alice / storefront-test), back at `/auth/callback` signed in as
//! "Alice Example", sign-out through the provider's end-session endpoint.
//!
//! Its tests are being written separately (issue 13's OIDC piece) and go
//! here, using `crate::harness` and `crate::steps` like the others.
