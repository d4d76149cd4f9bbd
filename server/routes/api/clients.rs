//! `/api/v1/tenants/{tenant_id}/clients`.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{RouteTable, actor};
use crate::error::ApiError;
use crate::extract::{Manager, OptionalJson};
use crate::service::clients::{
    self as svc, ClientResponse, ClientWithSecret, CreateClientRequest, RotateSecretRequest, UpdateClientRequest,
};
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::POST, "/tenants/{tenant_id}/clients", create_client)
        .add(Method::GET, "/tenants/{tenant_id}/clients", list_clients)
        .add(Method::GET, "/tenants/{tenant_id}/clients/{client_id}", get_client)
        .add(Method::PATCH, "/tenants/{tenant_id}/clients/{client_id}", update_client)
        .add(Method::DELETE, "/tenants/{tenant_id}/clients/{client_id}", disable_client)
        .add(Method::POST, "/tenants/{tenant_id}/clients/{client_id}/secret/rotate", rotate_client_secret);
}

/// Creates a client; the response holds the secret, which is never shown again.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/clients", tag = "clients", request_body = CreateClientRequest,
    responses((status = 201, body = ClientWithSecret), (status = 404), (status = 422)))]
pub async fn create_client(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<CreateClientRequest>,
) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let actor = actor(&manager, &state, &req);
    let pepper = state.auth.pepper.clone();
    let created = state.db.run(move |conn| Ok(svc::create(conn, &pepper, &tenant, &body, &actor))).await?.map_err(tenant_nf)?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/clients", tag = "clients", responses((status = 200, body = [ClientResponse]), (status = 404)))]
pub async fn list_clients(manager: Manager, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tenant = manager.tenant(&path)?;
    let list = state.db.run(move |conn| Ok(svc::list(conn, &tenant))).await??;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}", tag = "clients", responses((status = 200, body = ClientResponse), (status = 404)))]
pub async fn get_client(manager: Manager, state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (tenant, client) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let found = state.db.run(move |conn| Ok(svc::get(conn, &tenant, &client))).await??;
    Ok(HttpResponse::Ok().json(found))
}

/// Changes name, scopes, IP allowlist or token lifetime.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}", tag = "clients", request_body = UpdateClientRequest,
    responses((status = 200, body = ClientResponse), (status = 404), (status = 422)))]
pub async fn update_client(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<UpdateClientRequest>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, client) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let actor = actor(&manager, &state, &req);
    let id = client.clone();
    let updated = state.db.run(move |conn| Ok(svc::update(conn, &tenant, &client, &body, &actor))).await??;
    state.auth.invalidate_client(&id).await;
    Ok(HttpResponse::Ok().json(updated))
}

/// Disables the client: no new tokens, and its tokens stop working within 5 s.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}", tag = "clients", responses((status = 200, body = ClientResponse), (status = 404)))]
pub async fn disable_client(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, client) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let actor = actor(&manager, &state, &req);
    let id = client.clone();
    let disabled = state.db.run(move |conn| Ok(svc::disable(conn, &tenant, &client, &actor))).await??;
    state.auth.invalidate_client(&id).await;
    Ok(HttpResponse::Ok().json(disabled))
}

/// New secret (shown once); the old one keeps working for `grace_period_s`.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/clients/{client_id}/secret/rotate", tag = "clients", request_body(content = Option<RotateSecretRequest>, description = "Optional: without a body, the default grace period (24 h)"),
    responses((status = 200, body = ClientWithSecret), (status = 404), (status = 422)))]
pub async fn rotate_client_secret(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: OptionalJson<RotateSecretRequest>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, client) = path.into_inner();
    let tenant = manager.tenant(&tenant)?;
    let actor = actor(&manager, &state, &req);
    let pepper = state.auth.pepper.clone();
    let body = body.into_inner().unwrap_or(RotateSecretRequest { grace_period_s: 86_400 });
    let id = client.clone();
    let rotated = state.db.run(move |conn| Ok(svc::rotate_secret(conn, &pepper, &tenant, &client, &body, &actor))).await??;
    state.auth.invalidate_client(&id).await;
    Ok(HttpResponse::Ok().json(rotated))
}

/// A tenant that vanished between the path check and the insert reads as 404.
fn tenant_nf(e: crate::service::ServiceError) -> ApiError {
    match e {
        crate::service::ServiceError::NotFound(_) => ApiError::NotFound("tenant not found".into()),
        other => other.into(),
    }
}
