//! API keys: list, create (scopes, expiry, IP allowlist; the key is shown once, on the page the
//! form answers with), roll and revoke, through `service::api_keys` as `/api/v1` does.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{ScopeOption, scope_options, when_or};
use crate::dashboard::chrome::{self, Chrome, Errors};
use crate::dashboard::{PageError, Session};
use crate::domain::TenantId;
use crate::service::api_keys::{self as svc, ApiKeyResponse, CreateApiKeyRequest, RollApiKeyRequest};
use crate::state::AppState;

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub masked: String,
    pub scopes: String,
    pub allowlist: String,
    pub status: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    pub active: bool,
}

impl From<ApiKeyResponse> for KeyRow {
    fn from(k: ApiKeyResponse) -> Self {
        KeyRow {
            active: k.status == "active",
            masked: k.masked_key,
            scopes: k.scopes.join(" "),
            allowlist: if k.ip_allowlist.is_empty() { "any".into() } else { k.ip_allowlist.join(", ") },
            created: crate::dashboard::when(&k.created_at),
            expires: when_or(k.expires_at.as_ref(), "never"),
            last_used: when_or(k.last_used_at.as_ref(), "never"),
            status: k.status,
            id: k.id,
            name: k.name,
        }
    }
}

/// The create form's input, kept when it is shown again with errors.
#[derive(Default)]
pub struct KeyInput {
    pub name: String,
    pub environment: String,
    pub expires_in_days: String,
    pub ip_allowlist: String,
}

/// A secret shown exactly once.
pub struct Shown {
    pub title: String,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "admin/api_keys.html")]
struct KeysPage {
    chrome: Chrome,
    base: String,
    keys: Vec<KeyRow>,
    shown: Option<Shown>,
    errors: Errors,
    input: KeyInput,
    scopes: Vec<ScopeOption>,
}

/// What a render of the page carries besides the list.
#[derive(Default)]
struct View {
    shown: Option<Shown>,
    errors: Errors,
    input: KeyInput,
    checked: Vec<String>,
}

async fn page(
    req: &HttpRequest,
    state: &AppState,
    s: &Session,
    tenant: &TenantId,
    status: StatusCode,
    view: View,
) -> Result<HttpResponse, PageError> {
    let key = tenant.clone();
    let keys = state.db.run(move |conn| Ok(svc::list(conn, &key))).await??;
    let base = format!("/admin/t/{tenant}/api-keys");
    let input = KeyInput {
        environment: if view.input.environment.is_empty() { "live".into() } else { view.input.environment.clone() },
        ..view.input
    };
    let page = KeysPage {
        chrome: Chrome::new(s, req, Some(tenant), &base),
        base,
        keys: keys.into_iter().map(KeyRow::from).collect(),
        shown: view.shown,
        errors: view.errors,
        input,
        scopes: scope_options(&view.checked),
    };
    chrome::render_status(req, status, &page)
}

pub async fn get_keys(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let (tenant, _) = super::load(&state, &s, &path).await?;
    page(&req, &state, &s, &tenant, StatusCode::OK, View::default()).await
}

pub async fn create_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let form = s.form(&req, &body)?;
    let (tenant, _) = super::load(&state, &s, &path).await?;
    let input = KeyInput {
        name: form.get("name").to_owned(),
        environment: form.opt("environment").unwrap_or_else(|| "live".into()),
        expires_in_days: form.get("expires_in_days").trim().to_owned(),
        ip_allowlist: form.get("ip_allowlist").to_owned(),
    };
    let scopes = form.all("scopes");
    let mut errors = Errors::default();
    let expires_in_days = match input.expires_in_days.as_str() {
        "" => None,
        v => match v.parse::<i64>() {
            Ok(d) => Some(d),
            Err(_) => {
                errors.add("expires_in_days", "must be a whole number of days");
                None
            }
        },
    };
    if !errors.is_empty() {
        return page(&req, &state, &s, &tenant, StatusCode::UNPROCESSABLE_ENTITY, View { errors, input, checked: scopes, shown: None })
            .await;
    }
    let request = CreateApiKeyRequest {
        name: input.name.clone(),
        scopes: scopes.clone(),
        environment: Some(input.environment.clone()),
        expires_in_days,
        ip_allowlist: form.lines("ip_allowlist"),
    };
    let actor = s.actor(&state, &req);
    let pepper = state.auth.pepper.clone();
    let key = tenant.clone();
    match state.db.run(move |conn| Ok(svc::create(conn, &pepper, &key, &request, &actor))).await? {
        Ok(created) => {
            let shown = Shown { title: format!("API key “{}” created", created.api_key.name), secret: created.key };
            page(&req, &state, &s, &tenant, StatusCode::CREATED, View { shown: Some(shown), ..View::default() }).await
        }
        Err(e) => {
            let errors = Errors::from_service(e)?;
            page(&req, &state, &s, &tenant, StatusCode::UNPROCESSABLE_ENTITY, View { errors, input, checked: scopes, shown: None }).await
        }
    }
}

pub async fn roll_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let form = s.form(&req, &body)?;
    let (raw_tenant, id) = path.into_inner();
    let (tenant, _) = super::load(&state, &s, &raw_tenant).await?;
    let grace_period_s = form.get("grace_period_s").parse::<u64>().unwrap_or(86_400);
    let actor = s.actor(&state, &req);
    let pepper = state.auth.pepper.clone();
    let (key, old) = (tenant.clone(), id.clone());
    let rolled = state.db.run(move |conn| Ok(svc::roll(conn, &pepper, &key, &old, &RollApiKeyRequest { grace_period_s }, &actor))).await?;
    match rolled {
        Ok(created) => {
            state.auth.invalidate_api_key(&id).await;
            let shown = Shown {
                title: format!("API key “{}” rolled; the old key stops working after the grace period", created.api_key.name),
                secret: created.key,
            };
            page(&req, &state, &s, &tenant, StatusCode::CREATED, View { shown: Some(shown), ..View::default() }).await
        }
        Err(crate::service::ServiceError::Conflict(m)) => Ok(chrome::redirect_with(&format!("/admin/t/{tenant}/api-keys"), &m, true)),
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    s.form(&req, &body)?;
    let (raw_tenant, id) = path.into_inner();
    let (tenant, _) = super::load(&state, &s, &raw_tenant).await?;
    let actor = s.actor(&state, &req);
    let (key, target) = (tenant.clone(), id.clone());
    let revoked = state.db.run(move |conn| Ok(svc::revoke(conn, &key, &target, &actor))).await??;
    state.auth.invalidate_api_key(&id).await;
    Ok(chrome::redirect_with(&format!("/admin/t/{tenant}/api-keys"), &format!("API key “{}” revoked.", revoked.name), false))
}
