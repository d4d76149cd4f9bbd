//! `ApiError`: one error type chosen by HTTP meaning, rendered in OpenAI's shape
//! `{"error":{"message","type","param","code"}}` so OpenAI SDKs raise their usual exceptions.
//! The `code` strings are a contract with clients: stable and snake_case. 5xx bodies are opaque
//! and carry the request id; the cause is logged once, here.

pub mod cli;
pub mod oauth;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::service::BearerError;
use crate::db::DbError;

pub use cli::CliError;

/// Which credentials a bearer challenge asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    /// `/v1`: an OAuth2 access token or an API key.
    Api,
    /// `/api/v1`: a management token.
    Management,
}

impl Realm {
    fn as_str(self) -> &'static str {
        match self {
            Realm::Api => "api",
            Realm::Management => "management",
        }
    }
}

/// One variant per protocol meaning. Messages are for people and never carry an internal cause:
/// 5xx answers say what failed in general terms and give the request id; the cause is logged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `code` says how.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, param: Option<&'static str> },
    /// A bearer credential was missing or refused (RFC 6750): 401 with the realm's challenge, or
    /// 400 for a malformed `Authorization` request.
    #[error("{}", bearer_message(*.realm, .error))]
    Bearer { realm: Realm, error: BearerError },
    /// 403: the caller may not do this at all.
    #[error("{0}")]
    Forbidden(String),
    /// 403: an IP rule refuses the caller's address (the platform's, or the tenant's).
    #[error("requests from this address are not accepted")]
    IpBlocked,
    /// 403: the credential lacks the route's scope (with an `insufficient_scope` challenge).
    #[error("this credential lacks the `{scope}` scope")]
    InsufficientScope { scope: &'static str },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 413: the body, or a part of it, is over its limit.
    #[error("{message}")]
    PayloadTooLarge { code: &'static str, message: String, param: Option<&'static str> },
    /// 415: the body's type is not one this route takes.
    #[error("{message}")]
    UnsupportedMediaType { code: &'static str, message: String },
    /// 422: well-formed, but a value breaks a rule.
    #[error("{message}")]
    Validation { code: &'static str, message: String, param: Option<&'static str> },
    /// 431: the request line and headers together are over the server's limit.
    #[error("the request headers are larger than the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("{message}")]
    RateLimited { message: String, retry_after: Duration, code: &'static str },
    #[error("{message}")]
    Unavailable { message: String, retry_after: Duration },
    #[error("the upstream worker did not answer in time")]
    UpstreamTimeout,
    /// The worker failed (5xx, refused connection): 502.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The body of every error answer, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
pub struct Detail<'a> {
    /// For people; a 5xx message carries the request id.
    message: String,
    /// `invalid_request_error`, `permission_error`, `not_found_error`, `rate_limit_error` or
    /// `server_error`.
    #[serde(rename = "type")]
    kind: &'a str,
    /// The request field at fault, when one is.
    param: Option<&'a str>,
    /// Stable snake_case code, e.g. `invalid_value`, `not_found`, `invalid_api_key`.
    code: &'a str,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into(), param: None }
    }

    /// 400 `invalid_request` naming the field at fault.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code: "invalid_request", message: message.into(), param: Some(param) }
    }

    /// 422 `invalid_value` naming the field at fault (None: the body as a whole).
    pub fn validation(param: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError::Validation { code: "invalid_value", message: message.into(), param }
    }

    /// A refused bearer credential; a credential store that cannot answer is a 503, not a 401.
    pub fn bearer(realm: Realm, error: BearerError) -> Self {
        match error {
            BearerError::Unavailable => ApiError::Unavailable {
                message: "credentials cannot be checked right now; retry shortly".into(),
                retry_after: Duration::from_secs(2),
            },
            error => ApiError::Bearer { realm, error },
        }
    }

    /// The body is over the server's size limit.
    pub fn body_too_large(limit: usize) -> Self {
        ApiError::PayloadTooLarge {
            code: "payload_too_large",
            message: format!("request body is larger than the limit of {limit} bytes"),
            param: None,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::PayloadTooLarge { code, .. }
            | ApiError::UnsupportedMediaType { code, .. }
            | ApiError::Validation { code, .. }
            | ApiError::RateLimited { code, .. } => code,
            ApiError::Bearer { error: BearerError::InvalidRequest(_), .. } => "invalid_request",
            ApiError::Bearer { .. } => "invalid_api_key",
            ApiError::HeadersTooLarge { .. } => "request_header_fields_too_large",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::IpBlocked => "ip_blocked",
            ApiError::InsufficientScope { .. } => "insufficient_scope",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable { .. } => "service_unavailable",
            ApiError::UpstreamTimeout => "upstream_timeout",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// OpenAI's error `type` for the status class.
    fn kind(&self) -> &'static str {
        match self {
            ApiError::Bearer { .. } => "invalid_request_error",
            ApiError::Forbidden(_) | ApiError::IpBlocked | ApiError::InsufficientScope { .. } => "permission_error",
            ApiError::NotFound(_) => "not_found_error",
            ApiError::RateLimited { .. } => "rate_limit_error",
            ApiError::Internal(_) | ApiError::Unavailable { .. } | ApiError::UpstreamTimeout | ApiError::Upstream(_) => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            ApiError::BadRequest { param, .. } | ApiError::Validation { param, .. } | ApiError::PayloadTooLarge { param, .. } => *param,
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::Bearer { error: BearerError::InvalidRequest(_), .. } => StatusCode::BAD_REQUEST,
            ApiError::Bearer { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::IpBlocked | ApiError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status.is_server_error() {
            let request_id = crate::telemetry::current_request_id().unwrap_or_else(|| "unknown".into());
            if let ApiError::Internal(cause) = self {
                tracing::error!(error = format!("{cause:#}"), "request failed");
            } else {
                tracing::warn!(error = %self, status = status.as_u16(), "request failed");
            }
            // The variants' own messages are fixed texts chosen for callers; an internal cause
            // is never shown.
            match self {
                ApiError::Internal(_) => format!("internal error (request id {request_id})"),
                other => format!("{other} (request id {request_id})"),
            }
        } else {
            self.to_string()
        };
        let mut response = HttpResponse::build(status);
        if let Some(challenge) = self.challenge() {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.insert_header((header::WWW_AUTHENTICATE, value));
            }
        }
        if let ApiError::RateLimited { code: "quota_exceeded", .. } = self {
            // OpenAI SDKs honour this: waiting does not help until the period ends.
            response.insert_header((header::HeaderName::from_static("x-should-retry"), HeaderValue::from_static("false")));
        }
        if let ApiError::RateLimited { retry_after, .. } | ApiError::Unavailable { retry_after, .. } = self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.insert_header((header::RETRY_AFTER, value));
            }
        }
        response.json(Body { error: Detail { message, kind: self.kind(), param: self.param(), code: self.code() } })
    }
}

