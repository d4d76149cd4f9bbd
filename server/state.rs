//! `AppState`: everything a handler needs, shared as one `web::Data`. Actor handles join it as
//! their issues land; handlers never see actor addresses or the raw pool.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::audit_log::AuditLog;
use crate::auth::service::AuthService;
use crate::config::Config;
use crate::db::Db;

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
