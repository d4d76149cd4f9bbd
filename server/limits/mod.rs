//! Rate limits on `/v1`: requests, tokens and audio seconds per minute, and concurrent requests,
//! per tenant (from its plan) and per credential (the credential's overrides).
//!
//! Every per-minute limit is a sliding window over the last 60 s, kept as a log of (time, request,
//! amount) entries with a running total: "N per minute" means at most N in any 60 s, exactly,
//! with no burst allowance at window edges. Token limits *reserve* at admission (prompt estimate +
//! `max_tokens`) and are *reconciled* at completion with the worker's reported usage, which
//! releases the unused part, so parallel and streaming requests cannot overshoot by more than the
//! error of one estimate. Concurrency is a set of leases.
//!
//! Two stores hold the counters: [`local::LocalStore`] in memory (limits per instance), and
//! [`shared::RedisStore`] (one atomic Lua script per admission, so N instances enforce one limit).
//! When Redis fails, `redis.on_error` picks local limits or a 503; never a 500.

pub mod local;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};

use crate::config::{RedisConfig, RedisFailure};
use crate::domain::TenantId;
use crate::error::ApiError;
use crate::tasks::Supervisor;

/// The length of every per-minute window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// `Retry-After` on `/v1` never exceeds this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Per-minute limits and the concurrency cap of one tenant or credential; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub audio_seconds_per_minute: Option<u64>,
    pub concurrent_requests: Option<u64>,
}

impl Limits {
    fn get(&self, dim: Dimension) -> Option<u64> {
        match dim {
            Dimension::Requests => self.requests_per_minute,
            Dimension::Tokens => self.tokens_per_minute,
            Dimension::AudioSeconds => self.audio_seconds_per_minute,
            Dimension::Concurrent => self.concurrent_requests,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Requests,
    Tokens,
    AudioSeconds,
    Concurrent,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [Dimension::Requests, Dimension::Tokens, Dimension::AudioSeconds, Dimension::Concurrent];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
            Dimension::AudioSeconds => "audio-seconds",
            Dimension::Concurrent => "concurrent",
        }
    }

    fn is_window(self) -> bool {
        self != Dimension::Concurrent
    }
}

/// Whose counter a check is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Tenant,
    Credential,
}

/// Who is asking, and the limits that apply to them.
#[derive(Debug, Clone)]
pub struct Subject {
    pub tenant_id: TenantId,
    pub credential_id: String,
    pub tenant: Limits,
    pub credential: Limits,
}

/// What one request takes besides one request and one concurrency slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub tokens: u64,
    pub audio_seconds: u64,
}

/// One counter to check: a key, its limit, and the amount this request takes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub scope: Scope,
    pub dim: Dimension,
    pub key: String,
    pub limit: u64,
    pub amount: u64,
}

impl Subject {
    /// Every counter this request touches; unlimited dimensions are skipped.
    pub fn checks(&self, demand: Demand) -> Vec<Check> {
        let mut out = Vec::new();
        for (scope, limits, id) in
            [(Scope::Tenant, &self.tenant, self.tenant_id.as_str()), (Scope::Credential, &self.credential, self.credential_id.as_str())]
        {
            for dim in Dimension::ALL {
                let Some(limit) = limits.get(dim) else { continue };
                let amount = match dim {
                    Dimension::Requests | Dimension::Concurrent => 1,
                    Dimension::Tokens => demand.tokens,
                    Dimension::AudioSeconds => demand.audio_seconds,
                };
                let prefix = if scope == Scope::Tenant { "t" } else { "c" };
                out.push(Check { scope, dim, key: format!("{prefix}:{id}:{}", dim.as_str()), limit, amount });
            }
        }
        out
    }
}

/// The state of one counter after a decision, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    pub dim: Dimension,
    pub limit: u64,
    pub remaining: u64,
    /// Until the oldest entry leaves the window (capacity grows again).
    pub reset: Duration,
}

