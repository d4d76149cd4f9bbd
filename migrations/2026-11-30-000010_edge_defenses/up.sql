-- Edge defenses: IP rules (a platform list kept by operators and one per tenant kept by its
-- admins) and temporary bans of source addresses that attack (docs/security.md).

CREATE TABLE ip_rules (
    id                  text PRIMARY KEY CHECK (id ~ '^ipr_[A-Za-z0-9]{22}$'),
    -- NULL = a platform rule; else the tenant's own.
    tenant_id           text REFERENCES tenants (id) ON DELETE CASCADE,
    -- Canonical CIDR text (`203.0.113.0/24`, `2001:db8::/32`; a bare address is a /32 or /128).
    cidr                text NOT NULL CHECK (length(cidr) BETWEEN 3 AND 64),
    -- `deny`: refused before authentication. `allow`: platform rules are never banned; a tenant
    -- with allow rules takes its credentials only from those networks.
    action              text NOT NULL CHECK (action IN ('deny', 'allow')),
    note                text NOT NULL DEFAULT '' CHECK (length(note) <= 200),
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ip_rules_unique_idx ON ip_rules (coalesce(tenant_id, ''), cidr, action);
CREATE INDEX ip_rules_tenant_id_idx ON ip_rules (tenant_id);

-- One row per ban. Every instance reads the active ones once a second; the number of bans of an
-- address in the last day sets the next one's length.
CREATE TABLE ip_bans (
    id                  bigserial PRIMARY KEY,
    ip                  text NOT NULL CHECK (length(ip) BETWEEN 2 AND 45),
    reason              text NOT NULL CHECK (reason IN ('request_rate', 'auth_failures', 'client_errors')),
    level               integer NOT NULL CHECK (level >= 0),
    observed            bigint NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    until               timestamptz NOT NULL,
    lifted_at           timestamptz,
    lifted_by           text
);
CREATE INDEX ip_bans_active_idx ON ip_bans (until) WHERE lifted_at IS NULL;
CREATE INDEX ip_bans_ip_idx ON ip_bans (ip, started_at);
