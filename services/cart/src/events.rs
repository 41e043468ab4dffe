//! CheckoutCompleted, consumed: the checked-out lines leave the buyer's cart,
//! once per checkout however often the event is delivered. Lines added after
//! the checkout stay.

use storefront_proto::events::v1::CheckoutCompleted;
use storefront_runtime::StartError;
use storefront_runtime::consumer::{EventConsumer, EventHandler, HandlerError};
use storefront_runtime::events::{Event, event_type};

use crate::carts::Carts;
use crate::config::Config;
use crate::domain::CheckedOut;
use crate::store::Clearing;

/// Joins the cart's consumer group, or `None` when Kafka is switched off.
pub fn consumer(config: &Config) -> Result<Option<EventConsumer>, StartError> {
    if config.kafka_bootstrap.is_empty() {
        tracing::info!("no Kafka bootstrap servers: checked-out lines are not cleared from carts");
        return Ok(None);
    }
    EventConsumer::with_settings(
        &config.kafka_bootstrap,
        &config.kafka_group,
        &[config.kafka_topic.as_str()],
        &config.consumer_settings(),
    )
    .map(Some)
    .map_err(|e| StartError::Config(format!("Kafka consumer: {e}")))
}

pub struct CartClearing {
    carts: Carts,
}

impl CartClearing {
    pub fn new(carts: Carts) -> Self {
        CartClearing { carts }
    }
}

impl EventHandler for CartClearing {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != event_type::CHECKOUT_COMPLETED {
            return Ok(());
        }
        let payload: CheckoutCompleted = event
            .decode()
            .map_err(|e| HandlerError::Reject(e.to_string()))?;
        let checkout = CheckedOut::try_from(&payload)
            .map_err(|e| HandlerError::Reject(format!("CheckoutCompleted {e}")))?;
        match self.carts.clear_checked_out(&checkout).await {
            Ok(clearing) => {
                metrics::counter!("cart_checkouts_processed_total", "outcome" => outcome(clearing))
                    .increment(1);
                tracing::info!(
                    checkout_id = %checkout.checkout_id,
                    user_id = %checkout.user_id,
                    outcome = outcome(clearing),
                    "checkout applied to cart"
                );
                Ok(())
            }
            Err(error) => {
                Err(error.for_consumer(format_args!("CheckoutCompleted {}", checkout.checkout_id)))
            }
        }
    }
}

fn outcome(clearing: Clearing) -> &'static str {
    match clearing {
        Clearing::Cleared => "cleared",
        Clearing::NothingToClear => "nothing_to_clear",
        Clearing::AlreadyProcessed => "duplicate",
    }
}