/// A store's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admitted { states: Vec<CounterState> },
    Refused { check: usize, retry_after: Duration, states: Vec<CounterState> },
}

/// A reconcile or release, applied after the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Replace the amount request `id` holds in the window `key`.
    Reconcile { key: String, id: String, amount: u64 },
    /// Free request `id`'s concurrency lease in `key`.
    Release { key: String, id: String },
}

#[derive(Clone)]
pub struct RateLimiter {
    local: Arc<local::LocalStore>,
    redis: Option<Arc<shared::RedisStore>>,
    on_error: RedisFailure,
    /// Since when every admission's Redis round trip has failed (None: Redis answers).
    redis_failing_since: Arc<std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>>,
}

impl RateLimiter {
    /// The limiter; with Redis, its settler (reconciles and releases in batches) runs under the
    /// supervisor.
    pub async fn new(config: &RedisConfig, tasks: &Arc<Supervisor>) -> anyhow::Result<RateLimiter> {
        let redis = if config.url.is_empty() {
            None
        } else {
            let (store, settler) = shared::RedisStore::connect(config).await?;
            tasks.spawn("redis_settler", move || settler.clone().run());
            Some(Arc::new(store))
        };
        Ok(RateLimiter { local: Arc::new(local::LocalStore::new()), redis, on_error: config.on_error, redis_failing_since: Arc::default() })
    }

    /// The shared Redis, when one is configured.
    pub fn shared(&self) -> Option<Arc<shared::RedisStore>> {
        self.redis.clone()
    }

    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Since when Redis has failed every admission (the Redis alert); None while it answers.
    pub fn redis_failing_since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.redis_failing_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn redis_answered(&self, ok: bool) {
        let mut since = self.redis_failing_since.lock().unwrap_or_else(|p| p.into_inner());
        match (ok, *since) {
            (true, Some(_)) => *since = None,
            (false, None) => *since = Some(chrono::Utc::now()),
            _ => {}
        }
    }

    /// Admits the request or refuses it with `429 rate_limit_exceeded` + `Retry-After`. The
    /// returned admission carries the headers and settles its counters when dropped.
    pub async fn admit(&self, subject: &Subject, demand: Demand) -> Result<Admission, Refusal> {
        let checks = subject.checks(demand);
        let id = uuid::Uuid::now_v7().simple().to_string();
        if checks.is_empty() {
            return Ok(Admission { limiter: self.clone(), id, checks, store: StoreKind::Local, states: Vec::new(), reconciled: false });
        }
        let (verdict, store) = match &self.redis {
            Some(redis) => match redis.admit(&id, &checks).await {
                Ok(v) => {
                    self.redis_answered(true);
                    (v, StoreKind::Redis)
                }
                Err(e) => {
                    self.redis_answered(false);
                    shared::report_error(&e);
                    match self.on_error {
                        RedisFailure::Local => (self.local.admit(&id, &checks), StoreKind::Local),
                        RedisFailure::Closed => {
                            return Err(Refusal {
                                error: ApiError::Unavailable {
                                    message: "the rate limiter is unavailable; retry shortly".into(),
                                    retry_after: Duration::from_secs(2),
                                },
                                states: Vec::new(),
                            });
                        }
                    }
                }
            },
            None => (self.local.admit(&id, &checks), StoreKind::Local),
        };
        match verdict {
            Verdict::Admitted { states } => Ok(Admission { limiter: self.clone(), id, checks, store, states, reconciled: false }),
            Verdict::Refused { check, retry_after, states } => {
                let c = &checks[check];
                metrics::counter!("gatehouse_rate_limited_total", "scope" => match c.scope { Scope::Tenant => "tenant", Scope::Credential => "credential" }, "dimension" => c.dim.as_str()).increment(1);
                let whose = match c.scope {
                    Scope::Tenant => "this tenant",
                    Scope::Credential => "this credential",
                };
                let message = if c.amount > c.limit {
                    format!(
                        "this request needs {} {} but {whose} is limited to {} per minute; lower max_tokens or the input",
                        c.amount,
                        c.dim.as_str(),
                        c.limit
                    )
                } else if c.dim == Dimension::Concurrent {
                    format!("{whose} is limited to {} concurrent requests; retry when one finishes", c.limit)
                } else {
                    format!("rate limit reached: {whose} is limited to {} {} per minute", c.limit, c.dim.as_str())
                };
                Err(Refusal {
                    error: ApiError::RateLimited { message, retry_after: retry_after.min(MAX_RETRY_AFTER), code: "rate_limit_exceeded" },
                    states,
                })
            }
        }
    }

