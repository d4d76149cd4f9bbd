DROP TABLE token_revocations;
DROP TABLE signing_keys;
DROP TABLE api_keys;
DROP TABLE oauth_clients;
