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
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// HTTP worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT before closing them.
    pub shutdown_timeout_s: u64,
    /// Largest request body accepted on routes without a limit of their own, in bytes.
    pub max_body_bytes: usize,
    /// Seconds an idle keep-alive connection stays open.
    pub keep_alive_s: u64,
    /// Milliseconds a client has to send its request headers.
    pub client_request_timeout_ms: u64,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed; the client IP is the rightmost
    /// address not in this list. Empty = use the TCP peer address.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            shutdown_timeout_s: 30,
            max_body_bytes: 1024 * 1024,
            keep_alive_s: 75,
            client_request_timeout_ms: 5000,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; TLS is on when both `cert` and `key` are set.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL (`postgres://user:pass@host:5432/db`); `DATABASE_URL` is honoured too.
    pub url: Secret,
    /// Connections in the pool; also bounds concurrent database work.
    pub pool_size: u32,
    /// Milliseconds a request waits for a connection before answering 503.
    pub checkout_timeout_ms: u64,
    /// Seconds to keep retrying (with backoff) when the database is unreachable at start-up.
    pub startup_timeout_s: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: Secret::default(), pool_size: 16, checkout_timeout_ms: 3000, startup_timeout_s: 60 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines (one object per line).
    pub format: LogFormat,
    /// tracing filter directive; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, filter: "info".into() }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Months of usage rollups kept; older monthly partitions are dropped whole.
    pub usage_months: u32,
    /// Months of audit events kept.
    pub audit_months: u32,
    /// Monthly partitions created ahead of the current month.
    pub partitions_ahead_months: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { usage_months: 13, audit_months: 13, partitions_ahead_months: 3 }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Milliseconds between two usage writes: at most one multi-row upsert per interval per
    /// instance, whatever the request rate. A crash loses at most one interval.
    pub flush_interval_ms: u64,
    /// Also write one lean row per request to `usage_events` (off by default).
    pub events: bool,
    /// Seconds between two reloads of each tenant's quota totals from the database, which brings
    /// in other instances' usage when Redis is not configured.
    pub quota_refresh_s: u64,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig { flush_interval_ms: 1000, events: false, quota_refresh_s: 30 }
    }
}

/// A worker pool declared in the config file. Applied at start-up (`serve`, `dev`): created or
/// updated in the database with its workers; the API and CLI then refuse to change its workers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolDeclaration {
    pub name: String,
    /// `llm` (default) or `aligner`.
    #[serde(default = "default_pool_kind")]
    pub kind: String,
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_deadline_ms: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_items: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_audio_ms: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_wait_ms: Option<i32>,
    #[serde(default)]
    pub workers: Vec<WorkerDeclaration>,
}

fn default_pool_kind() -> String {
    "llm".into()
}

/// A worker of a declared pool. Its upstream key comes from an environment variable, never the file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerDeclaration {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlignmentConfig {
    /// Longest audio `POST /v1/audio/alignments` takes, seconds: the model's per-call ceiling.
    /// Longer audio goes to the jobs route, which cuts it into chunks of at most this length.
    pub max_duration_s: u64,
    /// Longest audio an alignment job takes, seconds.
    pub job_max_duration_s: u64,
    /// Longest transcript, characters (after control characters are removed).
    pub max_transcript_chars: usize,
    /// Most words per second of audio a transcript may have (space-delimited languages).
    pub max_words_per_second: f64,
    /// Most characters per second for Chinese, Japanese and Cantonese transcripts.
    pub max_chars_per_second: f64,
    /// Where job audio is kept until the job ends (relative paths: to the working directory).
    pub jobs_dir: std::path::PathBuf,
    /// Days a finished job (and its result) stays readable before it is deleted.
    pub job_retention_days: u32,
    /// Jobs this instance works on at once.
    pub job_concurrency: usize,
}

impl Default for AlignmentConfig {
    fn default() -> Self {
        AlignmentConfig {
            max_duration_s: 300,
            job_max_duration_s: 4 * 3600,
            max_transcript_chars: 100_000,
            max_words_per_second: 8.0,
            max_chars_per_second: 15.0,
            jobs_dir: "data/jobs".into(),
            job_retention_days: 7,
            job_concurrency: 2,
        }
    }
}

