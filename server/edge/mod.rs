//! Edge defenses: what runs on a request before authentication or any body work, keyed by the
//! client's address (behind the trusted-proxy rules).
//!
//! - **IP rules** (`lists`): the platform's deny list refuses an address outright (403
//!   `ip_blocked`); a tenant's rules refuse its credentials from other networks (checked as soon as
//!   the credential names the tenant). Platform allow rules are never banned.
//! - **Bans** (`detector`): requests, failed authentications and other 4xx per address in a
//!   sliding window; past a threshold the address is banned for a while (escalating on repeat),
//!   answered 429 with `Retry-After`. Counts are summed across instances through Redis when it is
//!   configured; bans are rows in PostgreSQL that every instance reads each sync round, so
//!   operators can list and lift them from anywhere.
//!
//! - **CORS** (`cors`): each tenant's allowed browser origins, preflights answered here.
//!
//! The per-request work is in memory: one read-locked lookup for the ban, a scan of the platform
//! deny list, one counter update after the answer.

pub mod cors;
pub mod detector;
pub mod lists;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use ipnet::IpNet;
use serde_json::json;

use crate::config::EdgeConfig;
use crate::db::audit::{ActorKind, AuditEvent, Outcome};
use crate::db::{Db, alerts, ip_rules, tenants};
use crate::domain::{Severity, TenantId};
use crate::error::ApiError;
use crate::error::oauth::OAuthError;
use crate::limits::shared::{RedisStore, report_error};
use crate::tasks::audit_writer::AuditLog;
use cors::CorsOrigins;
use detector::{Counts, Detector, Reason, now_ms};
use lists::Lists;

/// Paths the edge leaves alone: probes and scrapes come from infrastructure.
const EXEMPT: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub struct Edge {
    config: EdgeConfig,
    detector: Detector,
    lists: RwLock<Arc<Lists>>,
    cors: RwLock<Arc<CorsOrigins>>,
    never_ban: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    db: Db,
    audit: AuditLog,
    redis: Option<Arc<RedisStore>>,
}

