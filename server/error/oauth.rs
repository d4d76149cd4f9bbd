//! `OAuthError`: errors of the authorization-server endpoints in RFC 6749 §5.2 shape,
//! `{"error","error_description"}`, always `Cache-Control: no-store`. A 401 carries
//! `WWW-Authenticate: Basic realm="oauth2"`; a 429/503 carries `Retry-After`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub retry_after: Option<Duration>,
    pub headers: Vec<(&'static str, String)>,
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError { status, error, description: description.into(), retry_after: None, headers: Vec::new() }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// One response for every client-authentication failure, whatever the cause.
    pub fn invalid_client() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
    }

    /// 403 `access_denied`: an IP rule (the platform's, or the client's tenant's) refuses the
    /// caller's address.
    pub fn address_refused() -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", "requests from this address are not accepted")
    }

    /// 403 `access_denied`: a CORS preflight from an origin no tenant allows.
    pub fn origin_refused() -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", "this origin may not call this endpoint from a browser (CORS)")
    }

    pub fn unsupported_grant_type() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub fn invalid_target() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", "resource must be this server's API audience")
    }

    pub fn unsupported_token_type(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_token_type", description)
    }

    pub fn rate_limited(retry_after: Duration, headers: Vec<(&'static str, String)>) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable", "too many requests; retry later");
        e.retry_after = Some(retry_after);
        e.headers = headers;
        e
    }

    pub fn unavailable() -> Self {
        let mut e =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the credential store is unavailable; retry shortly");
        e.retry_after = Some(Duration::from_secs(2));
        e
    }

    pub fn server_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
    }

    pub fn method_not_allowed() -> Self {
        let mut e = Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "use POST");
        e.headers.push(("Allow", "POST".into()));
        e
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        r.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"oauth2\"")));
        }
        if let Some(after) = self.retry_after {
            r.insert_header((header::RETRY_AFTER, after.as_secs().max(1).to_string()));
        }
        for (name, value) in &self.headers {
            r.insert_header((*name, value.clone()));
        }
        r.json(serde_json::json!({ "error": self.error, "error_description": self.description }))
    }
}
