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
        ConfigError::Invalid {
            key,
            message: message.into(),
        }
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
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str("[redacted]")
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
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
        DatabaseConfig {
            url: Secret::default(),
            pool_size: 16,
            checkout_timeout_ms: 3000,
            startup_timeout_s: 60,
        }
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
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
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
        RetentionConfig {
            usage_months: 13,
            audit_months: 13,
            partitions_ahead_months: 3,
        }
    }
}

impl Config {
    /// Loads defaults, then the file (if any), then the environment; does not validate.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    message: "no such file".into(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                figment = figment.merge(("database.url", url));
            }
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        figment
            .extract::<Config>()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))
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
            return Err(ConfigError::invalid(
                "server.workers",
                "must be between 0 (auto) and 1024",
            ));
        }
        if s.shutdown_timeout_s > 3600 {
            return Err(ConfigError::invalid(
                "server.shutdown_timeout_s",
                "must be at most 3600",
            ));
        }
        if s.max_body_bytes == 0 || s.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                "must be between 1 and 1 GiB",
            ));
        }
        if s.client_request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.client_request_timeout_ms",
                "must be positive",
            ));
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "tls.key",
                    "is required when tls.cert is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "tls.cert",
                    "is required when tls.key is set",
                ));
            }
            (Some(cert), Some(key)) => {
                if !cert.is_file() {
                    return Err(ConfigError::invalid(
                        "tls.cert",
                        format!("{} is not a readable file", cert.display()),
                    ));
                }
                if !key.is_file() {
                    return Err(ConfigError::invalid(
                        "tls.key",
                        format!("{} is not a readable file", key.display()),
                    ));
                }
            }
            (None, None) => {}
        }
        let d = &self.database;
        if !d.url.is_empty() {
            let url = d.url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::invalid(
                    "database.url",
                    "must start with postgres:// or postgresql://",
                ));
            }
        }
        if d.pool_size == 0 || d.pool_size > 1000 {
            return Err(ConfigError::invalid(
                "database.pool_size",
                "must be between 1 and 1000",
            ));
        }
        if d.checkout_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "database.checkout_timeout_ms",
                "must be positive",
            ));
        }
        let r = &self.retention;
        if r.usage_months == 0 {
            return Err(ConfigError::invalid(
                "retention.usage_months",
                "must be at least 1",
            ));
        }
        if r.audit_months == 0 {
            return Err(ConfigError::invalid(
                "retention.audit_months",
                "must be at least 1",
            ));
        }
        if r.partitions_ahead_months == 0 || r.partitions_ahead_months > 24 {
            return Err(ConfigError::invalid(
                "retention.partitions_ahead_months",
                "must be between 1 and 24",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::invalid("log.filter", e.to_string()));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!("`{}` is not an address:port", self.server.listen),
            )
        })
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
                        format!(
                            " (from environment variable {ENV_PREFIX}{})",
                            key.replace('.', "__").to_uppercase()
                        )
                    }
                    _ => String::new(),
                },
                None => String::new(),
            };
            if key.is_empty() {
                format!("{}{from}", one.kind)
            } else {
                format!("`{key}`: {}{from}", one.kind)
            }
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
        let err =
            Config::from_toml_str("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bogus"), "{msg}");
        assert!(msg.contains("server.bogus"), "{msg}");
    }

    #[test]
    fn unknown_section_is_named() {
        let msg = Config::from_toml_str("[nope]\nx = 1\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let msg = Config::from_toml_str("[database]\npool_size = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("database.pool_size"), "{msg}");
    }

    #[test]
    fn malformed_toml_is_refused() {
        let msg = Config::from_toml_str("[server\nlisten=")
            .unwrap_err()
            .to_string();
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
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("database.pool_size")
        );
    }

    #[test]
    fn non_postgres_url_is_refused() {
        let c = Config::from_toml_str("[database]\nurl = \"mysql://x\"\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("database.url")
        );
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
        let defaults: toml::Table =
            toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
        for (section, keys) in &defaults {
            let Some(keys) = keys.as_table() else {
                continue;
            };
            for key in keys.keys() {
                let present = example
                    .get(section)
                    .and_then(|s| s.as_table())
                    .is_some_and(|s| s.contains_key(key));
                let commented = text.contains(&format!("# {key} = "));
                assert!(
                    present || commented,
                    "ops/gatehouse.example.toml does not document {section}.{key}"
                );
            }
        }
    }
}
