//! Sign-in, sign-out and the settings page. The login form is limited per client IP and locks an
//! (account, IP) pair out after repeated failures, with the token endpoint's machinery
//! (`auth::limits::TokenLimits`); every attempt is audited as `dashboard.login`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{Duration, Utc};

use super::chrome::{self, Chrome, Errors, Flash};
use super::session::{self, Session, check_origin, tokens_match};
use super::{PageError, see_other};
use crate::auth::password;
use crate::db::admins::TokenOwner;
use crate::db::audit::{ActorKind, AuditEvent, Outcome};
use crate::db::sessions;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    csrf_token: String,
    /// Whether single sign-on (`[dashboard.oidc]`) is offered.
    sso: bool,
    email: String,
    error: Option<String>,
    flash: Option<Flash>,
}

#[derive(Template)]
#[template(path = "admin/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    errors: Errors,
}

/// `/admin`: a tenant admin's overview, or an operator's tenant list.
pub async fn get_home(session: Session) -> HttpResponse {
    match &session.manager {
        crate::extract::Manager::TenantAdmin { tenant, .. } => see_other(&format!("/admin/t/{tenant}")),
        crate::extract::Manager::Operator { .. } => see_other("/admin/tenants"),
    }
}

fn login_token(req: &HttpRequest, tls: bool) -> Option<String> {
    req.cookie(session::login_cookie_name(tls)).map(|c| c.value().to_owned()).filter(|v| v.len() == 32)
}

pub(super) fn login_page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    email: String,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let tls = session::secure(state, req);
    let existing = login_token(req, tls);
    let token = existing.clone().unwrap_or_else(|| crate::domain::random_base62(32));
    let page =
        LoginPage { csrf_token: token.clone(), sso: state.config.dashboard.oidc.enabled(), email, error, flash: chrome::flash_of(req) };
    let mut response = chrome::render_status(req, status, &page)?;
    if existing.is_none() {
        response
            .add_cookie(&session::cookie(session::login_cookie_name(tls), token, tls, None))
            .map_err(|e| PageError::Internal(e.into()))?;
    }
    Ok(response)
}

pub async fn get_login(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    login_page(&req, &state, StatusCode::OK, String::new(), None)
}

/// A hash to verify against when the account does not exist, so an unknown email costs the
/// same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| password::hash("not a password of anyone here").unwrap_or_default())
}

enum Attempt {
    Ok(TokenOwner),
    Failed { account: Option<String> },
}

pub async fn post_login(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, PageError> {
    let tls = session::secure(&state, &req);
    let form = session::Form::parse(&body);
    check_origin(&req)?;
    if !tokens_match(form.get("csrf_token"), &login_token(&req, tls).unwrap_or_default()) {
        return Err(PageError::Csrf);
    }
    let email = form.get("email").trim().to_lowercase();
    let pw = form.get("password").to_owned();
    let source = state.client_ip(&req);
    let ip = source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let event = |outcome: Outcome, reason: &str| {
        AuditEvent::new(ActorKind::Anonymous, "dashboard.login", outcome)
            .origin(source, crate::telemetry::current_request_id())
            .details(serde_json::json!({ "email": email, "reason": reason }))
    };
    let limited = match state.login_limits.check_ip(ip) {
        Err(l) => Some((l, "ip_limited")),
        Ok(_) => state.login_limits.locked_out(&email, ip).map(|l| (l, "locked_out")),
    };
    if let Some((limited, reason)) = limited {
        metrics::counter!("gatehouse_dashboard_logins_total", "outcome" => reason).increment(1);
        state.audit.record(event(Outcome::Failure, reason)).await;
        let wait = limited.retry_after.as_secs().max(1);
        let mut response = login_page(
            &req,
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            email.clone(),
            Some(format!("Too many sign-in attempts; try again in {wait} s.")),
        )?;
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_str(&wait.to_string()).map_err(|e| PageError::Internal(e.into()))?,
        );
        return Ok(response);
    }
    let lookup = email.clone();
    let attempt = state
        .db
        .run(move |conn| {
            let account = sessions::find_login(conn, &lookup)?;
            let Some(account) = account else {
                password::verify(&pw, dummy_hash());
                return Ok(Attempt::Failed { account: None });
            };
            let id = match &account.owner {
                TokenOwner::Operator(id) => id.to_string(),
                TokenOwner::TenantAdmin { admin, .. } => admin.to_string(),
            };
            let ok = match &account.password_hash {
                Some(hash) => password::verify(&pw, hash),
                None => {
                    password::verify(&pw, dummy_hash());
                    false
                }
            };
            Ok(if ok && !account.disabled { Attempt::Ok(account.owner) } else { Attempt::Failed { account: Some(id) } })
        })
        .await?;
    let owner = match attempt {
        Attempt::Ok(owner) => owner,
        Attempt::Failed { account } => {
            metrics::counter!("gatehouse_dashboard_logins_total", "outcome" => "bad_credentials").increment(1);
            state.login_limits.record_failure(&email, ip);
            let mut failure = event(Outcome::Failure, "bad_credentials");
            if let Some(id) = account {
                failure = failure.target("account", id);
            }
            state.audit.record(failure).await;
            if state.login_limits.locked_out(&email, ip).is_some() {
                state.audit.record(event(Outcome::Failure, "lockout_started")).await;
            }
            return login_page(&req, &state, StatusCode::UNAUTHORIZED, email, Some("Email or password is incorrect.".into()));
        }
    };
    start_session(&req, &state, owner, "password").await
}

