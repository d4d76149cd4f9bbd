//! `/api/v1/ip-rules` (the platform's list: operators), `/api/v1/tenants/{id}/ip-rules` (a
//! tenant's list: its admins and operators) and `/api/v1/bans` (addresses banned now: operators
//! list and lift them). A change applies on this instance at once and on the others within
//! `edge.sync_ms`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{RouteTable, actor};
use crate::db::ip_rules::{IpBan, IpRule};
use crate::error::ApiError;
use crate::extract::Manager;
use crate::service::ip_rules::{self as svc, CreateIpRuleRequest};
use crate::state::AppState;
use actix_web::http::Method;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::GET, "/ip-rules", list_platform_rules)
        .add(Method::POST, "/ip-rules", create_platform_rule)
        .add(Method::DELETE, "/ip-rules/{rule_id}", delete_platform_rule)
        .add(Method::GET, "/tenants/{tenant_id}/ip-rules", list_tenant_rules)
        .add(Method::POST, "/tenants/{tenant_id}/ip-rules", create_tenant_rule)
        .add(Method::DELETE, "/tenants/{tenant_id}/ip-rules/{rule_id}", delete_tenant_rule)
        .add(Method::GET, "/bans", list_bans)
        .add(Method::DELETE, "/bans/{ip}", lift_ban);
}

/// The platform's rules (operators): `deny` networks are refused before authentication on every
/// route but the health and metrics endpoints; `allow` networks are never banned.
#[utoipa::path(get, path = "/api/v1/ip-rules", tag = "ip-rules", responses((status = 200, body = [IpRule]), (status = 403)))]
pub async fn list_platform_rules(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let list = state.db.run(|conn| Ok(svc::list_rules(conn, None))).await??;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(post, path = "/api/v1/ip-rules", tag = "ip-rules", request_body = CreateIpRuleRequest,
    responses((status = 201, body = IpRule), (status = 403), (status = 409), (status = 422)))]
pub async fn create_platform_rule(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateIpRuleRequest>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let rule = state.db.run(move |conn| Ok(svc::create_rule(conn, None, &body, &actor))).await??;
    state.edge.reload().await;
    Ok(HttpResponse::Created().json(rule))
}

#[utoipa::path(delete, path = "/api/v1/ip-rules/{rule_id}", tag = "ip-rules",
    params(("rule_id" = String, Path, description = "The rule's id (`ipr_…`)")),
    responses((status = 200, body = IpRule), (status = 403), (status = 404)))]
pub async fn delete_platform_rule(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let id = path.into_inner();
    let rule = state.db.run(move |conn| Ok(svc::delete_rule(conn, None, &id, &actor))).await??;
    state.edge.reload().await;
    Ok(HttpResponse::Ok().json(rule))
}

/// A tenant's rules: `deny` networks cannot use its credentials; with any `allow` rule, only
/// those networks can.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/ip-rules", tag = "ip-rules",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    responses((status = 200, body = [IpRule]), (status = 404)))]
pub async fn list_tenant_rules(manager: Manager, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let list = state.db.run(move |conn| Ok(svc::list_rules(conn, Some(&tenant)))).await??;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/ip-rules", tag = "ip-rules", request_body = CreateIpRuleRequest,
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    responses((status = 201, body = IpRule), (status = 404), (status = 409), (status = 422)))]
pub async fn create_tenant_rule(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<CreateIpRuleRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let actor = actor(&manager, &state, &req);
    let rule = state.db.run(move |conn| Ok(svc::create_rule(conn, Some(&tenant), &body, &actor))).await??;
    state.edge.reload().await;
    Ok(HttpResponse::Created().json(rule))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/ip-rules/{rule_id}", tag = "ip-rules",
    params(("tenant_id" = String, Path, description = "The tenant's id"), ("rule_id" = String, Path, description = "The rule's id (`ipr_…`)")),
    responses((status = 200, body = IpRule), (status = 404)))]
pub async fn delete_tenant_rule(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let actor = actor(&manager, &state, &req);
    let rule = state.db.run(move |conn| Ok(svc::delete_rule(conn, Some(&tenant), &id, &actor))).await??;
    state.edge.reload().await;
    Ok(HttpResponse::Ok().json(rule))
}

/// Addresses banned now (operators), soonest to end first.
#[utoipa::path(get, path = "/api/v1/bans", tag = "ip-rules", responses((status = 200, body = [IpBan]), (status = 403)))]
pub async fn list_bans(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let list = state.db.run(|conn| Ok(svc::list_bans(conn))).await??;
    Ok(HttpResponse::Ok().json(list))
}

/// Ends an address's ban now (operators).
#[utoipa::path(delete, path = "/api/v1/bans/{ip}", tag = "ip-rules",
    params(("ip" = String, Path, description = "The banned address")),
    responses((status = 204), (status = 403), (status = 404), (status = 422)))]
pub async fn lift_ban(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let ip = path.into_inner();
    state.db.run(move |conn| Ok(svc::lift_ban(conn, &ip, &actor))).await??;
    state.edge.reload().await;
    Ok(HttpResponse::NoContent().finish())
}
