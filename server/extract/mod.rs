//! Request extractors: `Principal` (the authenticated `/v1` caller, set by `authenticate_v1`
//! before any body is read) and `Manager` (the operator or tenant admin behind a management-API
//! token).

pub mod manager;
pub mod principal;

pub use manager::{Manager, authenticate_management};
pub use principal::{Principal, authenticate_v1};
