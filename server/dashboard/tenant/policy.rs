//! Limits and quotas of the tenant's plan (read-only here; operators edit plans), and the
//! tenant's prompt deny patterns (edited through `service::tenants::update`, as
//! `PATCH /api/v1/tenants/{id}` does).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::dashboard::chrome::{self, Chrome, Errors};
use crate::dashboard::{PageError, Session, grouped};
use crate::domain::TenantId;
use crate::service::plans::PlanView;
use crate::service::tenants::UpdateTenantRequest;
use crate::state::AppState;

pub struct LimitRow {
    pub name: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "admin/limits.html")]
struct LimitsPage {
    chrome: Chrome,
    base: String,
    plan: String,
    limits: Vec<LimitRow>,
    patterns: String,
    errors: Errors,
}

fn or_unlimited(v: Option<i64>) -> String {
    v.map_or_else(|| "unlimited".into(), grouped)
}

fn limit_rows(p: &PlanView) -> Vec<LimitRow> {
    let s = &p.spec;
    let i = |v: Option<i32>| or_unlimited(v.map(i64::from));
    vec![
        LimitRow { name: "Requests per minute", value: i(s.requests_per_minute) },
        LimitRow { name: "Tokens per minute", value: or_unlimited(s.tokens_per_minute) },
        LimitRow { name: "Audio seconds per minute", value: i(s.audio_seconds_per_minute) },
        LimitRow { name: "Concurrent requests", value: i(s.concurrent_requests) },
        LimitRow { name: "Daily token quota", value: or_unlimited(s.daily_token_quota) },
        LimitRow { name: "Monthly token quota", value: or_unlimited(s.monthly_token_quota) },
        LimitRow { name: "Monthly token soft quota (alerts only)", value: or_unlimited(s.monthly_token_soft_quota) },
        LimitRow { name: "Daily request quota", value: or_unlimited(s.daily_request_quota) },
        LimitRow { name: "Monthly request quota", value: or_unlimited(s.monthly_request_quota) },
        LimitRow { name: "Daily audio seconds quota", value: or_unlimited(s.daily_audio_seconds_quota) },
        LimitRow { name: "Monthly audio seconds quota", value: or_unlimited(s.monthly_audio_seconds_quota) },
        LimitRow { name: "max_tokens cap", value: i(s.max_tokens_cap) },
        LimitRow { name: "Largest prompt (characters)", value: i(s.max_prompt_chars) },
        LimitRow { name: "Largest audio upload (bytes)", value: grouped(s.max_audio_bytes) },
        LimitRow { name: "Queue weight", value: s.queue_weight.to_string() },
        LimitRow { name: "Models", value: s.allowed_models.join(", ") },
    ]
}

async fn page(
    req: &HttpRequest,
    state: &AppState,
    s: &Session,
    tenant: &TenantId,
    status: StatusCode,
    patterns: Option<String>,
    errors: Errors,
) -> Result<HttpResponse, PageError> {
    let key = tenant.clone();
    let (view, plan) = state
        .db
        .run(move |conn| {
            let view = crate::db::tenants::find_view(conn, &key)?;
            let t = crate::db::tenants::find(conn, &key)?;
            let plan = PlanView::from(crate::db::plans::find(conn, &crate::db::tenants::plan_id_of(&t))?);
            Ok((view, plan))
        })
        .await?;
    let base = format!("/admin/t/{tenant}/limits");
    let page = LimitsPage {
        chrome: Chrome::new(s, req, Some(tenant), &base),
        base,
        plan: view.plan,
        limits: limit_rows(&plan),
        patterns: patterns.unwrap_or_else(|| view.prompt_deny_patterns.join("\n")),
        errors,
    };
    chrome::render_status(req, status, &page)
}

pub async fn get_limits(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let (tenant, _) = super::load(&state, &s, &path).await?;
    page(&req, &state, &s, &tenant, StatusCode::OK, None, Errors::default()).await
}

pub async fn post_deny_patterns(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let form = s.form(&req, &body)?;
    let (tenant, _) = super::load(&state, &s, &path).await?;
    let raw = form.get("prompt_deny_patterns").to_owned();
    // One pattern a line: commas belong to regular expressions, so only lines separate here.
    let patterns: Vec<String> = raw.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    let request = UpdateTenantRequest { prompt_deny_patterns: Some(patterns), ..UpdateTenantRequest::default() };
    let actor = s.actor(&state, &req);
    let key = tenant.clone();
    match state.db.run(move |conn| Ok(crate::service::tenants::update(conn, &key, &request, &actor))).await? {
        Ok(_) => {
            state.admission.policies.forget_tenant(&tenant).await;
            Ok(chrome::redirect_with(&format!("/admin/t/{tenant}/limits"), "Prompt deny patterns saved.", false))
        }
        Err(e) => {
            let errors = Errors::from_service(e)?;
            page(&req, &state, &s, &tenant, StatusCode::UNPROCESSABLE_ENTITY, Some(raw), errors).await
        }
    }
}
