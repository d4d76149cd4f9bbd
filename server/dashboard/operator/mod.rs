//! Operator pages: tenants (search, create, disable, change plan), plans, pools and workers
//! (live state; drain and remove), signing keys (list, rotate), usage and audit across tenants.
//! A tenant admin who opens one gets the 404 page, as for any path that is not theirs.

pub mod fleet;
pub mod plans;
pub mod tenants;

use actix_web::{HttpRequest, HttpResponse, web};

use super::tenant::audit::{AuditQuery, render_audit};
use super::{PageError, Session};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenants", web::get().to(tenants::get_tenants))
        .route("/tenants", web::post().to(tenants::create_tenant))
        .route("/tenants/{tenant_id}/disable", web::post().to(tenants::disable_tenant))
        .route("/tenants/{tenant_id}/plan", web::post().to(tenants::change_plan))
        .route("/plans", web::get().to(plans::get_plans))
        .route("/plans", web::post().to(plans::create_plan))
        .route("/plans/{plan}", web::get().to(plans::get_plan))
        .route("/plans/{plan}", web::post().to(plans::replace_plan))
        .route("/pools", web::get().to(fleet::get_pools))
        .route("/workers/{worker_id}/drain", web::post().to(fleet::drain_worker))
        .route("/workers/{worker_id}/remove", web::post().to(fleet::remove_worker))
        .route("/signing-keys", web::get().to(fleet::get_signing_keys))
        .route("/signing-keys/rotate", web::post().to(fleet::rotate_signing_keys))
        .route("/usage", web::get().to(fleet::get_usage))
        .route("/usage/export", web::get().to(fleet::export_usage))
        .route("/audit", web::get().to(get_audit));
}

async fn get_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    render_audit(&req, &state, &s, None, "/admin/audit".into(), query.into_inner()).await
}
