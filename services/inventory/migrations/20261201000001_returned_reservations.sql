-- RETURNED: a confirmed reservation whose order was cancelled; its stock is
-- back on hand. The status is what makes the return happen once.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('PENDING', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'RETURNED'));
