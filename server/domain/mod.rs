//! Domain types and rules: newtype ids, validated values, named states, business rules. No actix
//! and no queries: plain Rust, unit-tested inline (named states derive diesel's column mapping).

pub mod alignment;
pub mod ids;
pub mod net;
pub mod prompt_rules;
pub mod scope;
pub mod slots;
pub mod states;
pub mod tenant;

pub use alignment::*;
pub use ids::*;
pub use net::*;
pub use scope::*;
pub use slots::*;
pub use states::*;
pub use tenant::*;
