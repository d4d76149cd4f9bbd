//! OAuth2 clients: list, create (the secret is shown once), rotate the secret with a grace
//! period, and revoke (disable), through `service::clients` as `/api/v1` does.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::keys::Shown;
use super::{ScopeOption, scope_options, when_or};
use crate::dashboard::chrome::{self, Chrome, Errors};
use crate::dashboard::{PageError, Session};
use crate::domain::TenantId;
use crate::service::clients::{self as svc, ClientResponse, CreateClientRequest, RotateSecretRequest};
use crate::state::AppState;

pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub scopes: String,
    pub allowlist: String,
    pub ttl: i32,
    pub status: String,
    pub previous_until: String,
    pub created: String,
    pub active: bool,
}

impl From<ClientResponse> for ClientRow {
    fn from(c: ClientResponse) -> Self {
        ClientRow {
            active: c.status == "active",
            scopes: c.scopes.join(" "),
            allowlist: if c.ip_allowlist.is_empty() { "any".into() } else { c.ip_allowlist.join(", ") },
            ttl: c.token_ttl_seconds,
            previous_until: when_or(c.previous_secret_valid_until.as_ref(), "–"),
            created: crate::dashboard::when(&c.created_at),
            status: c.status,
            id: c.client_id,
            name: c.name,
        }
    }
}

#[derive(Default)]
pub struct ClientInput {
    pub name: String,
    pub token_ttl_seconds: String,
    pub ip_allowlist: String,
}

#[derive(Template)]
#[template(path = "admin/clients.html")]
struct ClientsPage {
    chrome: Chrome,
    base: String,
    clients: Vec<ClientRow>,
    shown: Option<Shown>,
    errors: Errors,
    input: ClientInput,
    scopes: Vec<ScopeOption>,
}

/// What a render of the page carries besides the list.
#[derive(Default)]
struct View {
    shown: Option<Shown>,
    errors: Errors,
    input: ClientInput,
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
    let clients = state.db.run(move |conn| Ok(svc::list(conn, &key))).await??;
    let base = format!("/admin/t/{tenant}/clients");
    let page = ClientsPage {
        chrome: Chrome::new(s, req, Some(tenant), &base),
        base,
        clients: clients.into_iter().map(ClientRow::from).collect(),
        shown: view.shown,
        errors: view.errors,
        input: view.input,
        scopes: scope_options(&view.checked),
    };
    chrome::render_status(req, status, &page)
}

pub async fn get_clients(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let (tenant, _) = super::load(&state, &s, &path).await?;
    page(&req, &state, &s, &tenant, StatusCode::OK, View::default()).await
}

pub async fn create_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let form = s.form(&req, &body)?;
    let (tenant, _) = super::load(&state, &s, &path).await?;
    let input = ClientInput {
        name: form.get("name").to_owned(),
        token_ttl_seconds: form.get("token_ttl_seconds").trim().to_owned(),
        ip_allowlist: form.get("ip_allowlist").to_owned(),
    };
    let checked = form.all("scopes");
    let ttl = match input.token_ttl_seconds.as_str() {
        "" => Ok(None),
        v => v.parse::<i32>().map(Some),
    };
    let Ok(token_ttl_seconds) = ttl else {
        let mut errors = Errors::default();
        errors.add("token_ttl_seconds", "must be a whole number of seconds");
        return page(&req, &state, &s, &tenant, StatusCode::UNPROCESSABLE_ENTITY, View { errors, input, checked, shown: None }).await;
    };
    let request = CreateClientRequest {
        name: input.name.clone(),
        scopes: checked.clone(),
        ip_allowlist: form.lines("ip_allowlist"),
        token_ttl_seconds,
        secret_expires_at: None,
    };
    let actor = s.actor(&state, &req);
    let pepper = state.auth.pepper.clone();
    let key = tenant.clone();
    match state.db.run(move |conn| Ok(svc::create(conn, &pepper, &key, &request, &actor))).await? {
        Ok(created) => {
            let shown = Shown {
                title: format!("Client “{}” created: client id {}", created.client.name, created.client.client_id),
                secret: created.client_secret,
            };
            page(&req, &state, &s, &tenant, StatusCode::CREATED, View { shown: Some(shown), ..View::default() }).await
        }
        Err(e) => {
            let errors = Errors::from_service(e)?;
            page(&req, &state, &s, &tenant, StatusCode::UNPROCESSABLE_ENTITY, View { errors, input, checked, shown: None }).await
        }
    }
}

pub async fn rotate_client(
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
    let (key, target) = (tenant.clone(), id.clone());
    let rotated = state
        .db
        .run(move |conn| Ok(svc::rotate_secret(conn, &pepper, &key, &target, &RotateSecretRequest { grace_period_s }, &actor)))
        .await??;
    state.auth.invalidate_client(&id).await;
    let shown = Shown { title: format!("New secret for client {}", rotated.client.client_id), secret: rotated.client_secret };
    page(&req, &state, &s, &tenant, StatusCode::OK, View { shown: Some(shown), ..View::default() }).await
}

pub async fn disable_client(
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
    let disabled = state.db.run(move |conn| Ok(svc::disable(conn, &key, &target, &actor))).await??;
    state.auth.invalidate_client(&id).await;
    Ok(chrome::redirect_with(&format!("/admin/t/{tenant}/clients"), &format!("Client “{}” revoked.", disabled.name), false))
}