/// Signs `owner` in: a new session row (only the token's hash), the audit event, the cookie, and
/// a redirect to the dashboard. `method`: how they proved who they are (`password`, `oidc`).
pub async fn start_session(
    req: &HttpRequest,
    state: &AppState,
    owner: TokenOwner,
    method: &'static str,
) -> Result<HttpResponse, PageError> {
    let tls = session::secure(state, req);
    let source = state.client_ip(req);
    let token = crate::domain::random_base62(43);
    let hash = session::hash_token(&token);
    let csrf: [u8; 32] = rand::random();
    let expires_at = Utc::now() + Duration::seconds(state.config.dashboard.session_absolute_s as i64);
    let user_agent =
        req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(200).collect());
    let (kind, actor_id, tenant) = match &owner {
        TokenOwner::Operator(id) => (ActorKind::Operator, id.to_string(), None),
        TokenOwner::TenantAdmin { admin, tenant } => (ActorKind::TenantAdmin, admin.to_string(), Some(tenant.clone())),
    };
    let mut success = AuditEvent::new(kind, "dashboard.login", Outcome::Success)
        .actor(actor_id)
        .origin(source, crate::telemetry::current_request_id())
        .details(serde_json::json!({ "method": method }));
    if let Some(t) = &tenant {
        success = success.tenant(t);
    }
    state
        .db
        .run(move |conn| {
            use diesel::Connection;
            Ok(conn.transaction(|conn| {
                sessions::insert(
                    conn,
                    &sessions::NewSession {
                        token_hash: &hash,
                        owner: &owner,
                        csrf_secret: &csrf,
                        expires_at,
                        source_ip: source.map(|i| i.to_string()),
                        user_agent,
                    },
                )?;
                crate::db::audit::insert(conn, &success)
            })?)
        })
        .await?;
    metrics::counter!("gatehouse_dashboard_logins_total", "outcome" => "success").increment(1);
    let mut response = see_other("/admin");
    let max_age = state.config.dashboard.session_absolute_s as i64;
    response
        .add_cookie(&session::cookie(session::cookie_name(tls), token, tls, Some(max_age)))
        .map_err(|e| PageError::Internal(e.into()))?;
    Ok(response)
}

fn removal(name: &'static str, tls: bool) -> actix_web::cookie::Cookie<'static> {
    let mut c = session::cookie(name, String::new(), tls, None);
    c.make_removal();
    c
}

pub async fn post_logout(req: HttpRequest, state: web::Data<AppState>, s: Session, body: web::Bytes) -> Result<HttpResponse, PageError> {
    s.form(&req, &body).or_else(|e| if matches!(e, PageError::Forbidden(_)) { Ok(Default::default()) } else { Err(e) })?;
    let hash = s.token_hash.clone();
    let event = s.actor(&state, &req).event("dashboard.logout");
    let event = match &s.owner {
        TokenOwner::TenantAdmin { tenant, .. } => event.tenant(tenant),
        TokenOwner::Operator(_) => event,
    };
    state
        .db
        .run(move |conn| {
            sessions::delete(conn, &hash)?;
            Ok(crate::db::audit::insert(conn, &event)?)
        })
        .await?;
    let tls = session::secure(&state, &req);
    let mut response = chrome::redirect_with("/admin/login", "You are signed out.", false);
    response.add_cookie(&removal(session::cookie_name(tls), tls)).map_err(|e| PageError::Internal(e.into()))?;
    Ok(response)
}

pub async fn get_settings(req: HttpRequest, s: Session) -> Result<HttpResponse, PageError> {
    let chrome = Chrome::new(&s, &req, None, "/admin/settings");
    chrome::render(&req, &SettingsPage { chrome, errors: Errors::default() })
}

pub async fn post_password(req: HttpRequest, state: web::Data<AppState>, s: Session, body: web::Bytes) -> Result<HttpResponse, PageError> {
    let form = s.form(&req, &body)?;
    let (current, new) = (form.get("current_password").to_owned(), form.get("new_password").to_owned());
    let owner = s.owner.clone();
    let actor = s.actor(&state, &req);
    let changed = state.db.run(move |conn| Ok(crate::service::accounts::change_password(conn, &owner, &current, &new, &actor))).await?;
    match changed {
        Ok(_) => {
            let tls = session::secure(&state, &req);
            let mut response = chrome::redirect_with("/admin/login", "Your password is changed; sign in with the new one.", false);
            response.add_cookie(&removal(session::cookie_name(tls), tls)).map_err(|e| PageError::Internal(e.into()))?;
            Ok(response)
        }
        Err(e) => {
            let errors = Errors::from_service(e)?;
            let chrome = Chrome::new(&s, &req, None, "/admin/settings");
            chrome::render_status(&req, StatusCode::UNPROCESSABLE_ENTITY, &SettingsPage { chrome, errors })
        }
    }
}
