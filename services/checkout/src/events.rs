//! The events a session's end announces: CheckoutCompleted and CheckoutFailed,
//! JSON payloads in CloudEvents records keyed by the user id.

use chrono::{SecondsFormat, Utc};
use storefront_proto::common::v1 as common;
use storefront_proto::events::v1 as pb;
use storefront_runtime::events::{Event, EventError, event_type};

use crate::domain::{LineItem, Session};

/// The `ce_source` of every checkout event.
pub const SOURCE: &str = "/storefront/checkout";

pub fn line_item(item: &LineItem) -> common::LineItem {
    common::LineItem {
        product_id: item.product_id,
        name: item.name.clone(),
        unit_price: Some(item.unit_price.into()),
        quantity: item.quantity.get(),
        line_total: Some(item.line_total.into()),
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn id_text(id: Option<uuid::Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// The CheckoutCompleted of a session that was just completed.
pub fn completed(session: &Session) -> Result<Event, EventError> {
    let payload = pb::CheckoutCompleted {
        checkout_id: session.id.to_string(),
        user_id: session.user_id.as_str().to_owned(),
        items: session.items.iter().map(line_item).collect(),
        total: Some(session.total.into()),
        payment_id: id_text(session.saga.payment_id),
        reservation_id: id_text(session.saga.reservation_id),
        shipping_address: session.shipping_address.clone(),
        completed_at: now(),
    };
    Event::new(
        event_type::CHECKOUT_COMPLETED,
        SOURCE,
        session.user_id.as_str(),
        &payload,
    )
}

/// The CheckoutFailed of a session that just failed.
pub fn failed(session: &Session) -> Result<Event, EventError> {
    let failure = session.saga.failure.as_ref();
    let payload = pb::CheckoutFailed {
        checkout_id: session.id.to_string(),
        user_id: session.user_id.as_str().to_owned(),
        reason: failure
            .map(|f| f.reason.as_str().to_owned())
            .unwrap_or_default(),
        detail: failure.map(|f| f.detail.clone()).unwrap_or_default(),
        failed_at: now(),
    };
    Event::new(
        event_type::CHECKOUT_FAILED,
        SOURCE,
        session.user_id.as_str(),
        &payload,
    )
}
