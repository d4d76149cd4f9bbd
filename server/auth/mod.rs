//! Authentication: the OAuth2 client-credentials authorization server's machinery (signing
//! keys, JWT access tokens, client secrets, API keys, management tokens, brute-force limits) and
//! password hashing for people. HTTP handlers live in `routes`; this module knows no actix.

pub mod failures;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod password;
pub mod rotation;
pub mod seal;
pub mod secrets;
pub mod service;
