-- Alert delivery: who receives alerts, the conditions that are firing now (shared by every
-- instance, so each fires once and resolves once), and the outbox's delivery state.

CREATE TABLE alert_recipients (
    id                  text PRIMARY KEY CHECK (id ~ '^rcp_[A-Za-z0-9]{22}$'),
    email               text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- NULL = an on-call address for the platform; else a tenant's recipient, who receives only
    -- that tenant's alerts.
    tenant_id           text REFERENCES tenants (id) ON DELETE CASCADE,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alert_recipients_unique_idx ON alert_recipients (lower(email), coalesce(tenant_id, ''));
CREATE INDEX alert_recipients_tenant_id_idx ON alert_recipients (tenant_id);

-- One row per condition that fired and has not been resolved for long: `key` names the rule and
-- the object (`worker_down:wkr_…`). The evaluator of every instance updates it under a row lock.
CREATE TABLE alert_states (
    key                 text PRIMARY KEY,
    rule                text NOT NULL,
    tenant_id           text REFERENCES tenants (id) ON DELETE CASCADE,
    severity            text NOT NULL CHECK (severity IN ('critical', 'warning')),
    started_at          timestamptz NOT NULL,
    last_notified_at    timestamptz NOT NULL,
    notifications       integer NOT NULL DEFAULT 1,
    resolved_at         timestamptz,
    payload             jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_states_open_idx ON alert_states (rule) WHERE resolved_at IS NULL;

-- A row the mailer gave up on after its last attempt.
ALTER TABLE alert_outbox ADD COLUMN failed_at timestamptz;
ALTER TABLE alert_outbox ADD COLUMN severity text NOT NULL DEFAULT 'warning' CHECK (severity IN ('critical', 'warning', 'info'));
DROP INDEX alert_outbox_pending_idx;
CREATE INDEX alert_outbox_pending_idx ON alert_outbox (available_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- An operator's silence: alerts of `rule` (any rule when NULL) whose key contains `object` (any
-- object when NULL) are not mailed until `until`; they are recorded as silenced.
CREATE TABLE alert_silences (
    id                  text PRIMARY KEY CHECK (id ~ '^sil_[A-Za-z0-9]{22}$'),
    rule                text,
    object              text,
    until               timestamptz NOT NULL,
    reason              text NOT NULL DEFAULT '',
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_silences_until_idx ON alert_silences (until);
