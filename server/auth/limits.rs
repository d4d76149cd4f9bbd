//! Brute-force protection for the endpoints that authenticate clients (docs/auth.md, brute-force limits):
//! per client IP, per client id, and failures per (client id, IP) with a lockout. Keyed GCRA
//! from `governor`. The IETF RateLimit header fields are rendered in `ratelimit_headers` only,
//! since that draft may still change.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::AuthConfig;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// What the caller may still do in the current window, for the RateLimit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub policy: &'static str,
    pub limit: u32,
    pub window_s: u64,
    pub remaining: u32,
    pub reset_s: u64,
}

/// Refused: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
    pub info: RateInfo,
}

pub struct TokenLimits {
    clock: DefaultClock,
    per_ip: Keyed<IpAddr>,
    per_client: Keyed<String>,
    failures: Keyed<(String, IpAddr)>,
    lockouts: moka::sync::Cache<(String, IpAddr), Instant>,
    lockout: Duration,
    ip_limit: u32,
    client_limit: u32,
    failure_limit: u32,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl TokenLimits {
    pub fn new(config: &AuthConfig) -> TokenLimits {
        let per_ip = Quota::per_minute(nz(config.token_ip_per_min)).allow_burst(nz(config.token_ip_burst));
        let per_client = Quota::per_minute(nz(config.token_client_per_min));
        let failures = Quota::with_period(Duration::from_secs(300) / config.token_failures_per_5min.max(1))
            .unwrap_or_else(|| Quota::per_minute(nz(2)))
            .allow_burst(nz(config.token_failures_per_5min));
        TokenLimits {
            clock: DefaultClock::default(),
            per_ip: RateLimiter::keyed(per_ip).with_middleware(),
            per_client: RateLimiter::keyed(per_client).with_middleware(),
            failures: RateLimiter::keyed(failures).with_middleware(),
            lockouts: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(config.token_lockout_s.max(1)))
                .build(),
            lockout: Duration::from_secs(config.token_lockout_s.max(1)),
            ip_limit: config.token_ip_per_min,
            client_limit: config.token_client_per_min,
            failure_limit: config.token_failures_per_5min,
        }
    }

    /// The dashboard's login form, on the same machinery: a limit per client IP, and a lockout
    /// per (account email, IP) after too many failures. The account key is the lower-cased email.
    pub fn for_dashboard_logins(config: &crate::config::DashboardConfig) -> TokenLimits {
        TokenLimits::new(&AuthConfig {
            token_ip_per_min: config.login_ip_per_min,
            token_ip_burst: config.login_ip_per_min,
            // Not used for logins (the account key is only counted in failures).
            token_client_per_min: 1_000_000,
            token_failures_per_5min: config.login_failures_per_5min,
            token_lockout_s: config.login_lockout_s,
            ..AuthConfig::default()
        })
    }

    fn info(policy: &'static str, limit: u32, snapshot: &governor::middleware::StateSnapshot) -> RateInfo {
        let remaining = snapshot.remaining_burst_capacity();
        let per_unit = 60.0 / f64::from(limit.max(1));
        RateInfo { policy, limit, window_s: 60, remaining, reset_s: (f64::from(limit.saturating_sub(remaining)) * per_unit).ceil() as u64 }
    }

    fn check<K: Clone + std::hash::Hash + Eq>(
        &self,
        limiter: &Keyed<K>,
        key: &K,
        policy: &'static str,
        limit: u32,
    ) -> Result<RateInfo, Limited> {
        match limiter.check_key(key) {
            Ok(snapshot) => Ok(Self::info(policy, limit, &snapshot)),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Limited {
                    retry_after: wait.max(Duration::from_secs(1)),
                    info: RateInfo { policy, limit, window_s: 60, remaining: 0, reset_s: wait.as_secs().max(1) },
                })
            }
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<RateInfo, Limited> {
        self.check(&self.per_ip, &ip, "token-ip", self.ip_limit)
    }

    pub fn check_client(&self, client_id: &str) -> Result<RateInfo, Limited> {
        self.check(&self.per_client, &client_id.to_owned(), "token-client", self.client_limit)
    }

    /// Some(the refusal, with its RateLimit fields) while this (client, IP) pair is locked out.
    pub fn locked_out(&self, client_id: &str, ip: IpAddr) -> Option<Limited> {
        let until = self.lockouts.get(&(client_id.to_owned(), ip))?;
        let remaining = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        let info = RateInfo {
            policy: "token-failures",
            limit: self.failure_limit,
            window_s: 300,
            remaining: 0,
            reset_s: remaining.as_secs_f64().ceil() as u64,
        };
        Some(Limited { retry_after: remaining, info })
    }

    /// Counts a failed authentication; past the limit the pair is locked out.
    pub fn record_failure(&self, client_id: &str, ip: IpAddr) {
        let key = (client_id.to_owned(), ip);
        if self.failures.check_key(&key).is_err() {
            self.lockouts.insert(key, Instant::now() + self.lockout);
        }
    }

    /// Drops limiter state for keys that are back to full capacity (bounded memory).
    pub fn shrink(&self) {
        self.per_ip.retain_recent();
        self.per_client.retain_recent();
        self.failures.retain_recent();
    }
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers, structured-field lists).
pub fn ratelimit_headers(info: &RateInfo) -> [(&'static str, String); 2] {
    [
        ("RateLimit-Policy", format!("\"{}\";q={};w={}", info.policy, info.limit, info.window_s)),
        ("RateLimit", format!("\"{}\";r={};t={}", info.policy, info.remaining, info.reset_s)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TokenLimits {
        TokenLimits::new(&AuthConfig { token_client_per_min: 3, token_failures_per_5min: 2, token_lockout_s: 60, ..Default::default() })
    }

    #[test]
    fn per_client_limit_counts_down_then_refuses() {
        let l = limits();
        let a = l.check_client("cli_a").unwrap();
        assert_eq!((a.limit, a.remaining), (3, 2));
        l.check_client("cli_a").unwrap();
        l.check_client("cli_a").unwrap();
        let refused = l.check_client("cli_a").unwrap_err();
        assert!(refused.retry_after >= Duration::from_secs(1));
        assert!(l.check_client("cli_b").is_ok(), "keys are independent");
    }

    #[test]
    fn failures_lock_out_the_pair_only() {
        let l = limits();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            l.record_failure("cli_a", ip);
        }
        assert!(l.locked_out("cli_a", ip).is_some());
        assert!(l.locked_out("cli_a", other).is_none(), "the real client elsewhere is not locked out");
    }

    #[test]
    fn headers_are_structured_field_lists() {
        let [(p, pv), (r, rv)] =
            ratelimit_headers(&RateInfo { policy: "token-client", limit: 30, window_s: 60, remaining: 12, reset_s: 41 });
        assert_eq!((p, pv.as_str()), ("RateLimit-Policy", "\"token-client\";q=30;w=60"));
        assert_eq!((r, rv.as_str()), ("RateLimit", "\"token-client\";r=12;t=41"));
    }
}
