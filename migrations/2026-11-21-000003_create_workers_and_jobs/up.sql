-- GPU worker pools, their workers, and durable async jobs (long-audio alignment).

CREATE TABLE worker_pools (
    id                    text PRIMARY KEY CHECK (id ~ '^pool_[A-Za-z0-9]{22}$'),
    name                  text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind                  text NOT NULL CHECK (kind IN ('llm', 'aligner')),
    -- Model names served by every worker of the pool (e.g. Qwen/Qwen2.5-7B-Instruct).
    models                text[] NOT NULL CHECK (cardinality(models) > 0),
    queue_deadline_ms     integer NOT NULL DEFAULT 30000 CHECK (queue_deadline_ms > 0),
    max_queue_per_tenant  integer NOT NULL DEFAULT 256 CHECK (max_queue_per_tenant > 0),
    max_queue_total       integer NOT NULL DEFAULT 2048 CHECK (max_queue_total > 0),
    -- Aligner batching (ignored for llm pools).
    batch_max_items       integer NOT NULL DEFAULT 16 CHECK (batch_max_items > 0),
    batch_max_audio_ms    integer NOT NULL DEFAULT 600000 CHECK (batch_max_audio_ms > 0),
    batch_max_wait_ms     integer NOT NULL DEFAULT 50 CHECK (batch_max_wait_ms >= 0),
    -- 'config' pools are (re)declared by the config file at start-up; 'api' pools by the management API.
    source                text NOT NULL DEFAULT 'api' CHECK (source IN ('config', 'api')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workers (
    id                    text PRIMARY KEY CHECK (id ~ '^wkr_[A-Za-z0-9]{22}$'),
    pool_id               text NOT NULL REFERENCES worker_pools (id) ON DELETE CASCADE,
    base_url              text NOT NULL CHECK (base_url ~ '^https?://'),
    -- Upstream API key sealed with the master key, like signing keys.
    api_key_sealed        bytea,
    slots                 integer NOT NULL DEFAULT 8 CHECK (slots BETWEEN 1 AND 4096),
    state                 text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'removed')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pool_id, base_url)
);

CREATE TABLE jobs (
    id                    text PRIMARY KEY CHECK (id ~ '^job_[A-Za-z0-9]{22}$'),
    tenant_id             text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    credential_id         text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('alignment')),
    status                text NOT NULL DEFAULT 'queued'
                          CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    idempotency_key       text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    model                 text NOT NULL,
    -- Request parameters (language, transcript); the audio lives under the data folder at audio_path.
    params                jsonb NOT NULL DEFAULT '{}',
    audio_path            text,
    audio_duration_ms     bigint CHECK (audio_duration_ms >= 0),
    chunks_total          integer NOT NULL DEFAULT 0 CHECK (chunks_total >= 0),
    chunks_done           integer NOT NULL DEFAULT 0 CHECK (chunks_done >= 0),
    result                jsonb,
    error                 jsonb,
    attempts              integer NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    finished_at           timestamptz,
    expires_at            timestamptz,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX jobs_runnable_idx ON jobs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_tenant_id_created_at_idx ON jobs (tenant_id, created_at DESC);
