//! `AppState`: everything a handler needs, shared as one `web::Data`. Handlers reach actors
//! through their handles and the database through `db.run`, never an actor address or the pool.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::actors::alert_mailer::AlertMailerHandle;
use crate::actors::quota_accountant::QuotaAccountantHandle;
use crate::admission::Admitter;
use crate::auth::limits::TokenLimits;
use crate::auth::service::AuthService;
use crate::config::Config;
use crate::db::Db;
use crate::domain::Slots;
use crate::edge::Edge;
use crate::jobs::JobRunner;
use crate::tasks::Supervisor;
use crate::tasks::audit_writer::AuditLog;
use crate::workers::gateway::Gateway;

/// The HTTP client one server thread uses to call GPU workers. A client's connections are
/// driven by tasks on the thread that opened them, so each server thread keeps its own: a
/// relayed request and its upstream connection stay on one thread, with no cross-thread wake-up
/// per frame.
#[derive(Clone)]
pub struct UpstreamClient(pub reqwest::Client);

impl UpstreamClient {
    /// How Gatehouse calls workers: short connect timeout, idle connections kept a minute, and
    /// no redirects (a worker's answer goes back as it is; a gateway never wanders off to
    /// another address on a worker's say-so).
    pub fn build() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }
}

pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub auth: Arc<AuthService>,
    pub audit: AuditLog,
    pub trusted_proxies: Vec<IpNet>,
    pub gateway: Arc<Gateway>,
    /// Outbound HTTP to workers for work off the server threads (health checks, batches).
    pub upstream: reqwest::Client,
    /// Policy, routes, rate limits and quotas: the admission step of every `/v1` request.
    pub admission: Admitter,
    pub usage: QuotaAccountantHandle,
    /// This instance's alignment-job runners.
    pub jobs: Arc<JobRunner>,
    /// The background loops and actors, and how often each had to be restarted.
    pub tasks: Arc<Supervisor>,
    /// Usage exports running now (bounded per tenant and in all).
    pub exports: Arc<Slots>,
    /// Audio uploads being decoded now (bounded per tenant and in all).
    pub decodes: Arc<Slots>,
    /// Delivers the alert outbox by email.
    pub alerts: AlertMailerHandle,
    /// IP rules and bans: what runs before authentication.
    pub edge: Arc<Edge>,
    /// The dashboard login form's per-IP limit and per-(account, IP) lockout.
    pub login_limits: Arc<TokenLimits>,
}

impl AppState {
    /// The caller's IP: the peer, or the forwarded client when the peer is a trusted proxy.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        crate::domain::client_ip(req.peer_addr().map(|a| a.ip()), forwarded, &self.trusted_proxies)
    }
}
