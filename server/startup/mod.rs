//! `Application`: builds the whole server from a `Config` (database, listener, TLS, middleware,
//! routes, background maintenance) and runs it until a shutdown signal. Tests build the very same
//! thing on port 0.

mod background;
pub mod tls;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::middleware::{self, DefaultHeaders};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tracing_actix_web::TracingLogger;

use crate::actors::alert_mailer::AlertMailerHandle;
use crate::actors::quota_accountant::QuotaAccountantHandle;
use crate::admission::{Admitter, PolicyStore};
use crate::auth::service::AuthService;
use crate::config::Config;
use crate::db::{Db, redact_url};
use crate::domain::Slots;
use crate::edge::Edge;
use crate::jobs::JobRunner;
use crate::limits::RateLimiter;
use crate::state::{AppState, UpstreamClient};
use crate::tasks::Supervisor;
use crate::tasks::audit_writer::AuditLog;
use crate::telemetry::{GatehouseRootSpan, request_id_middleware};
use crate::workers::gateway::Gateway;

pub struct Application {
    port: u16,
    tls: bool,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with(config, |_| {}).await
    }

    /// Like `build`, with extra routes mounted beside the real ones (tests use this to add a
    /// deliberately slow endpoint for the graceful-shutdown check).
    pub async fn build_with<F>(config: Config, extra_routes: F) -> anyhow::Result<Application>
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        config.validate()?;
        config.require_auth_secrets()?;
        let url = config.database_url()?.to_owned();
        let db = Db::new(&url, &config.database);
        db.wait_until_reachable(Duration::from_secs(config.database.startup_timeout_s))
            .await
            .with_context(|| format!("database {} is unreachable", redact_url(&url)))?;
        let mut config = config;
        let addr = config.listen_addr()?;
        let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let port = listener.local_addr()?.port();
        if config.auth.issuer.is_empty() {
            // Development default: the address actually bound (port 0 resolved).
            let scheme = if config.tls.enabled() { "https" } else { "http" };
            config.auth.issuer = format!("{scheme}://{}:{port}", addr.ip());
        }

        crate::telemetry::metrics::install();
        let auth = Arc::new(AuthService::new(&config)?);
        background::run_maintenance(&db, &config, &auth).await;
        if let Err(e) = auth.reload_keys(&db).await {
            // Only when the schema is behind (readiness says so); the reload task retries.
            tracing::warn!(error = %e, "signing keys not loaded yet");
        }
        let tasks = Supervisor::new(Duration::from_millis(500));
        let audit = AuditLog::start(db.clone(), &tasks);
        let trusted_proxies: Vec<ipnet::IpNet> =
            config.server.trusted_proxies.iter().filter_map(|c| crate::domain::parse_cidr(c)).collect();
        let config = Arc::new(config);
        let upstream = UpstreamClient::build().context("cannot build the outbound HTTP client")?;
        apply_declared_pools(&db, &config, &auth).await?;
        let stats_window = Duration::from_secs(config.alerts.window_s);
        let gateway = Arc::new(Gateway::new(upstream.clone(), &config.gateway, stats_window, tasks.clone()));
        if let Err(e) = gateway.refresh(&db, auth.master.clone()).await {
            tracing::warn!(error = %e, "worker pools not loaded yet");
        }
        // The prompt rule packs compile once here: a broken rules file stops the start.
        let prompt_rules = crate::domain::prompt_rules::Catalogue::embedded().context("prompt rule packs")?;
        let policies = PolicyStore::new(db.clone(), Duration::from_millis(config.gateway.policy_cache_ttl_ms), prompt_rules);
        let limiter = RateLimiter::new(&config.redis, &tasks).await?;
        let usage = QuotaAccountantHandle::start_journaled(db.clone(), &config.usage)?.with_redis(limiter.shared(), config.redis.on_error);
        let edge = Arc::new(Edge::new(config.edge.clone(), trusted_proxies.clone(), db.clone(), audit.clone(), limiter.shared()));
        edge.sync().await;
        let admission = Admitter::new(policies.clone(), limiter, usage.clone(), gateway.clone());
        let link = if config.alerts.dashboard_url.is_empty() { config.issuer() } else { config.alerts.dashboard_url.clone() };
        let alerts = AlertMailerHandle::start(db.clone(), &config.alerts, link)?;
        let jobs = JobRunner::new(db.clone(), config.alignment.clone(), gateway.clone(), policies, usage.clone());
        let state = web::Data::new(AppState {
            db,
            config: config.clone(),
            auth,
            audit,
            trusted_proxies,
            gateway,
            upstream,
            admission,
            usage,
            jobs,
            tasks,
            exports: Arc::new(Slots::new(config.usage.max_exports_per_tenant, config.usage.max_exports)),
            decodes: Arc::new(Slots::new(config.alignment.max_concurrent_decodes_per_tenant, config.alignment.max_concurrent_decodes)),
            alerts,
            edge: edge.clone(),
            login_limits: Arc::new(crate::auth::limits::TokenLimits::for_dashboard_logins(&config.dashboard)),
        });
        let tls = config.tls.enabled();
        let max_body = config.server.max_body_bytes;

        // One upstream client per server thread, built here on the main thread: building one
        // initialises TLS state, which must not live on server threads that may still be
        // stopping while the process exits (aws-lc's teardown races them).
        let thread_count = if config.server.threads > 0 {
            config.server.threads
        } else {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        };
        let worker_clients = Arc::new(
            (0..thread_count)
                .map(|_| UpstreamClient::build())
                .collect::<Result<Vec<_>, _>>()
                .context("cannot build the outbound HTTP clients")?,
        );
        let next_client = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app_state = state.clone();
        let max_head = config.server.max_header_bytes;
        let mut server = HttpServer::new(move || {
            let security_headers = security_headers(tls);
            // Runs once per server thread: each takes its own upstream client.
            let index = next_client.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let upstream = worker_clients.get(index % worker_clients.len().max(1)).cloned().unwrap_or_else(|| app_state.upstream.clone());
            App::new()
                .app_data(app_state.clone())
                .app_data(web::Data::new(UpstreamClient(upstream)))
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(web::JsonConfig::default().limit(max_body).error_handler(move |e, _| crate::error::json_error(e, max_body)))
                .app_data(web::FormConfig::default().limit(max_body))
                .app_data(web::QueryConfig::default().error_handler(|e, _| crate::error::query_error(e)))
                .app_data(web::PathConfig::default().error_handler(|e, _| crate::error::path_error(e)))
                .wrap(middleware::from_fn(move |req, next| limit_request_head(max_head, req, next)))
                .wrap(middleware::from_fn({
                    let edge = edge.clone();
                    move |req, next| crate::edge::cors::cors(edge.clone(), req, next)
                }))
                .wrap(middleware::from_fn({
                    let edge = edge.clone();
                    move |req, next| crate::edge::guard(edge.clone(), req, next)
                }))
                .wrap(security_headers)
                .wrap(middleware::from_fn(request_id_middleware))
                .wrap(TracingLogger::<GatehouseRootSpan>::new())
                .configure(crate::routes::configure)
                .configure(crate::dashboard::configure)
                .configure(extra_routes.clone())
                .default_service(web::to(crate::routes::not_found))
        })
        .shutdown_timeout(config.server.shutdown_timeout_s)
        // Relayed SSE events are small writes: without TCP_NODELAY, Nagle holds each one until the
        // client ACKs the previous, which a delayed ACK makes ~40 ms.
        .tcp_nodelay(true)
        .keep_alive(Duration::from_secs(config.server.keep_alive_s))
        .client_request_timeout(Duration::from_millis(config.server.client_request_timeout_ms))
        .disable_signals();
        if config.server.threads > 0 {
            server = server.workers(config.server.threads);
        }
        let server = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => server.listen_rustls_0_23(listener, crate::startup::tls::server_config(cert, key)?)?,
            _ => server.listen(listener)?,
        }
        .run();

        background::start(state.clone());

        tracing::info!(%addr, port, tls, "gatehouse listening");
        Ok(Application { port, tls, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self, host: &str) -> String {
        format!("{}://{host}:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Stops the server: `graceful` drains in-flight requests up to `server.shutdown_timeout_s`.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT (or `handle().stop(…)`), then stops accepting, drains
    /// in-flight requests up to the shutdown timeout, and lets background work flush.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let signals = actix_rt::spawn(async move {
            if let Some(signal) = wait_for_signal().await {
                tracing::info!(signal, "shutdown requested; draining in-flight requests");
                handle.stop(true).await;
            }
        });
        let result = self.server.await;
        signals.abort();
        self.state.tasks.stop();
        self.state.jobs.shutdown().await;
        self.state.usage.flush().await;
        self.state.alerts.deliver_now().await;
        self.state.audit.flush().await;
        tracing::info!("gatehouse stopped");
        result.context("server failed")
    }
}

