DROP TABLE alert_silences;
DROP INDEX alert_outbox_pending_idx;
CREATE INDEX alert_outbox_pending_idx ON alert_outbox (available_at) WHERE sent_at IS NULL;
ALTER TABLE alert_outbox DROP COLUMN severity;
ALTER TABLE alert_outbox DROP COLUMN failed_at;
DROP TABLE alert_states;
DROP TABLE alert_recipients;
