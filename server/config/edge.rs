//! `[edge]`: the defenses that run before authentication — temporary bans of source addresses
//! that attack (`[edge.bans]`) and how often instances share what they saw. The IP rules
//! themselves live in the database (managed through the API and the CLI).

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Milliseconds between rounds that share request counts through Redis and read the active
    /// bans and the IP rules from PostgreSQL (how fast a ban or rule reaches every instance).
    pub sync_ms: u64,
    pub bans: BanConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig { sync_ms: 1000, bans: BanConfig::default() }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BanConfig {
    /// Ban source addresses that pass a threshold below.
    pub enabled: bool,
    /// Seconds of the sliding window the thresholds count over.
    pub window_s: u64,
    /// Requests per window from one address (every route but health and metrics).
    pub max_requests: u32,
    /// Failed authentications (401 answers) per window from one address.
    pub max_auth_failures: u32,
    /// Other 4xx answers per window from one address (not counting 429s).
    pub max_client_errors: u32,
    /// Length of the first, second, third … ban of an address within `forgive_after_s`, in
    /// seconds; the last one repeats.
    pub durations_s: Vec<u64>,
    /// Seconds after which an address's earlier bans no longer lengthen the next one.
    pub forgive_after_s: u64,
    /// Networks (CIDRs) never banned, besides the platform's `allow` IP rules.
    pub allow: Vec<String>,
    /// Addresses tracked at once per instance; past it, new addresses are not counted until the
    /// window rolls (the memory bound under a flood from many addresses).
    pub max_tracked: usize,
}

impl Default for BanConfig {
    fn default() -> Self {
        BanConfig {
            enabled: true,
            window_s: 60,
            max_requests: 30_000,
            max_auth_failures: 30,
            max_client_errors: 600,
            durations_s: vec![60, 600, 3600],
            forgive_after_s: 86_400,
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_tracked: 100_000,
        }
    }
}

impl EdgeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(50..=60_000).contains(&self.sync_ms) {
            return Err(ConfigError::invalid("edge.sync_ms", "must be between 50 and 60000"));
        }
        let b = &self.bans;
        if !(1..=3600).contains(&b.window_s) {
            return Err(ConfigError::invalid("edge.bans.window_s", "must be between 1 and 3600"));
        }
        for (key, value) in [
            ("edge.bans.max_requests", b.max_requests),
            ("edge.bans.max_auth_failures", b.max_auth_failures),
            ("edge.bans.max_client_errors", b.max_client_errors),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if b.durations_s.is_empty() || b.durations_s.len() > 10 || b.durations_s.iter().any(|d| !(1..=30 * 86_400).contains(d)) {
            return Err(ConfigError::invalid("edge.bans.durations_s", "must list 1 to 10 durations of 1 s to 30 days"));
        }
        if !(1..=365 * 86_400).contains(&b.forgive_after_s) {
            return Err(ConfigError::invalid("edge.bans.forgive_after_s", "must be between 1 and 31536000"));
        }
        if !(1..=10_000_000).contains(&b.max_tracked) {
            return Err(ConfigError::invalid("edge.bans.max_tracked", "must be between 1 and 10000000"));
        }
        for cidr in &b.allow {
            if crate::domain::parse_cidr(cidr).is_none() {
                return Err(ConfigError::invalid("edge.bans.allow", format!("`{cidr}` is not an IP address or CIDR")));
            }
        }
        Ok(())
    }
}
