//! The configuration's sections (`[server]`, `[database]`, `[auth]`, …) with their defaults. Each
//! field's `///` line is its documentation; `ops/gatehouse.example.toml` shows them all.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;
use crate::domain::PoolKind;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// Server threads answering HTTP (not GPU workers); 0 = one per CPU core. `workers` is
    /// accepted as the old name of this key.
    #[serde(alias = "workers")]
    pub threads: usize,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT before closing them.
    pub shutdown_timeout_s: u64,
    /// Largest request body accepted on routes without a limit of their own, in bytes.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers) accepted, in bytes; larger ones get 431.
    /// At most 65536, which leaves room under the HTTP parser's own 128 KiB buffer.
    pub max_header_bytes: usize,
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
            threads: 0,
            shutdown_timeout_s: 30,
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 32 * 1024,
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
    /// Whether each finished request logs a line at `info` (default) or only at `debug`
    /// (`gatehouse dev` chooses `debug`, so request lines do not bury its banner).
    pub requests_at_debug: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, filter: "info".into(), requests_at_debug: false }
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

/// Alerts to on-call and tenant recipients by email.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The SMTP server, in lettre's URL form: `smtps://user:pass@smtp.example.com` (implicit
    /// TLS), `smtp://user:pass@smtp.example.com:587?tls=required` (STARTTLS) or
    /// `smtp://127.0.0.1:2525` (plain). Empty: alerts are recorded and listed, not mailed.
    pub smtp_url: Secret,
    /// A PEM file of a CA certificate to trust for the SMTP server's TLS, besides the system's
    /// (a private mail relay).
    pub ca_file: Option<PathBuf>,
    /// The sender of alert mails.
    pub from: String,
    /// Where the mails link to (the dashboard); empty = the issuer.
    pub dashboard_url: String,
    /// Milliseconds between two looks at the outbox for mails to send.
    pub poll_ms: u64,
    /// Milliseconds between two evaluations of the alert rules.
    pub evaluate_ms: u64,
    /// Milliseconds an SMTP conversation may take.
    pub smtp_timeout_ms: u64,
    /// Sending attempts of one alert before it is marked failed.
    pub max_attempts: u32,
    /// Milliseconds before the first retry of a mail; doubled each time, with jitter.
    pub retry_base_ms: u64,
    /// Seconds between two mails about a condition that lasts.
    pub repeat_interval_s: u64,
    /// Seconds a worker must be down (ejected, or failing its health checks) before it alerts.
    pub worker_down_after_s: u64,
    /// More alerts than this to one recipient within 10 minutes are folded into one digest mail.
    pub digest_after: usize,
    /// Seconds of recent traffic the queue-wait, error-rate and authentication-failure rules look at.
    pub window_s: u64,
    /// A pool whose queue-wait p95 over the window stays above this many milliseconds for
    /// `saturated_for_s` is saturated.
    pub queue_wait_p95_ms: u64,
    pub saturated_for_s: u64,
    /// A pool whose share of worker failures over the window reaches this (with at least
    /// `error_min_requests` finished requests) has an error spike.
    pub error_rate: f64,
    pub error_min_requests: u32,
    /// Failed authentications from one IP, or against one client id, within the window that make
    /// a burst (possible credential stuffing).
    pub auth_failures: u32,
    /// Seconds Redis must fail every admission before it alerts (a blip is not an outage).
    pub store_down_after_s: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            smtp_url: Secret::default(),
            ca_file: None,
            from: "Gatehouse <gatehouse@localhost>".into(),
            dashboard_url: String::new(),
            poll_ms: 1000,
            evaluate_ms: 5000,
            smtp_timeout_ms: 10_000,
            max_attempts: 8,
            retry_base_ms: 2000,
            repeat_interval_s: 3600,
            worker_down_after_s: 60,
            digest_after: 5,
            window_s: 120,
            queue_wait_p95_ms: 5000,
            saturated_for_s: 120,
            error_rate: 0.05,
            error_min_requests: 20,
            auth_failures: 50,
            store_down_after_s: 10,
        }
    }
}

