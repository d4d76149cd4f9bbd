//! OAuth2 scopes (docs/auth.md, scopes). Grantable to a credential = its allowed scopes ∩ its
//! tenant's plan entitlements. `oauth2:introspect` is a client capability (introspect other
//! clients' tokens in the same tenant), never placed in an access token.

use std::collections::BTreeSet;
use std::fmt;

pub const MODELS_READ: &str = "models:read";
pub const CHAT_COMPLETIONS: &str = "chat:completions";
pub const AUDIO_ALIGN: &str = "audio:align";
pub const INTROSPECT: &str = "oauth2:introspect";

/// Scopes that can appear in access tokens and API keys.
pub const TOKEN_SCOPES: [&str; 3] = [CHAT_COMPLETIONS, AUDIO_ALIGN, MODELS_READ];

/// A set of scopes, rendered as one space-delimited string (RFC 6749 §3.3, RFC 9068 §2.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}` (known: chat:completions, audio:align, models:read)")]
pub struct UnknownScope(pub String);

impl Scopes {
    /// Parses a space-delimited list of token scopes; unknown names are errors.
    pub fn parse(value: &str) -> Result<Scopes, UnknownScope> {
        Self::parse_allowing(value, &TOKEN_SCOPES)
    }

    /// Like `parse`, also accepting client capabilities (`oauth2:introspect`).
    pub fn parse_client(value: &str) -> Result<Scopes, UnknownScope> {
        Self::parse_allowing(value, &[CHAT_COMPLETIONS, AUDIO_ALIGN, MODELS_READ, INTROSPECT])
    }

    fn parse_allowing(value: &str, known: &[&str]) -> Result<Scopes, UnknownScope> {
        let mut set = BTreeSet::new();
        for s in value.split([' ', ',']).filter(|s| !s.is_empty()) {
            if !known.contains(&s) {
                return Err(UnknownScope(s.chars().take(64).collect()));
            }
            set.insert(s.to_owned());
        }
        Ok(Scopes(set))
    }

    /// From stored values, dropping anything unknown.
    pub fn from_stored(values: &[String]) -> Scopes {
        Scopes(values.iter().filter(|v| TOKEN_SCOPES.contains(&v.as_str()) || v.as_str() == INTROSPECT).cloned().collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersect(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).cloned().collect())
    }

    /// Only the scopes that may appear in a token.
    pub fn token_scopes(&self) -> Scopes {
        Scopes(self.0.iter().filter(|s| TOKEN_SCOPES.contains(&s.as_str())).cloned().collect())
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_render() {
        let s = Scopes::parse("models:read chat:completions models:read").unwrap();
        assert_eq!(s.to_string(), "chat:completions models:read");
        assert!(Scopes::parse("admin").is_err());
        assert!(Scopes::parse("oauth2:introspect").is_err(), "never in a token");
        assert!(Scopes::parse_client("oauth2:introspect models:read").unwrap().contains(INTROSPECT));
        assert_eq!(Scopes::parse("").unwrap(), Scopes::default());
    }

    #[test]
    fn set_operations() {
        let a = Scopes::parse("models:read chat:completions").unwrap();
        let b = Scopes::parse("models:read audio:align").unwrap();
        assert_eq!(a.intersect(&b).to_string(), "models:read");
        assert!(Scopes::parse("models:read").unwrap().is_subset(&a));
        assert_eq!(Scopes::parse_client("oauth2:introspect models:read").unwrap().token_scopes().to_string(), "models:read");
    }
}