    /// The subject's counters as they stand, taking nothing: the headers of an answer refused
    /// before admission (a validation error). Empty when the store cannot be read.
    pub async fn peek(&self, subject: &Subject) -> Vec<CounterState> {
        let checks = subject.checks(Demand::default());
        if checks.is_empty() {
            return Vec::new();
        }
        match &self.redis {
            Some(redis) => match redis.peek(&checks).await {
                Ok(states) => states,
                Err(_) if self.on_error == RedisFailure::Local => self.local.peek(&checks),
                Err(_) => Vec::new(),
            },
            None => self.local.peek(&checks),
        }
    }

    /// `admit`, recording the counters' state for the response headers either way.
    pub async fn admit_recording(&self, subject: &Subject, demand: Demand, states: &mut Vec<CounterState>) -> Result<Admission, ApiError> {
        match self.admit(subject, demand).await {
            Ok(a) => {
                states.extend_from_slice(a.states());
                Ok(a)
            }
            Err(refusal) => {
                *states = refusal.states;
                Err(refusal.error)
            }
        }
    }

    fn settle(&self, store: StoreKind, ops: Vec<Settle>) {
        if ops.is_empty() {
            return;
        }
        match (store, &self.redis) {
            (StoreKind::Redis, Some(redis)) => redis.settle(ops),
            _ => self.local.settle(ops),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Local,
    Redis,
}

/// A refused request: the error and the counters' state for the headers.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub states: Vec<CounterState>,
}

impl Refusal {
    pub fn into_response(self) -> HttpResponse {
        let mut response = actix_web::ResponseError::error_response(&self.error);
        apply_headers(&mut response, &self.states);
        response
    }
}

/// An admitted request's hold on the counters. `reconcile` sets the tokens or audio seconds it
/// really used; dropping it releases the concurrency slot (and, when never reconciled, keeps the
/// reservation, which is the safe side).
pub struct Admission {
    limiter: RateLimiter,
    id: String,
    checks: Vec<Check>,
    store: StoreKind,
    states: Vec<CounterState>,
    reconciled: bool,
}

impl Admission {
    pub fn states(&self) -> &[CounterState] {
        &self.states
    }

    /// Replaces the reservation with what the request used.
    pub fn reconcile(&mut self, used: Demand) {
        if self.reconciled {
            return;
        }
        self.reconciled = true;
        let ops: Vec<Settle> = self
            .checks
            .iter()
            .filter_map(|c| {
                let amount = match c.dim {
                    Dimension::Tokens => used.tokens,
                    Dimension::AudioSeconds => used.audio_seconds,
                    _ => return None,
                };
                (amount != c.amount).then(|| Settle::Reconcile { key: c.key.clone(), id: self.id.clone(), amount })
            })
            .collect();
        self.limiter.settle(self.store, ops);
    }

    pub fn apply_headers(&self, response: &mut HttpResponse) {
        apply_headers(response, &self.states);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let ops: Vec<Settle> = self
            .checks
            .iter()
            .filter(|c| c.dim == Dimension::Concurrent)
            .map(|c| Settle::Release { key: c.key.clone(), id: self.id.clone() })
            .collect();
        self.limiter.settle(self.store, ops);
    }
}

/// A `/v1` handler's answer, success or error, with the rate-limit headers of its admission.
pub fn respond(result: Result<HttpResponse, ApiError>, states: &[CounterState]) -> HttpResponse {
    let mut response = result.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
    apply_headers(&mut response, states);
    response
}

/// The tightest of the tenant and credential counters per dimension.
fn tightest(states: &[CounterState], dim: Dimension) -> Option<CounterState> {
    states.iter().filter(|s| s.dim == dim).min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset))).copied()
}

