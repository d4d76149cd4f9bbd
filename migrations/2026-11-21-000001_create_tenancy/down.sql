DROP TABLE management_tokens;
DROP TABLE admin_sessions;
DROP TABLE tenant_admins;
DROP TABLE operators;
DROP TABLE tenants;
DROP TABLE plans;
