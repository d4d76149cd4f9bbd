//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database is reachable
//! and its schema is current, and no background task keeps dying). Load balancers and
//! orchestrators poll these; they never need auth. Readiness answers within `READY_WITHIN`
//! whatever the database does: a database that does not answer in time is reported as such.

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

/// The longest `/readyz` takes.
const READY_WITHIN: Duration = Duration::from_millis(900);

pub async fn get_readyz(state: web::Data<AppState>) -> HttpResponse {
    let timeout = Duration::from_millis(state.config.database.checkout_timeout_ms).min(READY_WITHIN);
    let (mut ready, mut checks) = match tokio::time::timeout(READY_WITHIN, state.db.check_ready(timeout)).await {
        Ok(Readiness::Ready) => (true, json!({ "database": "ok", "migrations": "ok" })),
        Ok(Readiness::DatabaseUnreachable) => (false, json!({ "database": "unreachable" })),
        Ok(Readiness::MigrationsPending(n)) => (false, json!({ "database": "ok", "migrations": format!("{n} pending") })),
        Err(_) => (false, json!({ "database": "not answering" })),
    };
    checks["mail"] = json!(if state.alerts.mail_on() { "on" } else { "off (alerts.smtp_url is not set)" });
    let failing = state.tasks.failing();
    if !failing.is_empty() {
        ready = false;
        let tasks: serde_json::Map<String, serde_json::Value> =
            failing.into_iter().map(|(task, n)| (task, json!(format!("restarted {n} times in 5 minutes")))).collect();
        checks["tasks"] = serde_json::Value::Object(tasks);
    }
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

/// `GET /metrics`: Prometheus text format.
pub async fn get_metrics() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::telemetry::metrics::render())
}
