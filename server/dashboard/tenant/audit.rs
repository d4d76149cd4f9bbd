//! The audit log: filter by actor, action (or action prefix) and dates, fifty events a page,
//! newest first. A tenant's page shows that tenant's events; the operator's page (same code,
//! no tenant) shows every tenant's.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{Duration, NaiveDate};
use serde::Deserialize;

use crate::dashboard::chrome::{self, Chrome, Errors};
use crate::dashboard::{PageError, Session};
use crate::db::audit::AuditFilter;
use crate::domain::TenantId;
use crate::state::AppState;

const PAGE_ROWS: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<u32>,
}

pub struct EventRow {
    pub when: String,
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub source_ip: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    base: String,
    all_tenants: bool,
    actor: String,
    action: String,
    from: String,
    to: String,
    errors: Errors,
    events: Vec<EventRow>,
    previous: Option<String>,
    next: Option<String>,
}

fn day(field: &'static str, raw: &str, errors: &mut Errors) -> Option<NaiveDate> {
    if raw.trim().is_empty() {
        return None;
    }
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| errors.add(field, "must be a date, YYYY-MM-DD")).ok()
}

fn link(base: &str, q: &AuditQuery, page: u32) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("actor", &q.actor), ("action", &q.action), ("from", &q.from), ("to", &q.to)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            query.append_pair(k, v);
        }
    }
    query.append_pair("page", &page.to_string());
    format!("{base}?{}", query.finish())
}

/// The audit page of one tenant (`Some`) or of every tenant (`None`, operators only).
pub async fn render_audit(
    req: &HttpRequest,
    state: &AppState,
    s: &Session,
    tenant: Option<TenantId>,
    base: String,
    q: AuditQuery,
) -> Result<HttpResponse, PageError> {
    let mut errors = Errors::default();
    let from = q.from.as_deref().and_then(|v| day("from", v, &mut errors));
    let to = q.to.as_deref().and_then(|v| day("to", v, &mut errors));
    let page = q.page.unwrap_or(1).clamp(1, 10_000);
    let filter = AuditFilter {
        actor: q.actor.clone().filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_owned()),
        action: q.action.clone().filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_owned()),
        from: from.map(|d| crate::metering::local_midnight(chrono_tz::UTC, d)),
        to: to.map(|d| crate::metering::local_midnight(chrono_tz::UTC, d + Duration::days(1))),
    };
    let chrome = Chrome::new(s, req, tenant.as_ref().filter(|_| s.is_operator()), &base);
    let all_tenants = tenant.is_none();
    let rows = if errors.is_empty() {
        let offset = i64::from(page - 1) * PAGE_ROWS;
        // One row more than shown: whether there is a next page.
        state.db.run(move |conn| Ok(crate::db::audit::list_filtered(conn, tenant.as_ref(), &filter, PAGE_ROWS + 1, offset)?)).await?
    } else {
        Vec::new()
    };
    let has_next = rows.len() as i64 > PAGE_ROWS;
    let events = rows
        .into_iter()
        .take(PAGE_ROWS as usize)
        .map(|r| EventRow {
            when: r.occurred_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            tenant: r.tenant_id.unwrap_or_default(),
            actor: format!("{} {}", r.actor_kind, r.actor_id.unwrap_or_default()).trim().to_owned(),
            action: r.action,
            target: format!("{} {}", r.target_kind.unwrap_or_default(), r.target_id.unwrap_or_default()).trim().to_owned(),
            outcome: r.outcome,
            source_ip: r.source_ip.unwrap_or_default(),
        })
        .collect();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page_view = AuditPage {
        previous: (page > 1).then(|| link(&base, &q, page - 1)),
        next: has_next.then(|| link(&base, &q, page + 1)),
        chrome,
        base,
        all_tenants,
        actor: q.actor.unwrap_or_default(),
        action: q.action.unwrap_or_default(),
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        errors,
        events,
    };
    chrome::render_status(req, status, &page_view)
}

pub async fn get_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, PageError> {
    let (tenant, _) = super::load(&state, &s, &path).await?;
    let base = format!("/admin/t/{tenant}/audit");
    render_audit(&req, &state, &s, Some(tenant), base, query.into_inner()).await
}