/// 431 for a request whose line and headers together pass `server.max_header_bytes`, before any
/// authentication or body work. (Heads past the HTTP parser's own 128 KiB buffer never reach here:
/// the parser answers those 431 itself and closes the connection.)
async fn limit_request_head<B: MessageBody>(
    limit: usize,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    // As on the wire: "METHOD URI HTTP/1.1\r\n", then "name: value\r\n" for each header.
    let uri = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    let line = req.method().as_str().len() + uri + 12;
    let head = line + req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>();
    if head > limit {
        let response = actix_web::ResponseError::error_response(&crate::error::ApiError::HeadersTooLarge { limit });
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

fn security_headers(tls: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cross-Origin-Resource-Policy", "same-origin"))
        .add((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ));
    if tls { headers.add(("Strict-Transport-Security", "max-age=63072000; includeSubDomains")) } else { headers }
}

/// Applies the config file's `[[pools]]` (skipped, with a warning, while migrations are pending:
/// readiness reports that). A declaration the database refuses stops the start-up.
async fn apply_declared_pools(db: &Db, config: &Config, auth: &AuthService) -> anyhow::Result<()> {
    let declared = config.pools.clone();
    let master = auth.master.clone();
    let applied = db
        .run(move |conn| {
            if !crate::db::migrations::pending(conn)?.is_empty() {
                return Ok(None);
            }
            Ok(Some(crate::service::workers::apply_declared_pools(
                conn,
                &master,
                &declared,
                &crate::service::Actor { id: "config".into(), ..crate::service::Actor::cli() },
            )))
        })
        .await;
    match applied {
        Ok(Some(Ok(report))) => {
            if report != Default::default() {
                tracing::info!(created = ?report.created, updated = ?report.updated, deleted = ?report.deleted, "pools from the config file applied");
            }
            Ok(())
        }
        Ok(Some(Err(e))) => Err(anyhow::anyhow!("the config file's pools cannot be applied: {e}")),
        Ok(None) => {
            tracing::warn!("migrations pending: the config file's pools are not applied yet");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "the config file's pools are not applied");
            Ok(())
        }
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT.
pub(crate) async fn wait_for_signal() -> Option<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut int = signal(SignalKind::interrupt()).ok()?;
    tokio::select! {
        _ = term.recv() => Some("SIGTERM"),
        _ = int.recv() => Some("SIGINT"),
    }
}