/// OpenAI's `x-ratelimit-*` headers and the IETF draft's `RateLimit-Policy` / `RateLimit`, for
/// the per-minute dimensions that have a limit.
pub fn apply_headers(response: &mut HttpResponse, states: &[CounterState]) {
    let mut policy = Vec::new();
    let mut current = Vec::new();
    let headers = response.headers_mut();
    for dim in [Dimension::Requests, Dimension::Tokens, Dimension::AudioSeconds] {
        let Some(s) = tightest(states, dim) else { continue };
        let reset_s = s.reset.as_secs_f64().ceil() as u64;
        policy.push(format!("\"{}\";q={};w={}", dim.as_str(), s.limit, WINDOW.as_secs()));
        current.push(format!("\"{}\";r={};t={}", dim.as_str(), s.remaining, reset_s));
        let name = dim.as_str();
        for (suffix, value) in [("limit", s.limit.to_string()), ("remaining", s.remaining.to_string()), ("reset", openai_duration(s.reset))]
        {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(format!("x-ratelimit-{suffix}-{name}")), HeaderValue::try_from(value)) {
                headers.insert(n, v);
            }
        }
    }
    if !policy.is_empty() {
        if let (Ok(p), Ok(c)) = (HeaderValue::try_from(policy.join(", ")), HeaderValue::try_from(current.join(", "))) {
            headers.insert(HeaderName::from_static("ratelimit-policy"), p);
            headers.insert(HeaderName::from_static("ratelimit"), c);
        }
    }
}

/// OpenAI's reset format: `20ms`, `1s`, `6m0s`.
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    if secs < 60 { format!("{secs}s") } else { format!("{}m{}s", secs / 60, secs % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(tenant: Limits, credential: Limits) -> Subject {
        Subject { tenant_id: TenantId::from_trusted("ten_a".to_owned()), credential_id: "key_a".into(), tenant, credential }
    }

    #[test]
    fn checks_skip_unlimited_dimensions() {
        let s = subject(
            Limits { requests_per_minute: Some(10), tokens_per_minute: Some(1000), ..Limits::default() },
            Limits { concurrent_requests: Some(2), ..Limits::default() },
        );
        let checks = s.checks(Demand { tokens: 300, audio_seconds: 0 });
        let keys: Vec<_> = checks.iter().map(|c| (c.key.as_str(), c.amount)).collect();
        assert_eq!(keys, [("t:ten_a:requests", 1), ("t:ten_a:tokens", 300), ("c:key_a:concurrent", 1)]);
    }

    #[test]
    fn openai_durations() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_millis(1200)), "2s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
    }

    #[test]
    fn headers_report_the_tightest_counter() {
        let states = [
            CounterState { dim: Dimension::Requests, limit: 100, remaining: 40, reset: Duration::from_secs(3) },
            CounterState { dim: Dimension::Requests, limit: 10, remaining: 2, reset: Duration::from_millis(500) },
            CounterState { dim: Dimension::Tokens, limit: 1000, remaining: 900, reset: Duration::from_secs(59) },
        ];
        let mut response = HttpResponse::Ok().finish();
        apply_headers(&mut response, &states);
        let h = |n: &str| response.headers().get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("x-ratelimit-limit-requests"), "10");
        assert_eq!(h("x-ratelimit-remaining-requests"), "2");
        assert_eq!(h("x-ratelimit-reset-requests"), "500ms");
        assert_eq!(h("x-ratelimit-remaining-tokens"), "900");
        assert_eq!(h("ratelimit-policy"), "\"requests\";q=10;w=60, \"tokens\";q=1000;w=60");
        assert_eq!(h("ratelimit"), "\"requests\";r=2;t=1, \"tokens\";r=900;t=59");
    }
}
