//! `/api/v1/alerts` (the latest alerts: firing, resolved, pending and failed) and
//! `/api/v1/alerts/recipients` and, for operators, `/api/v1/alerts/silences`. Operators see and manage everything, on-call addresses included;
//! a tenant admin sees only its tenant's alerts and manages only its tenant's recipients.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{RouteTable, actor};
use crate::db::alerts::{AlertRow, Recipient, Silence};
use crate::error::ApiError;
use crate::extract::Manager;
use crate::service::alerts::{self as svc, AddRecipientRequest, RecipientScope, SilenceRequest};
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::GET, "/alerts", list_alerts)
        .add(Method::GET, "/alerts/recipients", list_recipients)
        .add(Method::POST, "/alerts/recipients", add_recipient)
        .add(Method::DELETE, "/alerts/recipients/{recipient_id}", remove_recipient)
        .add(Method::GET, "/alerts/silences", list_silences)
        .add(Method::POST, "/alerts/silences", add_silence)
        .add(Method::DELETE, "/alerts/silences/{silence_id}", remove_silence);
}

/// The tenant a tenant admin is confined to; None for operators.
fn confined(manager: &Manager) -> Option<crate::domain::TenantId> {
    match manager {
        Manager::TenantAdmin { tenant, .. } => Some(tenant.clone()),
        Manager::Operator { .. } => None,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// How many of the latest alerts (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// The latest alerts, newest first: `sent_at` set = mailed, `failed_at` set = given up after the
/// last attempt, neither = pending.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery), responses((status = 200, body = [AlertRow])))]
pub async fn list_alerts(manager: Manager, state: web::Data<AppState>, query: web::Query<AlertsQuery>) -> Result<HttpResponse, ApiError> {
    let scope = confined(&manager);
    let limit = query.limit.unwrap_or(100);
    let list = state.db.run(move |conn| Ok(svc::list_alerts(conn, scope.as_ref(), limit))).await??;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(get, path = "/api/v1/alerts/recipients", tag = "alerts", responses((status = 200, body = [Recipient])))]
pub async fn list_recipients(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let scope = confined(&manager);
    let list = state.db.run(move |conn| Ok(svc::list_recipients(conn, scope.as_ref()))).await??;
    Ok(HttpResponse::Ok().json(list))
}

/// Adds a recipient. Without `tenant_id`, an operator adds an on-call address and a tenant admin
/// a recipient of its own tenant.
#[utoipa::path(post, path = "/api/v1/alerts/recipients", tag = "alerts", request_body = AddRecipientRequest,
    responses((status = 201, body = Recipient), (status = 404), (status = 409), (status = 422)))]
pub async fn add_recipient(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<AddRecipientRequest>,
) -> Result<HttpResponse, ApiError> {
    let scope = match (&body.tenant_id, confined(&manager)) {
        (Some(raw), _) => RecipientScope::Tenant(manager.tenant(raw)?),
        (None, Some(own)) => RecipientScope::Tenant(own),
        (None, None) => RecipientScope::Oncall,
    };
    let actor = actor(&manager, &state, &req);
    let email = body.email.clone();
    let added = state.db.run(move |conn| Ok(svc::add_recipient(conn, &email, &scope, &actor))).await??;
    Ok(HttpResponse::Created().json(added))
}

#[utoipa::path(delete, path = "/api/v1/alerts/recipients/{recipient_id}", tag = "alerts", responses((status = 204), (status = 404)))]
pub async fn remove_recipient(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scope = confined(&manager);
    let actor = actor(&manager, &state, &req);
    let id = path.into_inner();
    state.db.run(move |conn| Ok(svc::remove_recipient(conn, scope.as_ref(), &id, &actor))).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Silences in force (operators).
#[utoipa::path(get, path = "/api/v1/alerts/silences", tag = "alerts", responses((status = 200, body = [Silence]), (status = 403)))]
pub async fn list_silences(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let list = state.db.run(|conn| Ok(svc::list_silences(conn))).await??;
    Ok(HttpResponse::Ok().json(list))
}

/// Silences a rule, an object or both for a while (operators): covered alerts are recorded as
/// silenced and not mailed.
#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alerts", request_body = SilenceRequest,
    responses((status = 201, body = Silence), (status = 403), (status = 422)))]
pub async fn add_silence(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SilenceRequest>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let added = state.db.run(move |conn| Ok(svc::add_silence(conn, &body, &actor))).await??;
    Ok(HttpResponse::Created().json(added))
}

#[utoipa::path(delete, path = "/api/v1/alerts/silences/{silence_id}", tag = "alerts", responses((status = 204), (status = 403), (status = 404)))]
pub async fn remove_silence(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let id = path.into_inner();
    state.db.run(move |conn| Ok(svc::remove_silence(conn, &id, &actor))).await??;
    Ok(HttpResponse::NoContent().finish())
}
