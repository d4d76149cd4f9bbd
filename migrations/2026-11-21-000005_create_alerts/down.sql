DROP TABLE alert_outbox;
DROP TABLE alert_rules;