/// How the gateway keeps its view of the worker pools and talks to workers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Milliseconds between reloads of pools and workers from the database, each followed by a
    /// health check of every worker.
    pub refresh_interval_ms: u64,
    /// Milliseconds one health probe may take before the worker counts as down.
    pub health_timeout_ms: u64,
    /// Seconds allowed for a worker's whole answer (non-streaming) or between stream chunks.
    pub upstream_timeout_s: u64,
    /// Milliseconds a relayed stream may go without an event before Gatehouse writes an SSE
    /// comment (`: keep-alive`) to the client: a client that left is noticed by that write
    /// (actix-web sees a closed connection only when it writes), so the worker stops generating
    /// and the slot comes back. 0 = never (a departed client is then noticed at the next event).
    pub stream_heartbeat_ms: u64,
    /// Consecutive failures that eject a worker (circuit breaker).
    pub eject_after_failures: u32,
    /// Milliseconds an ejected worker rests before one half-open probe request.
    pub eject_for_ms: u64,
    /// Milliseconds a tenant's plan and a credential's limit overrides are cached: changes take
    /// effect within this time, without a restart.
    pub policy_cache_ttl_ms: u64,
    /// Seconds between partition upkeep, signing-key rotation checks and expired-job sweeps.
    pub maintenance_interval_s: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            refresh_interval_ms: 2000,
            health_timeout_ms: 1500,
            upstream_timeout_s: 300,
            stream_heartbeat_ms: 5000,
            eject_after_failures: 3,
            eject_for_ms: 10_000,
            policy_cache_ttl_ms: 5000,
            maintenance_interval_s: 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Milliseconds between two usage writes: at most one multi-row upsert per interval per
    /// instance, whatever the request rate.
    pub flush_interval_ms: u64,
    /// Append each request's usage to a local journal before its answer completes, so a crash
    /// of the process loses none (on by default).
    pub journal: bool,
    /// Where the journal is kept (relative paths: to the working directory). One instance per
    /// directory; it must survive a restart of the instance.
    pub journal_dir: PathBuf,
    /// Also write one lean row per request to `usage_events` (off by default).
    pub events: bool,
    /// Seconds between two reloads of each tenant's quota totals from the database, which brings
    /// in other instances' usage when Redis is not configured.
    pub quota_refresh_s: u64,
    /// Usage exports one tenant may run at once (operators' all-tenant exports count as one
    /// tenant); more are refused with 429 until one finishes.
    pub max_exports_per_tenant: usize,
    /// Usage exports this instance runs at once.
    pub max_exports: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            flush_interval_ms: 1000,
            journal: true,
            journal_dir: "data/usage-journal".into(),
            events: false,
            quota_refresh_s: 30,
            max_exports_per_tenant: 2,
            max_exports: 8,
        }
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
    pub kind: PoolKind,
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_deadline_ms: Option<i32>,
    /// Adaptive admission's target queue wait, ms (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_target_ms: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_items: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_audio_ms: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_wait_ms: Option<i32>,
    #[serde(default)]
    pub workers: Vec<WorkerDeclaration>,
}

fn default_pool_kind() -> PoolKind {
    PoolKind::Llm
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
    /// Longest audio an alignment job takes, seconds: decoding stops (413) as soon as the decoded
    /// stream passes it. At most 134000 (a WAV file holds about 37 hours).
    pub job_max_duration_s: u64,
    /// Audio uploads this instance decodes at once (both alignment routes); past it: 503.
    pub max_concurrent_decodes: usize,
    /// Audio uploads one tenant has decoded at once on this instance; past it: 429.
    pub max_concurrent_decodes_per_tenant: usize,
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
    /// Seconds between heartbeats of a running job (its claim stays fresh while it waits).
    pub job_heartbeat_s: u64,
    /// A claimed job with no heartbeat for this many seconds is taken over by another instance.
    pub job_stale_after_s: u64,
    /// Milliseconds an idle runner waits before looking for jobs again (new jobs wake it at once).
    pub job_idle_poll_ms: u64,
    /// Milliseconds before a failed chunk is retried; doubled on each further attempt.
    pub job_retry_base_ms: u64,
}

impl Default for AlignmentConfig {
    fn default() -> Self {
        AlignmentConfig {
            max_duration_s: 300,
            job_max_duration_s: 4 * 3600,
            max_concurrent_decodes: 8,
            max_concurrent_decodes_per_tenant: 4,
            max_transcript_chars: 100_000,
            max_words_per_second: 8.0,
            max_chars_per_second: 15.0,
            jobs_dir: "data/jobs".into(),
            job_retention_days: 7,
            job_concurrency: 2,
            job_heartbeat_s: 10,
            job_stale_after_s: 60,
            job_idle_poll_ms: 2000,
            job_retry_base_ms: 2000,
        }
    }
}

/// Checks on uploaded audio beyond decoding it (`[audio.clamav]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Malware scanning of uploads by ClamAV's `clamd`.
    pub clamav: ClamavConfig,
}

/// What an upload gets when `clamd` cannot scan it (down, too slow, or answering an error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanFailure {
    /// Refuse the upload with 503 and `Retry-After`.
    #[default]
    Reject,
    /// Let the upload through unscanned, with a warning in the log and the metric.
    Allow,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClamavConfig {
    /// Where `clamd` listens: `tcp://127.0.0.1:3310` or `unix:/run/clamav/clamd.ctl`. Empty =
    /// uploads are not scanned.
    pub address: String,
    /// `reject` (503, the default) or `allow` (unscanned) when `clamd` cannot give a verdict.
    pub on_error: ScanFailure,
    /// Milliseconds connecting to `clamd`, sending the upload and getting its verdict may take;
    /// past it the scan has failed and `on_error` applies.
    pub timeout_ms: u64,
}

impl Default for ClamavConfig {
    fn default() -> Self {
        ClamavConfig { address: String::new(), on_error: ScanFailure::Reject, timeout_ms: 10_000 }
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
    /// Milliseconds between reloads of the signing keys (rotations made on other instances).
    pub key_reload_ms: u64,
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
            key_reload_ms: 5000,
            token_ip_per_min: 60,
            token_ip_burst: 20,
            token_client_per_min: 30,
            token_failures_per_5min: 10,
            token_lockout_s: 900,
        }
    }
}
