-- Tables that grow with traffic, partitioned by month from day one. The application creates partitions
-- ahead of time and retention drops whole partitions (server/db/partitions.rs); never a mass DELETE.
-- Rows stay lean: ids, numbers, short codes.

-- One row per (tenant, credential, model, minute), upserted in batches by the QuotaAccountant.
CREATE TABLE usage_rollups (
    minute              timestamptz NOT NULL,
    tenant_id           text NOT NULL,
    credential_id       text NOT NULL,
    model               text NOT NULL,
    requests            bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,
    prompt_tokens       bigint NOT NULL DEFAULT 0,
    completion_tokens   bigint NOT NULL DEFAULT 0,
    audio_ms            bigint NOT NULL DEFAULT 0,
    queue_wait_ms_sum   bigint NOT NULL DEFAULT 0,
    latency_ms_sum      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tenant_id, credential_id, model),
    CHECK (minute = date_trunc('minute', minute))
) PARTITION BY RANGE (minute);
CREATE INDEX usage_rollups_tenant_minute_idx ON usage_rollups (tenant_id, minute);

-- Optional per-request usage events (off by default).
CREATE TABLE usage_events (
    occurred_at         timestamptz NOT NULL,
    id                  uuid NOT NULL,
    tenant_id           text NOT NULL,
    credential_id       text NOT NULL,
    model               text NOT NULL,
    status              smallint NOT NULL,
    prompt_tokens       integer NOT NULL DEFAULT 0,
    completion_tokens   integer NOT NULL DEFAULT 0,
    audio_ms            integer NOT NULL DEFAULT 0,
    queue_wait_ms       integer NOT NULL DEFAULT 0,
    latency_ms          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (occurred_at, id)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX usage_events_tenant_idx ON usage_events (tenant_id, occurred_at);

CREATE TABLE audit_events (
    occurred_at         timestamptz NOT NULL DEFAULT now(),
    -- UUIDv7: time-ordered, so (occurred_at, id) is a stable pagination cursor.
    id                  uuid NOT NULL,
    -- NULL for platform-level events (operator actions, unknown clients).
    tenant_id           text,
    actor_kind          text NOT NULL CHECK (actor_kind IN ('operator', 'tenant_admin', 'client', 'api_key', 'system', 'anonymous')),
    actor_id            text,
    action              text NOT NULL,
    target_kind         text,
    target_id           text,
    outcome             text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    source_ip           text,
    request_id          text,
    -- Small structured context; never a secret, token, key or prompt.
    details             jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (occurred_at, id)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX audit_events_tenant_idx ON audit_events (tenant_id, occurred_at DESC);
CREATE INDEX audit_events_action_idx ON audit_events (action, occurred_at DESC);
