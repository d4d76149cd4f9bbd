//! The platform: worker pools and workers (stored state with the live queue: waiting requests,
//! each worker's health and requests in flight; drain and remove), signing keys (list, rotate),
//! and usage across tenants with the all-tenant export. The same service calls as
//! `/api/v1/pools`, `/api/v1/workers/…`, `/api/v1/signing-keys` and `/api/v1/usage/export`.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{Datelike, Utc};
use serde::Deserialize;

use crate::dashboard::chrome::{self, Chrome};
use crate::dashboard::{PageError, Session, grouped, when};
use crate::domain::WorkerState;
use crate::metering::report::{Format, Month};
use crate::state::AppState;

pub struct WorkerRow {
    pub id: String,
    pub url: String,
    pub state: String,
    pub health: String,
    pub in_flight: String,
    /// The worker's own reading (vLLM running + waiting requests), when it reports one.
    pub load: String,
    pub slots: i32,
    pub changeable: bool,
}

pub struct PoolRow {
    pub name: String,
    pub kind: String,
    pub models: String,
    pub waiting: String,
    pub wait_p95: String,
    pub workers: Vec<WorkerRow>,
}

#[derive(Template)]
#[template(path = "admin/pools.html")]
struct PoolsPage {
    chrome: Chrome,
    pools: Vec<PoolRow>,
}

pub async fn get_pools(req: HttpRequest, state: web::Data<AppState>, s: Session) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let pools = state.db.run(|conn| Ok(crate::service::workers::list_pools(conn))).await??;
    let mut rows = Vec::new();
    for pool in pools {
        let live = match state.gateway.pools().into_iter().find(|r| r.pool_id == pool.id) {
            Some(route) => Some(route.queue.status().await),
            None => None,
        };
        let workers = pool
            .workers
            .into_iter()
            .map(|w| {
                let seen = live.as_ref().and_then(|l| l.workers.iter().find(|(id, _, _)| *id == w.id));
                WorkerRow {
                    changeable: w.state != WorkerState::Removed,
                    health: seen.map_or_else(|| "–".into(), |(_, status, _)| format!("{status:?}").to_lowercase()),
                    in_flight: seen.map_or_else(|| "–".into(), |(_, _, n)| n.to_string()),
                    load: live
                        .as_ref()
                        .and_then(|l| l.worker_loads.iter().find(|(id, _)| *id == w.id))
                        .and_then(|(_, busy)| *busy)
                        .map_or_else(|| "–".into(), |b| b.to_string()),
                    state: w.state.to_string(),
                    slots: w.slots,
                    url: w.base_url,
                    id: w.id,
                }
            })
            .collect();
        rows.push(PoolRow {
            kind: pool.kind.to_string(),
            models: pool.models.join(", "),
            waiting: live.as_ref().map_or_else(|| "–".into(), |l| l.waiting.to_string()),
            wait_p95: live.as_ref().and_then(|l| l.recent.wait_p95).map_or_else(|| "–".into(), |d| format!("{} ms", d.as_millis())),
            name: pool.name,
            workers,
        });
    }
    chrome::render(&req, &PoolsPage { chrome: Chrome::new(&s, &req, None, "/admin/pools"), pools: rows })
}

async fn set_state(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    id: String,
    body: web::Bytes,
    to: WorkerState,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    s.form(&req, &body)?;
    let actor = s.actor(&state, &req);
    let changed = state.db.run(move |conn| Ok(crate::service::workers::set_worker_state(conn, &id, to, &actor))).await?;
    match changed {
        Ok(w) => {
            if let Err(e) = state.gateway.refresh(&state.db, state.auth.master.clone()).await {
                tracing::warn!(error = %e, "worker pools not reloaded after a dashboard change");
            }
            Ok(chrome::redirect_with("/admin/pools", &format!("Worker {} is {}.", w.id, w.state), false))
        }
        Err(crate::service::ServiceError::Conflict(m)) => Ok(chrome::redirect_with("/admin/pools", &m, true)),
        Err(e) => Err(e.into()),
    }
}

