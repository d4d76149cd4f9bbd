//! Request extractors: `Principal` (the authenticated `/v1` caller, set by `authenticate_v1`
//! before any body is read), `Manager` (the operator or tenant admin behind a management-API
//! token) and `OptionalJson` (a JSON body that may be left out, but not malformed).

pub mod manager;
pub mod optional_json;
pub mod principal;

pub use manager::{Manager, authenticate_management};
pub use optional_json::OptionalJson;
pub use principal::{Principal, authenticate_v1};