fn bearer_message(realm: Realm, e: &BearerError) -> String {
    match (realm, e) {
        (Realm::Api, BearerError::Missing) => "authentication required: send `Authorization: Bearer <access token or API key>`".into(),
        (Realm::Management, BearerError::Missing) => "authentication required: send `Authorization: Bearer <management token>`".into(),
        (_, other) => other.to_string(),
    }
}

impl ApiError {
    /// RFC 6750 §3 challenge for bearer failures; never echoes the credential.
    fn challenge(&self) -> Option<String> {
        match self {
            ApiError::Bearer { realm, error } => {
                let realm = realm.as_str();
                Some(match error {
                    BearerError::InvalidRequest(d) => {
                        format!("Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{d}\"")
                    }
                    BearerError::InvalidToken(d) => format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{d}\""),
                    BearerError::Missing | BearerError::Unavailable => format!("Bearer realm=\"{realm}\""),
                })
            }
            ApiError::InsufficientScope { scope } => Some(format!("Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"{scope}\"")),
            _ => None,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(message) => {
                tracing::warn!(error = %message, "database unavailable");
                ApiError::Unavailable { message: "the database is unavailable; retry shortly".into(), retry_after: Duration::from_secs(2) }
            }
            DbError::NotFound => ApiError::NotFound("not found".into()),
            DbError::Conflict(_) => ApiError::Conflict("it already exists".into()),
            DbError::Query(e) => ApiError::Internal(anyhow::Error::new(e).context("database query failed")),
            DbError::Other(e) => ApiError::Internal(e),
        }
    }
}

/// JSON body errors from actix's extractor, in our shape: 413 past the limit, 415 for a wrong
/// content type, 400 for malformed JSON.
pub fn json_error(err: actix_web::error::JsonPayloadError, limit: usize) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => ApiError::body_too_large(limit),
        E::ContentType => {
            ApiError::UnsupportedMediaType { code: "unsupported_media_type", message: "expected Content-Type: application/json".into() }
        }
        E::Deserialize(e) if e.is_data() => ApiError::validation(None, format!("invalid request body: {e}")),
        E::Deserialize(e) => ApiError::bad_request("invalid_json", format!("request body is not valid JSON: {e}")),
        _ => ApiError::bad_request("invalid_body", format!("could not read the request body: {err}")),
    };
    api.into()
}

/// The JSON error for a query string that does not fit its handler's parameters.
pub fn query_error(err: actix_web::error::QueryPayloadError) -> actix_web::Error {
    ApiError::bad_request("invalid_query", format!("invalid query string: {err}")).into()
}

/// The JSON error for a path segment that does not fit its handler's parameters.
pub fn path_error(err: actix_web::error::PathError) -> actix_web::Error {
    ApiError::NotFound(format!("no such resource: {err}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(e: &ApiError) -> serde_json::Value {
        let bytes = e.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn openai_shape() {
        let v = body_of(&ApiError::NotFound("model `x` does not exist".into()));
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "model `x` does not exist");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn internal_errors_are_opaque() {
        let e = ApiError::Internal(anyhow::anyhow!("password=hunter2 in a cause"));
        let v = body_of(&e);
        assert!(!v.to_string().contains("hunter2"));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn unavailable_has_retry_after() {
        let e: ApiError = DbError::Unavailable("pool timeout".into()).into();
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "2");
    }
}