/// What `/v1` does when Redis is configured but cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Enforce the limits in this instance alone until Redis answers again.
    #[default]
    Local,
    /// Refuse `/v1` requests with 503 until Redis answers again.
    Closed,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`; empty = limits are enforced per instance, in memory.
    pub url: Secret,
    /// Prefix of every key Gatehouse writes, so instances of one deployment share counters and
    /// two deployments can share a Redis.
    pub key_prefix: String,
    /// Milliseconds one limiter round trip may take before the failure policy applies.
    pub timeout_ms: u64,
    /// `local` (fail open to per-instance limits) or `closed` (503).
    pub on_error: RedisFailure,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: Secret::default(), key_prefix: "gatehouse".into(), timeout_ms: 250, on_error: RedisFailure::Local }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SigningAlg {
    #[default]
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Token issuer (`iss`), e.g. https://api.example.com, no trailing slash. Empty = derived
    /// from server.listen (fine for development only).
    pub issuer: String,
    /// Audience of access tokens (`aud`); empty = issuer + "/v1". Must differ from the issuer.
    pub api_audience: String,
    /// 32 random bytes, base64: encrypts signing keys and worker API keys at rest.
    pub master_key: Secret,
    /// At least 32 characters: keys the HMAC of stored client secrets, API keys and tokens.
    pub pepper: Secret,
    /// Access-token signature algorithm for new keys: ES256 (default) or RS256.
    pub signing_alg: SigningAlg,
    /// Default access-token lifetime in seconds (clients may set 300..3600).
    pub access_token_ttl_s: u32,
    /// Days between automatic signing-key rotations.
    pub signing_key_rotation_days: u32,
    /// Milliseconds credential state is cached; bounds how fast revocations apply (≤ 5000).
    pub cache_ttl_ms: u64,
    /// Milliseconds between polls for revocations made on other instances.
    pub revocation_poll_ms: u64,
    /// Token endpoint: requests per minute per client IP.
    pub token_ip_per_min: u32,
    /// Token endpoint: burst allowed per client IP.
    pub token_ip_burst: u32,
    /// Token endpoint: tokens per minute per client id.
    pub token_client_per_min: u32,
    /// Token endpoint: failed authentications per (client id, IP) within 5 minutes before lockout.
    pub token_failures_per_5min: u32,
    /// Seconds a (client id, IP) pair stays locked out after too many failures.
    pub token_lockout_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: String::new(),
            api_audience: String::new(),
            master_key: Secret::default(),
            pepper: Secret::default(),
            signing_alg: SigningAlg::ES256,
            access_token_ttl_s: 900,
            signing_key_rotation_days: 90,
            cache_ttl_ms: 4000,
            revocation_poll_ms: 1000,
            token_ip_per_min: 60,
            token_ip_burst: 20,
            token_client_per_min: 30,
            token_failures_per_5min: 10,
            token_lockout_s: 900,
        }
    }
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
        if s.workers > 1024 {
            return Err(ConfigError::invalid("server.workers", "must be between 0 (auto) and 1024"));
        }
        if s.shutdown_timeout_s > 3600 {
            return Err(ConfigError::invalid("server.shutdown_timeout_s", "must be at most 3600"));
        }
        if s.max_body_bytes == 0 || s.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(ConfigError::invalid("server.max_body_bytes", "must be between 1 and 1 GiB"));
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
            if p.kind != "llm" && p.kind != "aligner" {
                return Err(ConfigError::invalid("pools", format!("pool `{}`: kind must be `llm` or `aligner`", p.name)));
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
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::invalid("log.filter", e.to_string()));
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
            crate::auth::seal::MasterKey::from_config(&a.master_key).map_err(|e| ConfigError::invalid("auth.master_key", e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bogus"), "{msg}");
        assert!(msg.contains("server.bogus"), "{msg}");
    }

    #[test]
    fn unknown_section_is_named() {
        let msg = Config::from_toml_str("[nope]\nx = 1\n").unwrap_err().to_string();
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let msg = Config::from_toml_str("[database]\npool_size = \"many\"\n").unwrap_err().to_string();
        assert!(msg.contains("database.pool_size"), "{msg}");
    }

    #[test]
    fn malformed_toml_is_refused() {
        let msg = Config::from_toml_str("[server\nlisten=").unwrap_err().to_string();
        assert!(msg.contains("invalid configuration"), "{msg}");
    }

    #[test]
    fn bad_listen_address_is_named() {
        let c = Config::from_toml_str("[server]\nlisten = \"localhost\"\n").unwrap();
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("server.listen"), "{msg}");
    }

    #[test]
    fn tls_needs_both_halves() {
        let c = Config::from_toml_str("[tls]\ncert = \"/etc/hostname\"\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("tls.key"));
    }

    #[test]
    fn zero_pool_is_refused() {
        let c = Config::from_toml_str("[database]\npool_size = 0\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("database.pool_size"));
    }

    #[test]
    fn non_postgres_url_is_refused() {
        let c = Config::from_toml_str("[database]\nurl = \"mysql://x\"\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("database.url"));
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_serialized_output() {
        let c = Config::from_toml_str("[database]\nurl = \"postgres://u:hunter2@h/db\"\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!toml::to_string(&c).unwrap().contains("hunter2"));
        assert_eq!(c.database_url().unwrap(), "postgres://u:hunter2@h/db");
    }

    #[test]
    fn example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/gatehouse.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::from_toml_str(&text).unwrap();
        c.validate().unwrap();
        // The example documents every key: it must set each one explicitly.
        let example: toml::Table = text.parse().unwrap();
        let defaults: toml::Table = toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
        for (section, keys) in &defaults {
            let Some(keys) = keys.as_table() else {
                continue;
            };
            for key in keys.keys() {
                let present = example.get(section).and_then(|s| s.as_table()).is_some_and(|s| s.contains_key(key));
                let commented = text.contains(&format!("# {key} = "));
                assert!(present || commented, "ops/gatehouse.example.toml does not document {section}.{key}");
            }
        }
    }
}
