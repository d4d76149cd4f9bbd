-- Credentials: OAuth2 clients, API keys, token signing keys and revocations (docs/auth.md).
-- Secrets are never stored: only HMAC-SHA256(pepper, secret). Private keys are stored AEAD-encrypted.

CREATE TABLE oauth_clients (
    id                   text PRIMARY KEY CHECK (id ~ '^cli_[A-Za-z0-9]{22}$'),
    tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    secret_hash          bytea NOT NULL CHECK (length(secret_hash) = 32),
    secret_expires_at    timestamptz,
    -- The previous secret stays valid until rotated_expires_at (rotation with grace; at most two secrets).
    rotated_secret_hash  bytea CHECK (length(rotated_secret_hash) = 32),
    rotated_expires_at   timestamptz,
    allowed_scopes       text[] NOT NULL DEFAULT '{}',
    ip_allowlist         text[] NOT NULL DEFAULT '{}',
    token_ttl_seconds    integer NOT NULL DEFAULT 900 CHECK (token_ttl_seconds BETWEEN 300 AND 3600),
    -- Tokens issued before this instant are rejected ("revoke all tokens of a client").
    tokens_valid_after   timestamptz NOT NULL DEFAULT 'epoch',
    -- Per-credential overrides of the plan's rate limits (NULL = plan value).
    requests_per_minute  integer CHECK (requests_per_minute > 0),
    tokens_per_minute    bigint  CHECK (tokens_per_minute > 0),
    audio_seconds_per_minute integer CHECK (audio_seconds_per_minute > 0),
    concurrent_requests  integer CHECK (concurrent_requests > 0),
    created_by           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at          timestamptz,
    CHECK ((rotated_secret_hash IS NULL) = (rotated_expires_at IS NULL))
);
CREATE INDEX oauth_clients_tenant_id_idx ON oauth_clients (tenant_id);

CREATE TABLE api_keys (
    -- The 12-character key id embedded in the key itself: gth_{env}_{id}_{secret}{crc}.
    id                   text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{12}$'),
    tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    environment          text NOT NULL DEFAULT 'live' CHECK (environment IN ('live', 'test')),
    secret_hash          bytea NOT NULL CHECK (length(secret_hash) = 32),
    last4                text NOT NULL CHECK (length(last4) = 4),
    scopes               text[] NOT NULL DEFAULT '{}',
    ip_allowlist         text[] NOT NULL DEFAULT '{}',
    requests_per_minute  integer CHECK (requests_per_minute > 0),
    tokens_per_minute    bigint  CHECK (tokens_per_minute > 0),
    audio_seconds_per_minute integer CHECK (audio_seconds_per_minute > 0),
    concurrent_requests  integer CHECK (concurrent_requests > 0),
    created_by           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz,
    revoked_at           timestamptz,
    last_used_at         timestamptz,
    -- Set on the new key when a key is rolled: the key it replaced.
    rolled_from          text REFERENCES api_keys (id) ON DELETE SET NULL
);
CREATE INDEX api_keys_tenant_id_idx ON api_keys (tenant_id);

CREATE TABLE signing_keys (
    -- RFC 7638 JWK thumbprint.
    kid                  text PRIMARY KEY CHECK (length(kid) BETWEEN 1 AND 64),
    alg                  text NOT NULL CHECK (alg IN ('ES256', 'RS256')),
    state                text NOT NULL CHECK (state IN ('next', 'active', 'retiring', 'retired')),
    -- PKCS#8 DER sealed with the master key (nonce || ciphertext || tag).
    private_key_sealed   bytea NOT NULL,
    public_jwk           jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    activated_at         timestamptz,
    retiring_at          timestamptz,
    retired_at           timestamptz
);
-- At most one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

-- jti denylist; rows are purged once the token would have expired anyway.
CREATE TABLE token_revocations (
    jti                  text PRIMARY KEY CHECK (length(jti) BETWEEN 1 AND 64),
    tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id            text NOT NULL,
    revoked_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    reason               text NOT NULL DEFAULT 'revoked'
);
CREATE INDEX token_revocations_expires_at_idx ON token_revocations (expires_at);
CREATE INDEX token_revocations_revoked_at_idx ON token_revocations (revoked_at);
