//! `Chrome`: what every signed-in page shares (navigation, the user, the flash message, the CSRF
//! token), and the flash message itself: a short-lived cookie set with a redirect after a
//! change and cleared by the next page that shows it.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::{PageError, Session};
use crate::domain::TenantId;

const FLASH_COOKIE: &str = "gh_flash";

pub struct NavItem {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

pub struct Flash {
    pub text: String,
    pub bad: bool,
}

pub struct Chrome {
    pub email: String,
    pub role: &'static str,
    pub csrf_token: String,
    pub nav: Vec<NavItem>,
    pub flash: Option<Flash>,
    /// The tenant whose pages these are, when an operator looks at one.
    pub viewing: Option<String>,
}

impl Chrome {
    /// `current`: the href of the page shown (marked in the navigation).
    pub fn new(session: &Session, req: &HttpRequest, tenant: Option<&TenantId>, current: &str) -> Chrome {
        let mut nav = Vec::new();
        let mut item = |href: String, label: &'static str| {
            let current = href == current;
            nav.push(NavItem { href, label, current });
        };
        if session.is_operator() {
            for (href, label) in [
                ("/admin/tenants", "Tenants"),
                ("/admin/plans", "Plans"),
                ("/admin/pools", "Pools"),
                ("/admin/signing-keys", "Signing keys"),
                ("/admin/usage", "Usage"),
                ("/admin/audit", "Audit"),
            ] {
                item(href.to_owned(), label);
            }
        }
        let own = match &session.manager {
            crate::extract::Manager::TenantAdmin { tenant, .. } => Some(tenant.clone()),
            crate::extract::Manager::Operator { .. } => None,
        };
        if let Some(t) = tenant.cloned().or(own) {
            let base = format!("/admin/t/{t}");
            item(base.clone(), "Overview");
            for (suffix, label) in [
                ("/api-keys", "API keys"),
                ("/clients", "OAuth clients"),
                ("/usage", "Usage"),
                ("/limits", "Limits"),
                ("/audit", "Audit log"),
            ] {
                item(format!("{base}{suffix}"), label);
            }
        }
        item("/admin/settings".to_owned(), "Settings");
        Chrome {
            email: session.email.clone(),
            role: if session.is_operator() { "operator" } else { "tenant admin" },
            csrf_token: session.csrf_token.clone(),
            nav,
            flash: read_flash(req),
            viewing: tenant.filter(|_| session.is_operator()).map(ToString::to_string),
        }
    }
}

fn read_flash(req: &HttpRequest) -> Option<Flash> {
    let raw = req.cookie(FLASH_COOKIE)?.value().to_owned();
    let decoded = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy().into_owned();
    let (bad, text) = match decoded.strip_prefix("!") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, decoded),
    };
    let text: String = text.chars().take(300).collect();
    (!text.is_empty()).then_some(Flash { text, bad })
}

/// Renders a page; clears the flash cookie if the request carried one (it is shown now).
pub fn render(req: &HttpRequest, page: &impl Template) -> Result<HttpResponse, PageError> {
    render_status(req, actix_web::http::StatusCode::OK, page)
}

pub fn render_status(req: &HttpRequest, status: actix_web::http::StatusCode, page: &impl Template) -> Result<HttpResponse, PageError> {
    let body = page.render().map_err(|e| PageError::Internal(anyhow::anyhow!("template: {e}")))?;
    let mut response = HttpResponse::build(status);
    response.content_type("text/html; charset=utf-8");
    if req.cookie(FLASH_COOKIE).is_some() {
        let mut gone = Cookie::build(FLASH_COOKIE, "").path("/admin").http_only(true).same_site(SameSite::Lax).finish();
        gone.make_removal();
        response.cookie(gone);
    }
    Ok(response.body(body))
}

/// 303 to `location` with a message for the next page.
pub fn redirect_with(location: &str, text: &str, bad: bool) -> HttpResponse {
    let value = format!("{}{text}", if bad { "!" } else { "" });
    let encoded = percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC).to_string();
    let flash = Cookie::build(FLASH_COOKIE, encoded)
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(60))
        .finish();
    let mut response = super::see_other(location);
    let _ = response.add_cookie(&flash);
    response
}

/// Validation messages by field, shown beside each field of a re-rendered form.
#[derive(Debug, Default)]
pub struct Errors(Vec<(&'static str, String)>);

impl Errors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    /// A service's validation error as a field message; anything else stays an error page.
    pub fn from_service(e: crate::service::ServiceError) -> Result<Errors, PageError> {
        match e {
            crate::service::ServiceError::Invalid { field, message } => Ok(Errors(vec![(field, message)])),
            other => Err(other.into()),
        }
    }
}

/// The flash message of a page that has no `Chrome` (the login form).
pub fn flash_of(req: &HttpRequest) -> Option<Flash> {
    read_flash(req)
}