pub async fn drain_worker(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    set_state(req, state, s, path.into_inner(), body, WorkerState::Draining).await
}

pub async fn remove_worker(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    set_state(req, state, s, path.into_inner(), body, WorkerState::Removed).await
}

pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub created: String,
    pub activated: String,
    pub retiring: String,
}

#[derive(Template)]
#[template(path = "admin/signing_keys.html")]
struct SigningKeysPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
}

pub async fn get_signing_keys(req: HttpRequest, state: web::Data<AppState>, s: Session) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let keys = state.db.run(|conn| Ok(crate::db::signing_keys::list(conn)?)).await?;
    let keys = keys
        .into_iter()
        .map(crate::db::signing_keys::SigningKeyView::from)
        .map(|k| KeyRow {
            kid: k.kid,
            alg: k.alg,
            state: k.state.to_string(),
            created: when(&k.created_at),
            activated: k.activated_at.as_ref().map_or_else(|| "–".into(), when),
            retiring: k.retiring_at.as_ref().map_or_else(|| "–".into(), when),
        })
        .collect();
    chrome::render(&req, &SigningKeysPage { chrome: Chrome::new(&s, &req, None, "/admin/signing-keys"), keys })
}

pub async fn rotate_signing_keys(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    s.form(&req, &body)?;
    let master = state.auth.master.clone();
    let alg = state.config.auth.signing_alg;
    let event = s.actor(&state, &req).event("signing_key.rotate");
    let changes = state
        .db
        .run(move |conn| {
            let changes = crate::auth::rotation::rotate(conn, &master, alg, Utc::now())?;
            crate::db::audit::insert(conn, &event.details(serde_json::to_value(&changes).unwrap_or_default()))?;
            Ok(changes)
        })
        .await?;
    state.auth.reload_keys(&state.db).await.map_err(|e| PageError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(chrome::redirect_with("/admin/signing-keys", &format!("Rotated: now signing with {}.", changes.activated.join(", ")), false))
}

pub struct TenantUsage {
    pub tenant: String,
    pub requests: String,
    pub tokens: String,
    pub audio_s: String,
}

#[derive(Template)]
#[template(path = "admin/platform_usage.html")]
struct PlatformUsagePage {
    chrome: Chrome,
    month: String,
    rows: Vec<TenantUsage>,
}

pub async fn get_usage(req: HttpRequest, state: web::Data<AppState>, s: Session) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let now = Utc::now();
    let start = crate::metering::local_midnight(chrono_tz::UTC, now.date_naive().with_day(1).unwrap_or(now.date_naive()));
    let totals = state.db.run(move |conn| Ok(crate::db::usage_views::by_tenant(conn, start, now)?)).await?;
    let rows = totals
        .into_iter()
        .map(|t| TenantUsage {
            tenant: t.tenant_id,
            requests: grouped(t.requests),
            tokens: grouped(t.tokens),
            audio_s: grouped(t.audio_ms / 1000),
        })
        .collect();
    let page = PlatformUsagePage { chrome: Chrome::new(&s, &req, None, "/admin/usage"), month: now.format("%Y-%m").to_string(), rows };
    chrome::render(&req, &page)
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    pub period: String,
    pub format: Option<String>,
}

pub async fn export_usage(state: web::Data<AppState>, s: Session, query: web::Query<ExportQuery>) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let month = Month::parse(&query.period).ok_or_else(|| PageError::BadRequest("The period must be a month, YYYY-MM.".into()))?;
    let format = Format::parse(query.format.as_deref().unwrap_or("csv"))
        .ok_or_else(|| PageError::BadRequest("The format must be csv or ndjson.".into()))?;
    Ok(crate::routes::api::usage::stream_export(&state, None, month, format, &query.period)?)
}
