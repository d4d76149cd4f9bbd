//! Dashboard sessions: the cookie, the `Session` extractor (idle timeout and absolute lifetime
//! from `[dashboard]`), and the checks every state-changing form passes before anything else
//! runs: same origin (`Origin`, else `Referer`) and this session's synchronizer token.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};

use super::PageError;
use crate::db::admins::TokenOwner;
use crate::db::sessions;
use crate::domain::TenantId;
use crate::extract::Manager;
use crate::state::AppState;

/// A session is stamped as used at most this often (one UPDATE per page is wasteful).
const TOUCH_EVERY_S: i64 = 15;

/// Whether the browser reached us over TLS: Gatehouse serves TLS itself, or a trusted proxy
/// (`server.trusted_proxies`) terminated it and says so in `X-Forwarded-Proto`. Cookies are then
/// `Secure` and `__Host-` prefixed.
pub fn secure(state: &AppState, req: &HttpRequest) -> bool {
    if state.config.tls.enabled() {
        return true;
    }
    let from_proxy = req.peer_addr().is_some_and(|peer| state.trusted_proxies.iter().any(|net| net.contains(&peer.ip())));
    from_proxy && req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The session cookie's name: `__Host-` prefixed (and `Secure`) when served over TLS.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls { "__Host-gh_session" } else { "gh_session" }
}

/// The login form's CSRF cookie (before there is a session to hold a token).
pub fn login_cookie_name(tls: bool) -> &'static str {
    if tls { "__Host-gh_login" } else { "gh_login" }
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cookie for the dashboard: HttpOnly, SameSite=Lax, path `/`, `Secure` under TLS.
pub fn cookie(name: &'static str, value: String, tls: bool, max_age_s: Option<i64>) -> Cookie<'static> {
    let mut c = Cookie::build(name, value).path("/").http_only(true).same_site(SameSite::Lax).secure(tls).finish();
    if let Some(s) = max_age_s {
        c.set_max_age(actix_web::cookie::time::Duration::seconds(s));
    }
    c
}

/// A signed-in operator or tenant admin.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: Vec<u8>,
    pub manager: Manager,
    pub owner: TokenOwner,
    pub email: String,
    /// The synchronizer token every form of this session carries.
    pub csrf_token: String,
    /// False for an admin of a disabled tenant: pages render, changes are refused.
    pub tenant_active: bool,
}

impl FromRequest for Session {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Session, PageError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { load(&req).await })
    }
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, PageError> {
    req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| PageError::Internal(anyhow::anyhow!("application state missing")))
}

async fn load(req: &HttpRequest) -> Result<Session, PageError> {
    let state = state_of(req)?;
    let tls = secure(&state, req);
    let token = req.cookie(cookie_name(tls)).map(|c| c.value().to_owned()).ok_or(PageError::SignIn)?;
    if token.len() != 43 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(PageError::SignIn);
    }
    let hash = hash_token(&token);
    let idle = Duration::seconds(state.config.dashboard.session_idle_s as i64);
    let key = hash.clone();
    let record = state
        .db
        .run(move |conn| {
            let Some(record) = sessions::find(conn, &key)? else { return Ok(None) };
            let now = Utc::now();
            if !record.owner_active || record.expires_at <= now || record.last_seen_at + idle <= now {
                sessions::delete(conn, &key)?;
                return Ok(None);
            }
            if now - record.last_seen_at >= Duration::seconds(TOUCH_EVERY_S) {
                sessions::touch(conn, &key, now)?;
            }
            Ok(Some(record))
        })
        .await?
        .ok_or(PageError::SignIn)?;
    let manager = match &record.owner {
        TokenOwner::Operator(id) => Manager::Operator { id: id.clone() },
        TokenOwner::TenantAdmin { admin, tenant } => Manager::TenantAdmin { id: admin.clone(), tenant: tenant.clone() },
    };
    Ok(Session {
        token_hash: hash,
        manager,
        owner: record.owner,
        email: record.email,
        csrf_token: hex(&record.csrf_secret),
        tenant_active: record.tenant_active,
    })
}

impl Session {
    pub fn is_operator(&self) -> bool {
        self.manager.is_operator()
    }

    /// The tenant named in a dashboard path, if this user may see it; otherwise the 404 page,
    /// the same as for a tenant that does not exist.
    pub fn tenant(&self, raw: &str) -> Result<TenantId, PageError> {
        self.manager.tenant(raw).map_err(|_| PageError::NotFound)
    }

    pub fn require_operator(&self) -> Result<(), PageError> {
        if self.is_operator() { Ok(()) } else { Err(PageError::NotFound) }
    }

    /// The audit actor for this session's changes.
    pub fn actor(&self, state: &AppState, req: &HttpRequest) -> crate::service::Actor {
        crate::service::Actor {
            kind: self.manager.actor_kind(),
            id: self.manager.actor_id(),
            source_ip: state.client_ip(req),
            request_id: crate::telemetry::current_request_id(),
        }
    }

    /// A state-changing form: same origin, this session's CSRF token, and (for a tenant admin)
    /// an active tenant. Runs before anything reads or changes data; a refusal changes nothing.
    pub fn form(&self, req: &HttpRequest, body: &[u8]) -> Result<Form, PageError> {
        let form = Form::parse(body);
        check_origin(req)?;
        if !tokens_match(form.get("csrf_token"), &self.csrf_token) {
            return Err(PageError::Csrf);
        }
        if !self.tenant_active {
            return Err(PageError::Forbidden("This tenant is disabled: its admins can read but not change anything.".into()));
        }
        Ok(form)
    }
}

/// Constant-time comparison of a submitted token with the expected one.
pub fn tokens_match(submitted: &str, expected: &str) -> bool {
    !expected.is_empty() && aws_lc_rs::constant_time::verify_slices_are_equal(submitted.as_bytes(), expected.as_bytes()).is_ok()
}

/// The second CSRF layer: a browser's `Origin` (or, without one, `Referer`) must name this host.
/// A request with neither (old browsers, some privacy settings) relies on the token alone.
pub fn check_origin(req: &HttpRequest) -> Result<(), PageError> {
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let source = [actix_web::http::header::ORIGIN, actix_web::http::header::REFERER]
        .into_iter()
        .find_map(|h| req.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_owned));
    let Some(source) = source else { return Ok(()) };
    let authority = source.split_once("://").map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match authority {
        Some(a) if !host.is_empty() && a.eq_ignore_ascii_case(&host) => Ok(()),
        _ => Err(PageError::Csrf),
    }
}

/// A submitted `application/x-www-form-urlencoded` body, as pairs (checkbox groups repeat a
/// name). Missing fields read as empty.
#[derive(Debug, Clone, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The trimmed value, None when empty.
    pub fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name).trim()).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }

    /// A textarea as a list: one entry per non-empty line (commas also separate).
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.get(name).split(['\n', ',']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_and_lists() {
        let f = Form::parse(b"name=a+b&scopes=x&scopes=y&allow=10.0.0.0%2F8%0D%0A%0D%0A192.0.2.1");
        assert_eq!(f.get("name"), "a b");
        assert_eq!(f.all("scopes"), vec!["x", "y"]);
        assert_eq!(f.lines("allow"), vec!["10.0.0.0/8", "192.0.2.1"]);
        assert_eq!(f.get("missing"), "");
        assert!(f.opt("missing").is_none());
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("abcd", "abc"));
    }
}
