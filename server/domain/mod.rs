//! Domain types and rules: newtype ids, validated values, business rules. No actix, no diesel:
//! everything here is plain Rust, unit-tested inline.

pub mod ids;
pub mod net;
pub mod scope;
pub mod tenant;

pub use ids::*;
pub use net::*;
pub use scope::*;
pub use tenant::*;
