//! `/api/v1/tenants`.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel::OptionalExtension;

use super::{RouteTable, actor};
use crate::db::tenants::{self, TenantView};
use crate::error::ApiError;
use crate::extract::Manager;
use crate::service::tenants::{self as svc, CreateTenantRequest, UpdateTenantRequest};
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::GET, "/tenants", list_tenants)
        .add(Method::POST, "/tenants", create_tenant)
        .add(Method::GET, "/tenants/{tenant_id}", get_tenant)
        .add(Method::PATCH, "/tenants/{tenant_id}", update_tenant)
        .add(Method::POST, "/tenants/{tenant_id}/disable", disable_tenant);
}

/// Operators: every tenant. Tenant admins: their own.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", responses((status = 200, body = [TenantView])))]
pub async fn list_tenants(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let list = state
        .db
        .run(move |conn| {
            Ok(match &manager {
                Manager::Operator { .. } => tenants::list_all(conn)?,
                Manager::TenantAdmin { tenant, .. } => vec![tenants::find_view(conn, tenant)?],
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenantRequest,
    responses((status = 201, body = TenantView), (status = 403), (status = 409, description = "slug taken"), (status = 422, description = "invalid field")))]
pub async fn create_tenant(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateTenantRequest>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let view = state.db.run(move |conn| Ok(svc::create(conn, &body, &actor))).await??;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}", tag = "tenants", responses((status = 200, body = TenantView), (status = 404)))]
pub async fn get_tenant(manager: Manager, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let view = state
        .db
        .run(move |conn| Ok(tenants::find_view(conn, &tenant).optional()?))
        .await?
        .ok_or_else(|| ApiError::NotFound("tenant not found".into()))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Operators only. The tenant's credentials stop working within 5 s everywhere.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/disable", tag = "tenants", responses((status = 200, body = TenantView), (status = 403), (status = 404)))]
pub async fn disable_tenant(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let view = state.db.run(move |conn| Ok(svc::disable(conn, &tenant, &actor))).await?.map_err(|e| match e {
        crate::service::ServiceError::NotFound(_) => ApiError::NotFound("tenant not found".into()),
        other => other.into(),
    })?;
    state.auth.invalidate_all_credentials();
    Ok(HttpResponse::Ok().json(view))
}

/// Plan and time zone: operators. Prompt deny patterns, prompt rule packs and CORS origins:
/// operators and the tenant's admins (another tenant's admin gets 404).
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}", tag = "tenants", request_body = UpdateTenantRequest,
    responses((status = 200, body = TenantView), (status = 403), (status = 404), (status = 422, description = "invalid field")))]
pub async fn update_tenant(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<UpdateTenantRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    if body.needs_operator() {
        manager.require_operator()?;
    }
    let actor = actor(&manager, &state, &req);
    let key = tenant.clone();
    let cors_changed = body.cors_origins.is_some();
    let view = state.db.run(move |conn| Ok(svc::update(conn, &tenant, &body, &actor))).await??;
    state.admission.policies.forget_tenant(&key).await;
    if cors_changed {
        // Other instances pick the origins up within `edge.sync_ms`.
        state.edge.reload().await;
    }
    Ok(HttpResponse::Ok().json(view))
}
