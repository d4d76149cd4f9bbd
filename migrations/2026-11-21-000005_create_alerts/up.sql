-- Alert rules and the durable outbox the AlertMailer drains (FOR UPDATE SKIP LOCKED).

CREATE TABLE alert_rules (
    id                  text PRIMARY KEY CHECK (id ~ '^alr_[A-Za-z0-9]{22}$'),
    -- NULL = a platform rule owned by operators (worker down, queue saturated).
    tenant_id           text REFERENCES tenants (id) ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('quota_threshold', 'worker_down', 'queue_saturated', 'error_rate', 'auth_failures')),
    -- Kind-specific parameters, e.g. {"percent": 80} or {"window_s": 300, "threshold": 0.05}.
    params              jsonb NOT NULL DEFAULT '{}',
    recipients          text[] NOT NULL DEFAULT '{}',
    enabled             boolean NOT NULL DEFAULT true,
    -- Minimum gap between two mails for the same rule and subject.
    cooldown_seconds    integer NOT NULL DEFAULT 3600 CHECK (cooldown_seconds >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_rules_tenant_id_idx ON alert_rules (tenant_id);

CREATE TABLE alert_outbox (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           text REFERENCES tenants (id) ON DELETE CASCADE,
    rule_id             text REFERENCES alert_rules (id) ON DELETE SET NULL,
    kind                text NOT NULL,
    -- Same key within the rule's cooldown = the same alert; a unique index deduplicates across instances.
    dedup_key           text NOT NULL,
    payload             jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    available_at        timestamptz NOT NULL DEFAULT now(),
    attempts            integer NOT NULL DEFAULT 0,
    sent_at             timestamptz,
    last_error          text,
    UNIQUE (dedup_key)
);
CREATE INDEX alert_outbox_pending_idx ON alert_outbox (available_at) WHERE sent_at IS NULL;
