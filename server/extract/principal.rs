//! The `/v1` resource server front door (docs/auth.md, resource server): a middleware authenticates the
//! bearer credential before any handler or body extractor runs, and stores the `Principal` in
//! the request; handlers take `Principal` and check their route's scope.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, web};

use crate::auth::service::BearerError;
pub use crate::auth::service::Principal;
use crate::db::audit::{ActorKind, AuditEvent, Outcome};
use crate::error::{ApiError, Realm};
use crate::state::AppState;

impl Principal {
    /// 403 with an `insufficient_scope` challenge unless the credential carries `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.scopes.contains(scope) { Ok(()) } else { Err(ApiError::InsufficientScope { scope }) }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Principal, ApiError>>;

    /// Takes the principal `authenticate_v1` left (moved, not copied: a handler extracts it once).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions_mut()
                .remove::<Principal>()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("Principal requested on a route without authenticate_v1"))),
        )
    }
}

/// The first check: exactly one `Authorization: Bearer <b64token>`; no token in the query.
fn bearer_token(req: &ServiceRequest) -> Result<String, BearerError> {
    let mut values = req.headers().get_all(actix_web::http::header::AUTHORIZATION);
    let query_token = req.query_string().split('&').any(|p| p.split('=').next() == Some("access_token"));
    // A token only in the query is not a credential here (RFC 6750 §2.3 is not supported).
    let Some(value) = values.next() else { return Err(BearerError::Missing) };
    if values.next().is_some() {
        return Err(BearerError::InvalidRequest("more than one Authorization header"));
    }
    if query_token {
        return Err(BearerError::InvalidRequest("token given both in the header and the query"));
    }
    let value = value.to_str().map_err(|_| BearerError::InvalidToken("the credential is malformed"))?;
    let Some((scheme, token)) = value.split_once(' ') else { return Err(BearerError::Missing) };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = token.trim();
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || token.len() > crate::auth::jwt::MAX_TOKEN_LEN || !token.chars().all(b64token) {
        return Err(BearerError::InvalidToken("the credential is malformed"));
    }
    Ok(token.to_owned())
}

/// Middleware for the `/v1` scope.
pub async fn authenticate_v1<B: MessageBody>(req: ServiceRequest, next: Next<B>) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let state =
        req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let ip = state.client_ip(req.request());
    let result = match bearer_token(&req) {
        Ok(token) => state.auth.authenticate_bearer(&state.db, &token, ip).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(principal) if state.edge.tenant_refuses(&principal.tenant_id, ip) => {
            let event = AuditEvent::new(ActorKind::Anonymous, "v1.authenticate", Outcome::Failure)
                .tenant(&principal.tenant_id)
                .origin(ip, crate::telemetry::current_request_id())
                .details(serde_json::json!({ "reason": "ip_rule", "credential": principal.credential_id, "path": req.path() }));
            state.audit.record(event).await;
            let response = actix_web::ResponseError::error_response(&ApiError::IpBlocked);
            Ok(req.into_response(response).map_into_right_body())
        }
        Ok(principal) => {
            if req.headers().contains_key(actix_web::http::header::ORIGIN) {
                req.extensions_mut().insert(crate::edge::cors::CorsTenant(principal.tenant_id.clone()));
            }
            req.extensions_mut().insert(principal);
            next.call(req).await.map(ServiceResponse::map_into_left_body)
        }
        Err(e) => {
            if !matches!(e, BearerError::Missing | BearerError::Unavailable) {
                metrics::counter!("gatehouse_auth_failures_total", "endpoint" => "v1").increment(1);
                state.auth.failures.record(ip, None);
                let event = AuditEvent::new(ActorKind::Anonymous, "v1.authenticate", Outcome::Failure)
                    .origin(ip, crate::telemetry::current_request_id())
                    .details(serde_json::json!({ "reason": e.to_string(), "path": req.path() }));
                state.audit.record(event).await;
            }
            // A response, not an `Err`: outer middleware (security headers, request id) still
            // applies to it.
            let response = actix_web::ResponseError::error_response(&ApiError::bearer(Realm::Api, e));
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}
