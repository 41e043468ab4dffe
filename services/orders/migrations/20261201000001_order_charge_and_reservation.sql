-- The charge and the stock reservation of the checkout an order came from, as
-- CheckoutCompleted told them. OrderStatusChanged carries them so that a
-- cancellation can be refunded and restocked by the services that own them.
-- NULL for orders recorded before they were kept (their checkout id still
-- identifies both).
ALTER TABLE orders
    ADD COLUMN payment_id     UUID,
    ADD COLUMN reservation_id UUID;
