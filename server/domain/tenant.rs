//! Tenant rules: slugs, status and time zones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantRuleError {
    #[error("slug `{0}` is invalid: use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen")]
    InvalidSlug(String),
    #[error("name must be 1 to 200 characters")]
    InvalidName,
    #[error("time zone `{0}` is not an IANA time zone name (e.g. Europe/Berlin, UTC)")]
    InvalidTimeZone(String),
}

/// URL-safe tenant handle, unique across the installation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(value: &str) -> Result<Slug, TenantRuleError> {
        let ok = (1..=63).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if ok { Ok(Slug(value.to_owned())) } else { Err(TenantRuleError::InvalidSlug(value.chars().take(80).collect())) }
    }

    /// Derives a slug from a display name: "Acme Corp." → "acme-corp".
    pub fn from_name(name: &str) -> Result<Slug, TenantRuleError> {
        let mut slug = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let trimmed: String = slug.trim_end_matches('-').chars().take(63).collect();
        Slug::parse(trimmed.trim_end_matches('-')).map_err(|_| TenantRuleError::InvalidSlug(name.chars().take(80).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Slug {
    type Error = TenantRuleError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Slug::parse(&s)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}

pub fn validate_tenant_name(name: &str) -> Result<&str, TenantRuleError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TenantRuleError::InvalidName);
    }
    Ok(name)
}

/// An IANA time zone; quota periods (day, calendar month) are computed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl TimeZone {
    pub fn parse(value: &str) -> Result<TimeZone, TenantRuleError> {
        chrono_tz::Tz::from_str(value).map(TimeZone).map_err(|_| TenantRuleError::InvalidTimeZone(value.chars().take(80).collect()))
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_from_name() {
        assert_eq!(Slug::from_name("Acme").unwrap().as_str(), "acme");
        assert_eq!(Slug::from_name("  Acme Corp. (EU) ").unwrap().as_str(), "acme-corp-eu");
        assert!(Slug::from_name("!!!").is_err());
        assert!(Slug::from_name("日本").is_err());
    }

    #[test]
    fn slug_rules() {
        for ok in ["a", "acme", "acme-2", "0x"] {
            Slug::parse(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "Acme", "a_b", "a b", &"a".repeat(64)] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_names_make_valid_slugs() {
        let s = Slug::from_name(&"ab-".repeat(40)).unwrap();
        assert!(s.as_str().len() <= 63 && !s.as_str().ends_with('-'));
    }

    #[test]
    fn time_zones() {
        assert_eq!(TimeZone::parse("Europe/Berlin").unwrap().name(), "Europe/Berlin");
        assert_eq!(TimeZone::parse("UTC").unwrap().name(), "UTC");
        assert!(TimeZone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(validate_tenant_name("  Acme ").unwrap(), "Acme");
        assert!(validate_tenant_name("").is_err());
        assert!(validate_tenant_name("a\u{7}b").is_err());
    }
}
