//! `AppState`: everything a handler needs, shared as one `web::Data`. Actor handles join it as
//! their issues land; handlers never see actor addresses or the raw pool.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::audit_log::AuditLog;
use crate::auth::service::AuthService;
use crate::config::Config;
use crate::db::Db;

/// The outbound HTTP client of one server worker thread. A client's connections are driven by
/// tasks on the thread that opened them, so each worker thread keeps its own: a relayed request
/// and its upstream connection stay on one thread, with no cross-thread wake-up per frame.
#[derive(Clone)]
pub struct WorkerHttp(pub reqwest::Client);

impl WorkerHttp {
    /// How Gatehouse calls workers: short connect timeout, idle connections kept a minute.
    pub fn build() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).pool_idle_timeout(Duration::from_secs(60)).build()
    }
}

pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub auth: Arc<AuthService>,
    pub audit: AuditLog,
    pub trusted_proxies: Vec<IpNet>,
    pub gateway: Arc<crate::workers::gateway::Gateway>,
    /// Outbound HTTP to workers (rustls, system CA roots).
    pub http: reqwest::Client,
    /// Per-tenant request policy (plan limits), cached ≤ 5 s so plan changes apply without restart.
    pub policies: moka::future::Cache<String, Arc<crate::policy::TenantPolicy>>,
    pub usage: crate::usage::QuotaAccountant,
    pub limiter: crate::limits::RateLimiter,
    /// Per-credential limit overrides, cached ≤ 5 s like the plan.
    pub credential_limits: moka::future::Cache<String, crate::limits::Limits>,
    /// This instance's alignment-job runners.
    pub jobs: crate::jobs::JobRunner,
}

impl AppState {
    /// The caller's IP: the peer, or the forwarded client when the peer is a trusted proxy.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        crate::domain::client_ip(req.peer_addr().map(|a| a.ip()), forwarded, &self.trusted_proxies)
    }
}
