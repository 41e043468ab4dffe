-- At most one checkout in flight per user's cart, whatever the idempotency
-- keys: a second concurrent checkout fails on this index and is answered with
-- the first one's id (409 checkout_in_progress).
--
-- NEEDS_ATTENTION ends a session that a participant answered in a way the
-- saga has no rule for (money or stock in an unknown state): recovery no
-- longer retakes it, metrics count it, and admins list it for a person.
ALTER TABLE checkout_sessions DROP CONSTRAINT checkout_sessions_status_check;
ALTER TABLE checkout_sessions ADD CONSTRAINT checkout_sessions_status_check
    CHECK (status IN ('INITIATED', 'INVENTORY_RESERVED', 'PAYMENT_PENDING',
                      'PAYMENT_COMPLETED', 'COMPLETED', 'FAILED', 'NEEDS_ATTENTION'));
ALTER TABLE checkout_sessions ADD COLUMN attention_reason TEXT;
ALTER TABLE checkout_sessions ADD CONSTRAINT checkout_sessions_attention CHECK (
    status <> 'NEEDS_ATTENTION' OR attention_reason IS NOT NULL);

CREATE UNIQUE INDEX checkout_sessions_one_in_flight ON checkout_sessions (user_id)
    WHERE status NOT IN ('COMPLETED', 'FAILED', 'NEEDS_ATTENTION');

DROP INDEX checkout_sessions_unfinished;
CREATE INDEX checkout_sessions_unfinished ON checkout_sessions (updated_at)
    WHERE status NOT IN ('COMPLETED', 'FAILED', 'NEEDS_ATTENTION');
-- The admins' list of sessions that need a person.
CREATE INDEX checkout_sessions_needing_attention ON checkout_sessions (updated_at)
    WHERE status = 'NEEDS_ATTENTION';
