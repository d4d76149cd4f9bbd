//! Tenant pages under `/admin/t/{tenant_id}`: overview, API keys, OAuth clients, usage, limits
//! and prompt deny patterns, audit log. A tenant admin reaches only their own tenant: any other
//! id, existing or not, renders the same 404 page. Operators may open any tenant's pages.

pub mod audit;
pub mod clients;
pub mod keys;
pub mod overview;
pub mod policy;
pub mod usage;

use actix_web::web;

use super::{PageError, Session};
use crate::db::tenants::TenantView;
use crate::domain::TenantId;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/t/{tenant_id}", web::get().to(overview::get_overview))
        .route("/t/{tenant_id}/api-keys", web::get().to(keys::get_keys))
        .route("/t/{tenant_id}/api-keys", web::post().to(keys::create_key))
        .route("/t/{tenant_id}/api-keys/{key_id}/roll", web::post().to(keys::roll_key))
        .route("/t/{tenant_id}/api-keys/{key_id}/revoke", web::post().to(keys::revoke_key))
        .route("/t/{tenant_id}/clients", web::get().to(clients::get_clients))
        .route("/t/{tenant_id}/clients", web::post().to(clients::create_client))
        .route("/t/{tenant_id}/clients/{client_id}/rotate", web::post().to(clients::rotate_client))
        .route("/t/{tenant_id}/clients/{client_id}/disable", web::post().to(clients::disable_client))
        .route("/t/{tenant_id}/usage", web::get().to(usage::get_usage))
        .route("/t/{tenant_id}/usage/export", web::get().to(usage::export_usage))
        .route("/t/{tenant_id}/limits", web::get().to(policy::get_limits))
        .route("/t/{tenant_id}/limits/deny-patterns", web::post().to(policy::post_deny_patterns))
        .route("/t/{tenant_id}/audit", web::get().to(audit::get_audit));
}

/// The tenant in the path, checked against the session (foreign → 404) and loaded (missing → 404).
pub async fn load(state: &AppState, session: &Session, raw: &str) -> Result<(TenantId, TenantView), PageError> {
    let id = session.tenant(raw)?;
    let key = id.clone();
    let view = state.db.run(move |conn| Ok(crate::db::tenants::find_view(conn, &key)?)).await?;
    Ok((id, view))
}

/// The scopes a tenant credential may be given, for the checkbox groups.
pub struct ScopeOption {
    pub name: &'static str,
    pub checked: bool,
}

pub fn scope_options(checked: &[String]) -> Vec<ScopeOption> {
    crate::domain::scope::TOKEN_SCOPES.iter().map(|s| ScopeOption { name: s, checked: checked.iter().any(|c| c == s) }).collect()
}

/// An optional timestamp for a table cell.
pub fn when_or(t: Option<&chrono::DateTime<chrono::Utc>>, none: &str) -> String {
    t.map_or_else(|| none.to_owned(), super::when)
}
