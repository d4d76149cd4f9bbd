//! CORS for browser clients (docs/security.md, CORS): each tenant lists the origins whose pages
//! may call `/v1` and `/oauth2/token` with its credentials; the list is empty (off) by default.
//!
//! - A **preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) carries no
//!   credential, so it is answered before authentication: 204 with the CORS headers when some
//!   tenant allows the origin, 403 without them otherwise.
//! - An **actual request** gets `Access-Control-Allow-Origin` (the origin echoed, never `*`) only
//!   when the tenant of the credential that authenticated it allows the origin; authentication
//!   marks the request with `CorsTenant`. No `Access-Control-Allow-Credentials`: bearer tokens are
//!   not cookies.
//!
//! A request without `Origin` costs one header lookup.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};

use super::Edge;
use crate::domain::TenantId;
use crate::error::ApiError;
use crate::error::oauth::OAuthError;

/// The token endpoint; every path under `/v1` is the other place CORS applies.
const TOKEN_PATH: &str = "/oauth2/token";

/// Request headers a page may send: ours, and those the OpenAI JavaScript SDK sends (with the
/// `x-stainless-` family, matched by prefix).
const ALLOWED_HEADERS: [&str; 7] =
    ["authorization", "content-type", "accept", "idempotency-key", "openai-organization", "openai-project", "openai-beta"];
const ALLOWED_PREFIX: &str = "x-stainless-";

/// Response headers a page may read.
const EXPOSED: &str = "x-request-id, retry-after, x-should-retry, ratelimit, ratelimit-policy, \
     x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
     x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, \
     x-ratelimit-limit-audio-seconds, x-ratelimit-remaining-audio-seconds, x-ratelimit-reset-audio-seconds, \
     location, idempotent-replayed";

/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// Put in a request's extensions by whatever authenticated it (`authenticate_v1`, the token
/// endpoint): the tenant whose origins apply to the answer.
#[derive(Debug, Clone)]
pub struct CorsTenant(pub TenantId);

/// The allowed origins as each instance holds them, rebuilt every sync round.
#[derive(Default)]
pub struct CorsOrigins {
    by_tenant: HashMap<String, HashSet<String>>,
    any: HashSet<String>,
}

impl CorsOrigins {
    pub fn build(rows: Vec<(String, Vec<String>)>) -> CorsOrigins {
        let mut origins = CorsOrigins::default();
        for (tenant, list) in rows {
            origins.any.extend(list.iter().cloned());
            origins.by_tenant.entry(tenant).or_default().extend(list);
        }
        origins
    }

    /// Some tenant allows `origin` (what a preflight, which names no tenant, is answered by).
    pub fn any_allows(&self, origin: &str) -> bool {
        self.any.contains(origin)
    }

    pub fn tenant_allows(&self, tenant: &TenantId, origin: &str) -> bool {
        self.by_tenant.get(tenant.as_str()).is_some_and(|o| o.contains(origin))
    }
}

fn applies(path: &str) -> bool {
    path == TOKEN_PATH || path == "/v1" || path.starts_with("/v1/")
}

/// The requested headers that a page may send, lower-cased; the base list when none are asked.
/// A header left out makes the browser refuse the request, as it should.
fn allowed_headers(requested: Option<&HeaderValue>) -> String {
    let requested = requested.and_then(|v| v.to_str().ok()).unwrap_or_default();
    let allowed: Vec<String> = requested
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| ALLOWED_HEADERS.contains(&h.as_str()) || (h.len() > ALLOWED_PREFIX.len() && h.starts_with(ALLOWED_PREFIX)))
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .take(64)
        .collect();
    if allowed.is_empty() { ALLOWED_HEADERS.join(", ") } else { allowed.join(", ") }
}

fn preflight(origins: &CorsOrigins, origin: &HeaderValue, path: &str, headers: &HeaderMap) -> HttpResponse {
    if !origin.to_str().is_ok_and(|o| origins.any_allows(o)) {
        metrics::counter!("gatehouse_cors_preflights_total", "outcome" => "refused").increment(1);
        return if path == TOKEN_PATH {
            actix_web::ResponseError::error_response(&OAuthError::origin_refused())
        } else {
            actix_web::ResponseError::error_response(&ApiError::Forbidden("this origin may not call the API from a browser (CORS)".into()))
        };
    }
    metrics::counter!("gatehouse_cors_preflights_total", "outcome" => "allowed").increment(1);
    let methods = if path == TOKEN_PATH { "POST, OPTIONS" } else { "GET, POST, DELETE, OPTIONS" };
    let mut response = HttpResponse::build(StatusCode::NO_CONTENT);
    response
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers(headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS))))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE))
        .insert_header((header::VARY, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"));
    response.finish()
}

/// Middleware for the whole application, inside `edge::guard` (banned and denied addresses are
/// refused first) and outside every authentication.
pub async fn cors<B: MessageBody>(
    edge: Arc<Edge>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(origin) = req.headers().get(header::ORIGIN).filter(|_| applies(req.path())).cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let response = preflight(&edge.cors(), &origin, req.path(), req.headers());
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let allowed = {
        let extensions = response.request().extensions();
        let tenant = extensions.get::<CorsTenant>();
        tenant.is_some_and(|t| origin.to_str().is_ok_and(|o| edge.cors().tenant_allows(&t.0, o)))
    };
    if allowed {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_apply_to_their_tenant_and_preflights_to_all() {
        let a = TenantId::from_trusted("ten_a".into());
        let b = TenantId::from_trusted("ten_b".into());
        let origins = CorsOrigins::build(vec![("ten_a".into(), vec!["https://app.a.example".into()])]);
        assert!(origins.any_allows("https://app.a.example"));
        assert!(!origins.any_allows("https://evil.example"));
        assert!(origins.tenant_allows(&a, "https://app.a.example"));
        assert!(!origins.tenant_allows(&b, "https://app.a.example"));
        assert!(!CorsOrigins::default().any_allows("https://app.a.example"), "off by default");
    }

    #[test]
    fn only_allowed_request_headers_are_echoed() {
        let h = |s: &'static str| allowed_headers(Some(&HeaderValue::from_static(s)));
        assert_eq!(h("Authorization, Content-Type, X-Stainless-OS"), "authorization, content-type, x-stainless-os");
        assert_eq!(h("authorization, x-evil"), "authorization");
        assert_eq!(allowed_headers(None), ALLOWED_HEADERS.join(", "));
        assert!(["/v1/models", "/v1", "/oauth2/token"].iter().all(|p| applies(p)));
        assert!(["/v1x", "/api/v1/tenants", "/oauth2/revoke"].iter().all(|p| !applies(p)));
    }
}
