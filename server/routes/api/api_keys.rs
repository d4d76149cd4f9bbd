//! `/api/v1/tenants/{tenant_id}/api-keys`.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{RouteTable, actor};
use crate::error::ApiError;
use crate::extract::{Manager, OptionalJson};
use crate::service::api_keys::{self as svc, ApiKeyResponse, ApiKeyWithSecret, CreateApiKeyRequest, RollApiKeyRequest};
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::POST, "/tenants/{tenant_id}/api-keys", create_api_key)
        .add(Method::GET, "/tenants/{tenant_id}/api-keys", list_api_keys)
        .add(Method::GET, "/tenants/{tenant_id}/api-keys/{key_id}", get_api_key)
        .add(Method::DELETE, "/tenants/{tenant_id}/api-keys/{key_id}", revoke_api_key)
        .add(Method::POST, "/tenants/{tenant_id}/api-keys/{key_id}/rotate", roll_api_key);
}

/// Creates a key; the response holds the full key, which is never shown again.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/api-keys", tag = "api-keys", request_body = CreateApiKeyRequest,
    responses((status = 201, body = ApiKeyWithSecret), (status = 404), (status = 422)))]
pub async fn create_api_key(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<CreateApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let actor = actor(&manager, &state, &req);
    let pepper = state.auth.pepper.clone();
    let created = state.db.run(move |conn| Ok(svc::create(conn, &pepper, &tenant, &body, &actor))).await??;
    Ok(HttpResponse::Created().json(created))
}

/// Keys are listed masked: `gth_live_{id}_…{last4}`.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/api-keys", tag = "api-keys", responses((status = 200, body = [ApiKeyResponse]), (status = 404)))]
pub async fn list_api_keys(manager: Manager, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let list = state.db.run(move |conn| Ok(svc::list(conn, &tenant))).await??;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/api-keys/{key_id}", tag = "api-keys", responses((status = 200, body = ApiKeyResponse), (status = 404)))]
pub async fn get_api_key(
    manager: Manager,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, key) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let found = state.db.run(move |conn| Ok(svc::get(conn, &tenant, &key))).await??;
    Ok(HttpResponse::Ok().json(found))
}

/// Revokes a key at once (within 5 s on every instance).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/api-keys/{key_id}", tag = "api-keys", responses((status = 200, body = ApiKeyResponse), (status = 404)))]
pub async fn revoke_api_key(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, key) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let actor = actor(&manager, &state, &req);
    let id = key.clone();
    let revoked = state.db.run(move |conn| Ok(svc::revoke(conn, &tenant, &key, &actor))).await??;
    state.auth.invalidate_api_key(&id).await;
    Ok(HttpResponse::Ok().json(revoked))
}

/// Rolls a key: a new key (shown once) replaces it; the old one works for `grace_period_s`.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/rotate", tag = "api-keys", request_body(content = Option<RollApiKeyRequest>, description = "Optional: without a body, the default grace period (24 h)"),
    responses((status = 201, body = ApiKeyWithSecret), (status = 404), (status = 409)))]
pub async fn roll_api_key(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: OptionalJson<RollApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, key) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let actor = actor(&manager, &state, &req);
    let pepper = state.auth.pepper.clone();
    let body = body.into_inner().unwrap_or(RollApiKeyRequest { grace_period_s: 86_400 });
    let id = key.clone();
    let rolled = state.db.run(move |conn| Ok(svc::roll(conn, &pepper, &tenant, &key, &body, &actor))).await??;
    state.auth.invalidate_api_key(&id).await;
    Ok(HttpResponse::Created().json(rolled))
}
