//! Newtype ids: a short type prefix and 22 random base62 characters (~131 bits), e.g.
//! `ten_4Qx…`. The prefix makes ids self-describing in logs and keeps kinds disjoint (a client id
//! can never be mistaken for a tenant id); the alphabet needs no escaping anywhere.

use std::fmt;
use std::str::FromStr;

use rand::RngExt;
use rand::distr::Alphanumeric;

/// Number of random characters after the prefix.
pub const ID_RANDOM_LEN: usize = 22;

/// `len` characters from `[A-Za-z0-9]`, from the thread-local CSPRNG.
pub fn random_base62(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected {prefix}_ followed by 22 letters or digits)")]
pub struct InvalidId {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

fn is_valid(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| rest.len() == ID_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(format!("{}_{}", $prefix, random_base62(ID_RANDOM_LEN)))
            }

            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                if is_valid(value, $prefix) {
                    Ok($name(value.to_owned()))
                } else {
                    Err(InvalidId { kind: $kind, prefix: $prefix, value: value.chars().take(64).collect() })
                }
            }

            /// For values read back from the database, whose CHECK constraint already holds.
            pub fn from_trusted(value: String) -> Self {
                $name(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

define_id!(
    /// A tenant: the unit of isolation. Every tenant-scoped query takes one.
    TenantId, "ten", "tenant");
define_id!(PlanId, "pln", "plan");
define_id!(OperatorId, "opr", "operator");
define_id!(AdminId, "adm", "tenant admin");
define_id!(ClientId, "cli", "OAuth2 client");
define_id!(PoolId, "pool", "worker pool");
define_id!(WorkerId, "wkr", "worker");
define_id!(JobId, "job", "job");
define_id!(AlertRuleId, "alr", "alert rule");
define_id!(RecipientId, "rcp", "alert recipient");
define_id!(SilenceId, "sil", "alert silence");
define_id!(IpRuleId, "ipr", "IP rule");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = TenantId::generate();
        assert!(id.as_str().starts_with("ten_"));
        assert_eq!(id.as_str().len(), 4 + ID_RANDOM_LEN);
        assert_eq!(TenantId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn ids_of_another_kind_are_refused() {
        let client = ClientId::generate();
        assert!(TenantId::parse(client.as_str()).is_err());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "ten_", "ten_short", "ten_../../etc/passwd/aaaaaaaa", "ten_aaaaaaaaaaaaaaaaaaaaa!", "TEN_aaaaaaaaaaaaaaaaaaaaaa"] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_do_not_repeat() {
        let a: std::collections::HashSet<_> = (0..1000).map(|_| TenantId::generate()).collect();
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<TenantId>("\"ten_x\"").is_err());
        let id = TenantId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
    }
}
