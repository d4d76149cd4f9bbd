//! Named states stored in text columns: each is an enum here, written and read through one
//! mapping (`db::states`) that matches the column's CHECK constraint. Code compares variants,
//! never strings.

use std::fmt;
use std::str::FromStr;

use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

/// A stored state that is none of its enum's variants (the CHECK constraints make this a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a known {what}")]
pub struct UnknownState {
    pub what: &'static str,
    pub value: String,
}

macro_rules! named_state {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, diesel::AsExpression, diesel::FromSqlRow, utoipa::ToSchema)]
        #[diesel(sql_type = Text)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_state!(
    /// What a pool's workers serve.
    PoolKind, "pool kind" {
        /// OpenAI-compatible LLM servers (vLLM).
        Llm = "llm",
        /// Forced-alignment workers (batched).
        Aligner = "aligner",
    }
);

named_state!(
    /// Who owns a pool's definition: the management API, or the config file's `[[pools]]`.
    PoolSource, "pool source" {
        Api = "api",
        Config = "config",
    }
);

named_state!(
    /// A worker's administrative state (its health is the queue's business, not stored).
    WorkerState, "worker state" {
        Active = "active",
        /// Finishes what it has, takes nothing new.
        Draining = "draining",
        Removed = "removed",
    }
);

named_state!(
    /// An alignment job's life: queued → running → succeeded | failed | cancelled.
    JobStatus, "job status" {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

impl JobStatus {
    /// Still to be worked on (a runner may claim it).
    pub fn is_open(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

named_state!(
    /// A signing key's life: next (published) → active (signs) → retiring (verifies) → retired.
    KeyState, "signing key state" {
        Next = "next",
        Active = "active",
        Retiring = "retiring",
        Retired = "retired",
    }
);

named_state!(
    /// How urgent an alert is: `critical` pages (a pool with no healthy worker), `warning` needs a
    /// look (a worker down, a quota threshold), `info` is for the record (a test mail).
    Severity, "severity" {
        Critical = "critical",
        Warning = "warning",
        Info = "info",
    }
);

named_state!(
    /// Whether a tenant may use the platform.
    TenantStatus, "tenant status" {
        Active = "active",
        Disabled = "disabled",
    }
);

named_state!(
    /// What an IP rule does: `deny` refuses the network before authentication; `allow` exempts a
    /// platform network from bans, or (a tenant's rule) is where the tenant's credentials may be
    /// used from.
    RuleAction, "IP rule action" {
        Deny = "deny",
        Allow = "allow",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_text() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(*s));
        }
        assert_eq!("aligner".parse::<PoolKind>(), Ok(PoolKind::Aligner));
        let unknown = "gpu".parse::<PoolKind>().unwrap_err();
        assert_eq!(unknown.to_string(), "`gpu` is not a known pool kind");
    }
}
