ALTER TABLE tenants DROP COLUMN cors_origins;
