//! Configuration: serde defaults → optional TOML file (`--config` / `GATEHOUSE_CONFIG`) →
//! `GATEHOUSE__SECTION__KEY` environment variables (plus the conventional `DATABASE_URL`).
//! Unknown keys are errors, and `validate()` names the offending key. Nothing here touches the
//! network or the database.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod dashboard;
mod edge;
mod sections;
#[cfg(test)]
mod tests;

pub use dashboard::{DashboardConfig, OidcConfig};
pub use edge::{BanConfig, EdgeConfig};
pub use sections::*;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "GATEHOUSE_CONFIG";
/// Prefix of per-key overrides: `GATEHOUSE__SERVER__LISTEN=0.0.0.0:8080`.
pub const ENV_PREFIX: &str = "GATEHOUSE__";

/// A configuration problem, always naming the key (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl ConfigError {
    fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key, message: message.into() }
    }
}

/// A value that must never reach logs or `check-config` output.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The 32-byte key this secret encodes in base64 (the master key), if it is one.
    pub fn decode_key32(&self) -> Option<[u8; 32]> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(self.0.trim()).ok()?;
        bytes.try_into().ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() { s.serialize_str("") } else { s.serialize_str("[redacted]") }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Worker pools declared in the file (`[[pools]]`), applied at start-up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolDeclaration>,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    pub auth: AuthConfig,
    pub usage: UsageConfig,
    pub redis: RedisConfig,
    pub alignment: AlignmentConfig,
    pub audio: AudioConfig,
    pub gateway: GatewayConfig,
    pub alerts: AlertsConfig,
    pub edge: EdgeConfig,
    pub dashboard: DashboardConfig,
}

