//! Tenants and plans for operators, through `service::tenants` and `service::plans` as
//! `/api/v1/tenants` and `/api/v1/plans` do.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::dashboard::chrome::{self, Chrome, Errors};
use crate::dashboard::{PageError, Session};
use crate::service::tenants::{CreateTenantRequest, UpdateTenantRequest};
use crate::state::AppState;

const PAGE_ROWS: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub struct TenantQuery {
    pub q: Option<String>,
    pub page: Option<usize>,
}

pub struct TenantRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub plan: String,
    pub created: String,
    pub active: bool,
}

#[derive(Default)]
pub struct TenantInput {
    pub name: String,
    pub slug: String,
    pub plan: String,
    pub time_zone: String,
}

#[derive(Template)]
#[template(path = "admin/tenants.html")]
struct TenantsPage {
    chrome: Chrome,
    q: String,
    tenants: Vec<TenantRow>,
    plans: Vec<String>,
    errors: Errors,
    input: TenantInput,
    previous: Option<String>,
    next: Option<String>,
    total: usize,
}

async fn page(
    req: &HttpRequest,
    state: &AppState,
    s: &Session,
    query: TenantQuery,
    status: StatusCode,
    errors: Errors,
    input: TenantInput,
) -> Result<HttpResponse, PageError> {
    let (all, plans) = state
        .db
        .run(|conn| Ok((crate::db::tenants::list_all(conn)?, crate::service::plans::list(conn).map_err(crate::db::DbError::from)?)))
        .await?;
    let q = query.q.unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let matching: Vec<_> = all
        .into_iter()
        .filter(|t| needle.is_empty() || t.name.to_lowercase().contains(&needle) || t.slug.contains(&needle) || t.id == q.trim())
        .collect();
    let total = matching.len();
    let page = query.page.unwrap_or(1).max(1);
    let link = |p: usize| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !q.is_empty() {
            s.append_pair("q", &q);
        }
        s.append_pair("page", &p.to_string());
        format!("/admin/tenants?{}", s.finish())
    };
    let tenants = matching
        .into_iter()
        .skip((page - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .map(|t| TenantRow {
            active: t.status == crate::domain::TenantStatus::Active,
            status: t.status.to_string(),
            created: crate::dashboard::when(&t.created_at),
            id: t.id,
            slug: t.slug,
            name: t.name,
            plan: t.plan,
        })
        .collect();
    let view = TenantsPage {
        chrome: Chrome::new(s, req, None, "/admin/tenants"),
        previous: (page > 1).then(|| link(page - 1)),
        next: (page * PAGE_ROWS < total).then(|| link(page + 1)),
        q,
        tenants,
        plans: plans.into_iter().map(|p| p.spec.name).collect(),
        errors,
        input,
        total,
    };
    chrome::render_status(req, status, &view)
}

pub async fn get_tenants(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    query: web::Query<TenantQuery>,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    page(&req, &state, &s, query.into_inner(), StatusCode::OK, Errors::default(), TenantInput::default()).await
}

pub async fn create_tenant(req: HttpRequest, state: web::Data<AppState>, s: Session, body: web::Bytes) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let form = s.form(&req, &body)?;
    let input = TenantInput {
        name: form.get("name").to_owned(),
        slug: form.get("slug").to_owned(),
        plan: form.get("plan").to_owned(),
        time_zone: form.get("time_zone").to_owned(),
    };
    let request =
        CreateTenantRequest { name: input.name.clone(), slug: form.opt("slug"), time_zone: form.opt("time_zone"), plan: form.opt("plan") };
    let actor = s.actor(&state, &req);
    match state.db.run(move |conn| Ok(crate::service::tenants::create(conn, &request, &actor))).await? {
        Ok(t) => Ok(chrome::redirect_with(&format!("/admin/t/{}", t.id), &format!("Tenant “{}” created.", t.name), false)),
        Err(e) => {
            let errors = Errors::from_service(e)?;
            page(&req, &state, &s, TenantQuery::default(), StatusCode::UNPROCESSABLE_ENTITY, errors, input).await
        }
    }
}

pub async fn disable_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    s.form(&req, &body)?;
    let tenant = s.tenant(&path)?;
    let actor = s.actor(&state, &req);
    let view = state.db.run(move |conn| Ok(crate::service::tenants::disable(conn, &tenant, &actor))).await??;
    state.auth.invalidate_all_credentials();
    Ok(chrome::redirect_with("/admin/tenants", &format!("Tenant “{}” disabled.", view.name), false))
}

pub async fn change_plan(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    s.require_operator()?;
    let form = s.form(&req, &body)?;
    let tenant = s.tenant(&path)?;
    let request = UpdateTenantRequest { plan: Some(form.get("plan").trim().to_owned()), ..UpdateTenantRequest::default() };
    let actor = s.actor(&state, &req);
    let key = tenant.clone();
    match state.db.run(move |conn| Ok(crate::service::tenants::update(conn, &key, &request, &actor))).await? {
        Ok(view) => {
            state.admission.policies.forget_tenant(&tenant).await;
            Ok(chrome::redirect_with("/admin/tenants", &format!("Tenant “{}” is now on plan {}.", view.name, view.plan), false))
        }
        Err(crate::service::ServiceError::Invalid { message, .. }) => {
            Ok(chrome::redirect_with("/admin/tenants", &format!("Plan not changed: {message}"), true))
        }
        Err(e) => Err(e.into()),
    }
}
