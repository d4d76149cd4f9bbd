//! `PageError`: a dashboard refusal rendered as an HTML page. A missing resource and another
//! tenant's resource render the very same 404 page (no id, no message), so a URL edited to a
//! foreign id tells the caller nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::db::DbError;
use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    /// A state-changing request without this session's CSRF token or from another origin.
    #[error("the form is stale or came from another site")]
    Csrf,
    /// No valid session: the browser goes to the login form.
    #[error("sign in first")]
    SignIn,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("too many requests")]
    TooMany { retry_after_s: u64 },
    #[error("the service is busy")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::Forbidden(_) | PageError::Csrf => StatusCode::FORBIDDEN,
            PageError::SignIn => StatusCode::SEE_OTHER,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if matches!(self, PageError::SignIn) {
            return super::see_other("/admin/login");
        }
        let request_id = crate::telemetry::current_request_id().unwrap_or_else(|| "unknown".into());
        let (title, message) = match self {
            PageError::NotFound => ("Not found", "There is nothing at this address, or it is not yours to see.".to_owned()),
            PageError::Forbidden(m) => ("Forbidden", m.clone()),
            PageError::Csrf => (
                "Forbidden",
                "This form is stale or came from another site; nothing was changed. Reload the page and try again.".to_owned(),
            ),
            PageError::Conflict(m) => ("Conflict", m.clone()),
            PageError::BadRequest(m) => ("Bad request", m.clone()),
            PageError::TooMany { retry_after_s } => ("Too many requests", format!("Try again in {retry_after_s} s.")),
            PageError::Unavailable => ("Busy", format!("The service is busy; try again shortly (request id {request_id}).")),
            PageError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "dashboard page failed");
                ("Error", format!("Something went wrong on our side (request id {request_id})."))
            }
            PageError::SignIn => ("Sign in", String::new()),
        };
        let status = self.status_code();
        let page = ErrorPage { status: status.as_u16(), title, message };
        let body = page.render().unwrap_or_else(|_| title.to_owned());
        let mut response = HttpResponse::build(status);
        response.content_type("text/html; charset=utf-8").insert_header(("Cache-Control", "no-store"));
        if let PageError::TooMany { retry_after_s } = self {
            response.insert_header(("Retry-After", retry_after_s.to_string()));
        }
        response.body(body)
    }
}

impl From<DbError> for PageError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => PageError::NotFound,
            DbError::Unavailable(_) => PageError::Unavailable,
            DbError::Conflict(m) => PageError::Conflict(m),
            other => PageError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<diesel::result::Error> for PageError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => PageError::NotFound,
            ServiceError::Conflict(m) => PageError::Conflict(m),
            ServiceError::Invalid { .. } => PageError::BadRequest(e.to_string()),
            ServiceError::Db(d) => d.into(),
        }
    }
}

impl From<crate::error::ApiError> for PageError {
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError;
        match e {
            ApiError::NotFound(_) => PageError::NotFound,
            ApiError::Forbidden(m) => PageError::Forbidden(m),
            ApiError::Conflict(m) => PageError::Conflict(m),
            ApiError::RateLimited { retry_after, .. } => PageError::TooMany { retry_after_s: retry_after.as_secs().max(1) },
            ApiError::Unavailable { .. } => PageError::Unavailable,
            ApiError::Validation { message, .. } | ApiError::BadRequest { message, .. } => PageError::BadRequest(message),
            other => PageError::Internal(anyhow::anyhow!("{other}")),
        }
    }
}
