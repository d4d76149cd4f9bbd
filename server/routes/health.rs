//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database is reachable
//! and its schema is current). Load balancers and orchestrators poll these; they never need auth.

use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::Readiness;
use crate::state::AppState;

pub async fn get_healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

pub async fn get_readyz(state: web::Data<AppState>) -> HttpResponse {
    let timeout = Duration::from_millis(state.config.database.checkout_timeout_ms.min(2000));
    let (ready, checks) = match state.db.check_ready(timeout).await {
        Readiness::Ready => (true, json!({ "database": "ok", "migrations": "ok" })),
        Readiness::DatabaseUnreachable => (false, json!({ "database": "unreachable" })),
        Readiness::MigrationsPending(n) => (false, json!({ "database": "ok", "migrations": format!("{n} pending") })),
    };
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        let mut r = HttpResponse::ServiceUnavailable();
        r.insert_header(("Retry-After", "5"));
        r
    };
    response
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(json!({ "status": if ready { "ready" } else { "unavailable" }, "checks": checks }))
}