impl Config {
    /// Loads defaults, then the file (if any), then the environment; does not validate.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File { path: path.to_owned(), message: "no such file".into() });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                figment = figment.merge(("database.url", url));
            }
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        figment.extract::<Config>().map_err(|e| ConfigError::Parse(describe_figment_error(e)))
    }

    /// Parses TOML text alone (defaults underneath, no environment): for tests and tooling.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract::<Config>()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))
    }

    /// Checks values serde cannot: ranges, combinations, files that must exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        let s = &self.server;
        if s.threads > 1024 {
            return Err(ConfigError::invalid("server.threads", "must be between 0 (auto) and 1024"));
        }
        if s.shutdown_timeout_s > 3600 {
            return Err(ConfigError::invalid("server.shutdown_timeout_s", "must be at most 3600"));
        }
        if s.max_body_bytes == 0 || s.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(ConfigError::invalid("server.max_body_bytes", "must be between 1 and 1 GiB"));
        }
        if !(1024..=64 * 1024).contains(&s.max_header_bytes) {
            return Err(ConfigError::invalid("server.max_header_bytes", "must be between 1024 and 65536"));
        }
        if s.client_request_timeout_ms == 0 {
            return Err(ConfigError::invalid("server.client_request_timeout_ms", "must be positive"));
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return Err(ConfigError::invalid("tls.key", "is required when tls.cert is set"));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid("tls.cert", "is required when tls.key is set"));
            }
            (Some(cert), Some(key)) => {
                if !cert.is_file() {
                    return Err(ConfigError::invalid("tls.cert", format!("{} is not a readable file", cert.display())));
                }
                if !key.is_file() {
                    return Err(ConfigError::invalid("tls.key", format!("{} is not a readable file", key.display())));
                }
            }
            (None, None) => {}
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.pools {
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::invalid("pools", format!("pool `{}` is declared twice", p.name)));
            }
            if p.models.iter().all(|m| m.trim().is_empty()) {
                return Err(ConfigError::invalid("pools", format!("pool `{}`: list at least one model", p.name)));
            }
            for w in &p.workers {
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    return Err(ConfigError::invalid("pools", format!("pool `{}`: worker url `{}` must be http(s)", p.name, w.url)));
                }
                if w.slots.is_some_and(|s| !(1..=4096).contains(&s)) {
                    return Err(ConfigError::invalid("pools", format!("pool `{}`: worker slots must be between 1 and 4096", p.name)));
                }
            }
        }
        let al = &self.alignment;
        if !(10..=3600).contains(&al.max_duration_s) {
            return Err(ConfigError::invalid("alignment.max_duration_s", "must be between 10 and 3600"));
        }
        if al.job_max_duration_s < al.max_duration_s || al.job_max_duration_s > 24 * 3600 {
            return Err(ConfigError::invalid("alignment.job_max_duration_s", "must be between max_duration_s and 86400"));
        }
        if al.max_transcript_chars == 0 {
            return Err(ConfigError::invalid("alignment.max_transcript_chars", "must be positive"));
        }
        if !(al.max_words_per_second > 0.0 && al.max_chars_per_second > 0.0) {
            return Err(ConfigError::invalid("alignment.max_words_per_second", "rates must be positive"));
        }
        if al.job_concurrency == 0 || al.job_concurrency > 256 {
            return Err(ConfigError::invalid("alignment.job_concurrency", "must be between 1 and 256"));
        }
        let clamav = &self.audio.clamav;
        if !clamav.address.is_empty() {
            clamav.address.parse::<crate::audio::clamav::ClamdAddress>().map_err(|e| ConfigError::invalid("audio.clamav.address", e))?;
        }
        if !(1..=600_000).contains(&clamav.timeout_ms) {
            return Err(ConfigError::invalid("audio.clamav.timeout_ms", "must be between 1 and 600000"));
        }
        let d = &self.database;
        if !d.url.is_empty() {
            let url = d.url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::invalid("database.url", "must start with postgres:// or postgresql://"));
            }
        }
        if d.pool_size == 0 || d.pool_size > 1000 {
            return Err(ConfigError::invalid("database.pool_size", "must be between 1 and 1000"));
        }
        if d.checkout_timeout_ms == 0 {
            return Err(ConfigError::invalid("database.checkout_timeout_ms", "must be positive"));
        }
        let r = &self.retention;
        if r.usage_months == 0 {
            return Err(ConfigError::invalid("retention.usage_months", "must be at least 1"));
        }
        if r.audit_months == 0 {
            return Err(ConfigError::invalid("retention.audit_months", "must be at least 1"));
        }
        if r.partitions_ahead_months == 0 || r.partitions_ahead_months > 24 {
            return Err(ConfigError::invalid("retention.partitions_ahead_months", "must be between 1 and 24"));
        }
        if !(10..=60_000).contains(&self.usage.flush_interval_ms) {
            return Err(ConfigError::invalid("usage.flush_interval_ms", "must be between 10 and 60000"));
        }
        if !(1..=3600).contains(&self.usage.quota_refresh_s) {
            return Err(ConfigError::invalid("usage.quota_refresh_s", "must be between 1 and 3600"));
        }
        let redis = &self.redis;
        let url = redis.url.expose();
        if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("unix://")) {
            return Err(ConfigError::invalid("redis.url", "must start with redis:// or unix://"));
        }
        if redis.key_prefix.is_empty() || redis.key_prefix.len() > 64 || redis.key_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::invalid("redis.key_prefix", "must be 1 to 64 characters without spaces"));
        }
        if !(1..=10_000).contains(&redis.timeout_ms) {
            return Err(ConfigError::invalid("redis.timeout_ms", "must be between 1 and 10000"));
        }
        for cidr in &self.server.trusted_proxies {
            if crate::domain::parse_cidr(cidr).is_none() {
                return Err(ConfigError::invalid("server.trusted_proxies", format!("`{cidr}` is not an IP address or CIDR")));
            }
        }
        self.validate_auth()?;
        self.validate_timings()?;
        self.edge.validate()?;
        self.dashboard.validate()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::invalid("log.filter", e.to_string()));
        }
        Ok(())
    }

    /// Intervals and timeouts: none may be zero (a zero interval spins), and the caches that
    /// bound how fast a change applies stay within a minute.
    fn validate_timings(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        let a = &self.alignment;
        let al = &self.alerts;
        let positive: [(&'static str, u64); 20] = [
            ("alerts.window_s", al.window_s),
            ("alerts.poll_ms", al.poll_ms),
            ("alerts.evaluate_ms", al.evaluate_ms),
            ("alerts.smtp_timeout_ms", al.smtp_timeout_ms),
            ("alerts.max_attempts", u64::from(al.max_attempts)),
            ("alerts.repeat_interval_s", al.repeat_interval_s),
            ("gateway.refresh_interval_ms", g.refresh_interval_ms),
            ("gateway.health_timeout_ms", g.health_timeout_ms),
            ("gateway.upstream_timeout_s", g.upstream_timeout_s),
            ("gateway.eject_after_failures", u64::from(g.eject_after_failures)),
            ("gateway.eject_for_ms", g.eject_for_ms),
            ("gateway.maintenance_interval_s", g.maintenance_interval_s),
            ("auth.key_reload_ms", self.auth.key_reload_ms),
            ("alignment.job_heartbeat_s", a.job_heartbeat_s),
            ("alignment.job_idle_poll_ms", a.job_idle_poll_ms),
            ("alignment.job_retry_base_ms", a.job_retry_base_ms),
            ("alignment.job_max_duration_s", a.job_max_duration_s),
            ("alignment.max_concurrent_decodes", a.max_concurrent_decodes as u64),
            ("alignment.max_concurrent_decodes_per_tenant", a.max_concurrent_decodes_per_tenant as u64),
            ("usage.flush_interval_ms", self.usage.flush_interval_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::invalid(key, "must be greater than 0"));
        }
        if !(1..=60_000).contains(&g.policy_cache_ttl_ms) {
            return Err(ConfigError::invalid("gateway.policy_cache_ttl_ms", "must be between 1 and 60000"));
        }
        if !al.smtp_url.is_empty() && al.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::invalid("alerts.from", "must be a mail address, e.g. Gatehouse <alerts@example.com>"));
        }
        // A job's audio is stored as one 16 kHz mono PCM16 WAV file.
        if a.job_max_duration_s.saturating_mul(u64::from(crate::audio::TARGET_SAMPLE_RATE) * 2)
            > u64::from(crate::audio::MAX_WAV_DATA_BYTES)
        {
            return Err(ConfigError::invalid("alignment.job_max_duration_s", "must be at most 134000 (a WAV file holds about 37 hours)"));
        }
        if a.job_stale_after_s <= a.job_heartbeat_s {
            return Err(ConfigError::invalid("alignment.job_stale_after_s", "must be longer than alignment.job_heartbeat_s"));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if !a.issuer.is_empty() {
            if !(a.issuer.starts_with("https://") || a.issuer.starts_with("http://")) || a.issuer.ends_with('/') {
                return Err(ConfigError::invalid("auth.issuer", "must be an http(s) URL without a trailing slash"));
            }
        } else if self.listen_addr()?.ip().is_unspecified() {
            return Err(ConfigError::invalid("auth.issuer", "must be set when server.listen is a wildcard address"));
        }
        if !a.api_audience.is_empty() && a.api_audience == self.issuer() {
            return Err(ConfigError::invalid("auth.api_audience", "must differ from the issuer"));
        }
        if !a.master_key.is_empty() {
            a.master_key.decode_key32().ok_or_else(|| ConfigError::invalid("auth.master_key", "must be 32 bytes, base64-encoded"))?;
        }
        if !a.pepper.is_empty() && a.pepper.expose().len() < 32 {
            return Err(ConfigError::invalid("auth.pepper", "must be at least 32 characters"));
        }
        if !(300..=3600).contains(&a.access_token_ttl_s) {
            return Err(ConfigError::invalid("auth.access_token_ttl_s", "must be between 300 and 3600"));
        }
        if a.signing_key_rotation_days == 0 {
            return Err(ConfigError::invalid("auth.signing_key_rotation_days", "must be at least 1"));
        }
        if a.cache_ttl_ms == 0 || a.cache_ttl_ms > 5000 {
            return Err(ConfigError::invalid("auth.cache_ttl_ms", "must be between 1 and 5000 (the revocation promise is 5 s)"));
        }
        if a.revocation_poll_ms == 0 || a.revocation_poll_ms > 5000 {
            return Err(ConfigError::invalid("auth.revocation_poll_ms", "must be between 1 and 5000"));
        }
        for (key, v) in [
            ("auth.token_ip_per_min", a.token_ip_per_min),
            ("auth.token_ip_burst", a.token_ip_burst),
            ("auth.token_client_per_min", a.token_client_per_min),
            ("auth.token_failures_per_5min", a.token_failures_per_5min),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The master key and pepper, required by anything that issues or checks credentials.
    pub fn require_auth_secrets(&self) -> Result<(), ConfigError> {
        if self.auth.master_key.is_empty() {
            return Err(ConfigError::invalid(
                "auth.master_key",
                "is not set (32 random bytes, base64: `openssl rand -base64 32`; GATEHOUSE__AUTH__MASTER_KEY)",
            ));
        }
        if self.auth.pepper.is_empty() {
            return Err(ConfigError::invalid(
                "auth.pepper",
                "is not set (at least 32 random characters: `openssl rand -base64 48`; GATEHOUSE__AUTH__PEPPER)",
            ));
        }
        Ok(())
    }

    /// The token issuer: configured, or derived from the listen address.
    pub fn issuer(&self) -> String {
        if !self.auth.issuer.is_empty() {
            return self.auth.issuer.clone();
        }
        let scheme = if self.tls.enabled() { "https" } else { "http" };
        format!("{scheme}://{}", self.server.listen)
    }

    /// The access-token audience: configured, or issuer + "/v1".
    pub fn api_audience(&self) -> String {
        if self.auth.api_audience.is_empty() { format!("{}/v1", self.issuer()) } else { self.auth.api_audience.clone() }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| ConfigError::invalid("server.listen", format!("`{}` is not an address:port", self.server.listen)))
    }

    /// The database URL, or an error telling how to set it.
    pub fn database_url(&self) -> Result<&str, ConfigError> {
        if self.database.url.is_empty() {
            return Err(ConfigError::invalid(
                "database.url",
                "is not set (set DATABASE_URL, GATEHOUSE__DATABASE__URL or [database] url in the config file)",
            ));
        }
        Ok(self.database.url.expose())
    }
}

/// One line per problem, naming the key as users write it (`server.listen`) and where the value
/// came from (file or environment variable).
fn describe_figment_error(e: figment::Error) -> String {
    e.into_iter()
        .map(|one| {
            let key = one.path.join(".").to_lowercase();
            let key = key.strip_prefix("default.").unwrap_or(&key).to_owned();
            let from = match &one.metadata {
                Some(meta) => match &meta.source {
                    Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
                    _ if meta.name.contains("environment") && !key.is_empty() => {
                        format!(" (from environment variable {ENV_PREFIX}{})", key.replace('.', "__").to_uppercase())
                    }
                    _ => String::new(),
                },
                None => String::new(),
            };
            if key.is_empty() { format!("{}{from}", one.kind) } else { format!("`{key}`: {}{from}", one.kind) }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
