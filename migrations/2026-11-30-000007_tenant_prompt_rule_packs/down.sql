ALTER TABLE tenants DROP COLUMN prompt_rule_packs;