impl Edge {
    pub fn new(config: EdgeConfig, trusted_proxies: Vec<IpNet>, db: Db, audit: AuditLog, redis: Option<Arc<RedisStore>>) -> Edge {
        let b = &config.bans;
        let detector = Detector::new(
            Duration::from_secs(b.window_s),
            [u64::from(b.max_requests), u64::from(b.max_auth_failures), u64::from(b.max_client_errors)],
            b.max_tracked,
        );
        let never_ban: Vec<IpNet> = b.allow.iter().filter_map(|c| crate::domain::parse_cidr(c)).collect();
        let lists = RwLock::new(Arc::new(Lists::build(&[], &never_ban)));
        let cors = RwLock::new(Arc::new(CorsOrigins::default()));
        Edge { config, detector, lists, cors, never_ban, trusted_proxies, db, audit, redis }
    }

    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.config.sync_ms)
    }

    /// The rules in force, read-locked for one check (no reference count to bump per request).
    fn lists(&self) -> std::sync::RwLockReadGuard<'_, Arc<Lists>> {
        self.lists.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every tenant's allowed CORS origins.
    pub fn cors(&self) -> Arc<CorsOrigins> {
        self.cors.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tenant's IP rules refuse `ip` (403 `ip_blocked`).
    pub fn tenant_refuses(&self, tenant: &TenantId, ip: Option<IpAddr>) -> bool {
        self.lists().tenant_refuses(tenant, ip)
    }

    /// What the edge answers `ip` before anything else runs, if it refuses it.
    pub fn refusal(&self, ip: IpAddr) -> Option<ApiError> {
        if let Some(left) = self.detector.banned(ip, now_ms()) {
            metrics::counter!("gatehouse_edge_refusals_total", "reason" => "banned").increment(1);
            return Some(ApiError::RateLimited {
                message: "too many bad requests from this address: it is banned for a while".into(),
                retry_after: left,
                code: "ip_banned",
            });
        }
        if self.lists().platform_denies(ip) {
            metrics::counter!("gatehouse_edge_refusals_total", "reason" => "ip_rule").increment(1);
            return Some(ApiError::IpBlocked);
        }
        None
    }

    /// Counts an answer to `ip`; bans it (in the background) when that crosses a threshold.
    pub fn observe(self: &Arc<Self>, ip: IpAddr, status: u16) {
        if !self.config.bans.enabled {
            return;
        }
        if let Some((reason, seen)) = self.detector.observe(ip, status, now_ms()) {
            let edge = self.clone();
            actix_rt::spawn(async move { edge.ban(ip, reason, seen).await });
        }
    }

    /// Bans `ip` for `reason`: here at once, then as a shared row (with its audit event and alert);
    /// an address that is never banned, or is banned already, is left alone.
    pub async fn ban(&self, ip: IpAddr, reason: Reason, observed: u64) {
        if self.lists().never_banned(ip) {
            return;
        }
        let durations: Vec<Duration> = self.config.bans.durations_s.iter().map(|s| Duration::from_secs(*s)).collect();
        let first = durations.first().copied().unwrap_or(Duration::from_secs(60));
        self.detector.ban(ip, now_ms() + first.as_millis() as u64);
        let forgive = chrono::Duration::seconds(self.config.bans.forgive_after_s as i64);
        let address = ip.to_string();
        let result = self
            .db
            .run(move |conn| {
                use diesel::Connection;
                conn.transaction(|conn| {
                    let (ban, new) = ip_rules::ban(conn, &address, reason.as_str(), observed as i64, &durations, forgive)?;
                    if !new {
                        return Ok((ban, false));
                    }
                    let payload = json!({
                        "state": "firing",
                        "summary": format!("address {address} banned for {} ({})", reason.as_str(), ban_length(&ban)),
                        "details": { "Address": address, "Reason": reason.as_str(), "Observed": observed, "Ban": ban.level + 1, "Until": ban.until.to_rfc3339() },
                        "hint": "gatehouse bans list shows every ban; gatehouse bans lift ADDRESS ends one early; \
                                 a platform allow rule (gatehouse ip-rules add CIDR --action allow) keeps a network from being banned",
                    });
                    let key = format!("ip_banned:{}", ban.id);
                    let alert =
                        alerts::NewAlert { tenant: None, kind: "ip_banned", dedup_key: &key, severity: Severity::Warning, payload: &payload };
                    alerts::enqueue(conn, &alert)?;
                    Ok((ban, true))
                })
            })
            .await;
        match result {
            // Banned already (by another instance): hold it here until the ban in force ends.
            Ok((ban, false)) => self.detector.ban(ip, ban.until.timestamp_millis().max(0) as u64),
            Ok((ban, true)) => {
                self.detector.ban(ip, ban.until.timestamp_millis().max(0) as u64);
                metrics::counter!("gatehouse_ip_bans_total", "reason" => reason.as_str()).increment(1);
                tracing::warn!(%ip, reason = reason.as_str(), observed, level = ban.level, until = %ban.until, "address banned");
                let event = AuditEvent::new(ActorKind::System, "edge.ban", Outcome::Success).target("ip", ip.to_string()).details(json!({
                    "reason": reason.as_str(), "observed": observed, "level": ban.level, "until": ban.until,
                }));
                self.audit.record(event).await;
            }
            Err(e) => tracing::warn!(%ip, error = %e, "cannot record a ban; it holds on this instance only"),
        }
    }

    /// One sync round: share this instance's counts through Redis (banning what the sums show),
    /// then read the active bans and the IP rules from PostgreSQL.
    pub async fn sync(&self) {
        // Reload first: an address whose ban was lifted has its shared counts cleared before this
        // round reads them, or the old counts would ban it again at once.
        self.reload().await;
        if self.config.bans.enabled {
            self.share_counts().await;
        }
    }

    /// Reads the IP rules, the active bans and the tenants' CORS origins from PostgreSQL (after a
    /// change made here, and each sync round).
    pub async fn reload(&self) {
        let loaded = self
            .db
            .run(|conn| {
                Ok((ip_rules::all_rules_of_all_tenants(conn)?, ip_rules::active_bans(conn)?, tenants::cors_origins_of_all_tenants(conn)?))
            })
            .await;
        match loaded {
            Ok((rules, bans, origins)) => {
                *self.lists.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Lists::build(&rules, &self.never_ban));
                *self.cors.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(CorsOrigins::build(origins));
                let now = now_ms();
                let active = bans
                    .iter()
                    .filter_map(|b| Some((b.ip.parse::<IpAddr>().ok()?, b.until.timestamp_millis().max(0) as u64)))
                    .filter(|(_, until)| *until > now)
                    .collect();
                let ended = self.detector.replace_bans(active);
                self.forget_counts(&ended).await;
                metrics::gauge!("gatehouse_ip_bans_active").set(self.detector.active_bans(now) as f64);
            }
            Err(e) => tracing::debug!(error = %e, "edge: cannot read IP rules, bans and CORS origins; keeping the last ones"),
        }
    }

    /// Clears the shared counts of addresses whose ban ended: they start afresh everywhere.
    async fn forget_counts(&self, ended: &[IpAddr]) {
        let Some(redis) = self.redis.as_ref().filter(|_| !ended.is_empty()) else { return };
        let (window, _) = self.detector.window_at(now_ms());
        let mut pipe = redis::pipe();
        for ip in ended {
            for w in [window, window.saturating_sub(1)] {
                pipe.cmd("DEL").arg(redis.key("edge", format_args!("{w}:{ip}"))).ignore();
            }
        }
        if let Err(e) = redis.query::<()>(&pipe).await {
            report_error(&e);
        }
    }

    async fn share_counts(&self) {
        let Some(redis) = &self.redis else { return };
        let now = now_ms();
        let (window, taken) = self.detector.take_unsynced(now);
        if taken.is_empty() {
            return;
        }
        let ttl = self.detector.window_ms() * 3;
        let mut pipe = redis::pipe();
        for (ip, counts) in &taken {
            let key = redis.key("edge", format_args!("{window}:{ip}"));
            for (field, n) in ["r", "a", "e"].into_iter().zip(counts) {
                if *n > 0 {
                    pipe.cmd("HINCRBY").arg(&key).arg(field).arg(*n).ignore();
                }
            }
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
        }
        for (ip, _) in &taken {
            for w in [window, window.saturating_sub(1)] {
                pipe.cmd("HMGET").arg(redis.key("edge", format_args!("{w}:{ip}"))).arg("r").arg("a").arg("e");
            }
        }
        let sums: Vec<Vec<Option<u64>>> = match redis.query(&pipe).await {
            Ok(sums) => sums,
            Err(e) => return report_error(&e),
        };
        let counts = |v: Option<&Vec<Option<u64>>>| -> Counts {
            let v = v.map(Vec::as_slice).unwrap_or_default();
            [0, 1, 2].map(|i| v.get(i).copied().flatten().unwrap_or(0))
        };
        for (i, (ip, _)) in taken.iter().enumerate() {
            let (current, previous) = (counts(sums.get(2 * i)), counts(sums.get(2 * i + 1)));
            if let Some((reason, seen)) = self.detector.check_shared(*ip, current, previous, now) {
                self.ban(*ip, reason, seen).await;
            }
        }
    }

    fn client_ip(&self, req: &ServiceRequest) -> Option<IpAddr> {
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        crate::domain::client_ip(req.peer_addr().map(|a| a.ip()), forwarded, &self.trusted_proxies)
    }
}

fn ban_length(ban: &ip_rules::IpBan) -> String {
    let secs = (ban.until - ban.started_at).num_seconds().max(0);
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Middleware for the whole application: refuses banned and denied addresses before anything
/// else runs, and counts every answer.
pub async fn guard<B: MessageBody>(
    edge: Arc<Edge>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(ip) = edge.client_ip(&req).filter(|_| !EXEMPT.contains(&req.path())) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    if let Some(refusal) = edge.refusal(ip) {
        // In the caller's protocol: OAuth 2.0 errors on the authorization server's endpoints.
        let response = if req.path().starts_with("/oauth2/") {
            let oauth = match &refusal {
                ApiError::RateLimited { retry_after, .. } => OAuthError::rate_limited(*retry_after, Vec::new()),
                _ => OAuthError::address_refused(),
            };
            actix_web::ResponseError::error_response(&oauth)
        } else {
            actix_web::ResponseError::error_response(&refusal)
        };
        return Ok(req.into_response(response).map_into_right_body());
    }
    let response = next.call(req).await?;
    edge.observe(ip, response.status().as_u16());
    Ok(response.map_into_left_body())
}
