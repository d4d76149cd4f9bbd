-- The prompt rule packs a tenant opted into (server/domain/prompt_rules/packs.toml), each with an
-- optional action for all its rules: [{"pack": "injection"}, {"pack": "jailbreak", "action": "flag"}].
-- Empty: no pack, no scan.
ALTER TABLE tenants ADD COLUMN prompt_rule_packs jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(prompt_rule_packs) = 'array');
