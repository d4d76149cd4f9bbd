//! Authentication primitives: password hashing for people (argon2id). Token issuing and
//! verification, JWKS, the key store, client secrets and API keys join this module with the auth
//! issue.

pub mod password;
