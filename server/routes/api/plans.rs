//! `/api/v1/plans` (operators) and per-credential limits (`…/api-keys/{id}/limits`,
//! `…/clients/{id}/limits`, tenant-scoped). Changes apply on this instance at once and on every
//! other within 5 s.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{RouteTable, actor};
use crate::error::ApiError;
use crate::extract::Manager;
use crate::service::limits::{self as limits_svc, Credential};
use crate::service::plans::{self as svc, CredentialLimits, PlanSpec, PlanView};
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::GET, "/plans", list_plans)
        .add(Method::POST, "/plans", create_plan)
        .add(Method::PUT, "/plans/{plan}", replace_plan)
        .add(Method::PUT, "/tenants/{tenant_id}/api-keys/{key_id}/limits", set_api_key_limits)
        .add(Method::PUT, "/tenants/{tenant_id}/clients/{client_id}/limits", set_client_limits);
}

#[utoipa::path(get, path = "/api/v1/plans", tag = "plans", responses((status = 200, body = [PlanView]), (status = 403)))]
pub async fn list_plans(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let plans = state.db.run(|conn| Ok(svc::list(conn))).await??;
    Ok(HttpResponse::Ok().json(plans))
}

#[utoipa::path(post, path = "/api/v1/plans", tag = "plans", request_body = PlanSpec,
    responses((status = 201, body = PlanView), (status = 403), (status = 409, description = "name taken"), (status = 422, description = "invalid or contradictory field")))]
pub async fn create_plan(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PlanSpec>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let plan = state.db.run(move |conn| Ok(svc::create(conn, &body, &actor))).await??;
    Ok(HttpResponse::Created().json(plan))
}

/// Replaces every setting (omitted limits become unlimited).
#[utoipa::path(put, path = "/api/v1/plans/{plan}", tag = "plans", request_body = PlanSpec,
    params(("plan" = String, Path, description = "plan id or name")),
    responses((status = 200, body = PlanView), (status = 403), (status = 404), (status = 409, description = "another plan has that name"),
        (status = 422, description = "invalid or contradictory field")))]
pub async fn replace_plan(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<PlanSpec>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let plan = state.db.run(move |conn| Ok(svc::replace(conn, &path, &body, &actor))).await??;
    state.admission.policies.forget_all_tenants();
    Ok(HttpResponse::Ok().json(plan))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/limits", tag = "api-keys", request_body = CredentialLimits,
    responses((status = 200, body = CredentialLimits), (status = 404), (status = 422)))]
pub async fn set_api_key_limits(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<CredentialLimits>,
) -> Result<HttpResponse, ApiError> {
    set_limits(manager, state, req, path.into_inner(), body.into_inner(), Credential::ApiKey).await
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}/limits", tag = "clients", request_body = CredentialLimits,
    responses((status = 200, body = CredentialLimits), (status = 404), (status = 422)))]
pub async fn set_client_limits(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<CredentialLimits>,
) -> Result<HttpResponse, ApiError> {
    set_limits(manager, state, req, path.into_inner(), body.into_inner(), Credential::Client).await
}

async fn set_limits(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    (tenant, id): (String, String),
    limits: CredentialLimits,
    kind: Credential,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&tenant)?;
    let actor = actor(&manager, &state, &req);
    let key = id.clone();
    let set = state.db.run(move |conn| Ok(limits_svc::set(conn, &tenant, kind, &id, &limits, &actor))).await??;
    state.admission.policies.forget_credential(&key).await;
    Ok(HttpResponse::Ok().json(set))
}
