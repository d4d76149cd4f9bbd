-- Origins whose browser pages may call /v1 and /oauth2/token with this tenant's credentials
-- (CORS). Empty: none (the default).
ALTER TABLE tenants ADD COLUMN cors_origins text[] NOT NULL DEFAULT '{}';
