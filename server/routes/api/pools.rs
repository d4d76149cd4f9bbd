//! `/api/v1/pools` and `/api/v1/workers` (operators only).

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{RouteTable, actor};
use crate::domain::WorkerState;
use crate::error::ApiError;
use crate::extract::Manager;
use crate::service::workers::{self as svc, AddWorkerRequest, CreatePoolRequest, PoolResponse, WorkerResponse};
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::GET, "/pools", list_pools)
        .add(Method::POST, "/pools", create_pool)
        .add(Method::POST, "/pools/{pool}/workers", add_worker)
        .add(Method::POST, "/workers/{worker_id}/drain", drain_worker)
        .add(Method::DELETE, "/workers/{worker_id}", remove_worker);
}

#[utoipa::path(get, path = "/api/v1/pools", tag = "pools", responses((status = 200, body = [PoolResponse]), (status = 403)))]
pub async fn list_pools(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let pools = state.db.run(|conn| Ok(svc::list_pools(conn))).await??;
    Ok(HttpResponse::Ok().json(pools))
}

#[utoipa::path(post, path = "/api/v1/pools", tag = "pools", request_body = CreatePoolRequest,
    responses((status = 201, body = PoolResponse), (status = 403), (status = 409, description = "a pool of that name exists"), (status = 422)))]
pub async fn create_pool(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreatePoolRequest>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let pool = state.db.run(move |conn| Ok(svc::create_pool(conn, &body, &actor))).await??;
    Ok(HttpResponse::Created().json(pool))
}

/// Adds a worker; its upstream API key (if any) is sealed at rest and never shown again.
#[utoipa::path(post, path = "/api/v1/pools/{pool}/workers", tag = "pools", request_body = AddWorkerRequest,
    responses((status = 201, body = WorkerResponse), (status = 403), (status = 404),
        (status = 409, description = "the pool already has a worker at that URL, or is declared in the config file"), (status = 422)))]
pub async fn add_worker(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<AddWorkerRequest>,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let master = state.auth.master.clone();
    let worker = state.db.run(move |conn| Ok(svc::add_worker(conn, &master, &path, &body, &actor))).await??;
    Ok(HttpResponse::Created().json(worker))
}

async fn set_state(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    to: WorkerState,
) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let actor = actor(&manager, &state, &req);
    let worker = state.db.run(move |conn| Ok(svc::set_worker_state(conn, &id, to, &actor))).await??;
    Ok(HttpResponse::Ok().json(worker))
}

/// The worker finishes what it is doing and takes no new work.
#[utoipa::path(post, path = "/api/v1/workers/{worker_id}/drain", tag = "pools",
    responses((status = 200, body = WorkerResponse), (status = 403), (status = 404), (status = 409, description = "the worker's pool is declared in the config file")))]
pub async fn drain_worker(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_state(manager, state, req, path.into_inner(), WorkerState::Draining).await
}

#[utoipa::path(delete, path = "/api/v1/workers/{worker_id}", tag = "pools",
    responses((status = 200, body = WorkerResponse), (status = 403), (status = 404), (status = 409, description = "the worker's pool is declared in the config file")))]
pub async fn remove_worker(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_state(manager, state, req, path.into_inner(), WorkerState::Removed).await
}
