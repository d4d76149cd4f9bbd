//! `Manager`: the caller of the management API, authenticated by a management token
//! (`gth_mgmt_…`). Operators see every tenant; a tenant admin is confined to one, and any other
//! tenant's resources answer 404 exactly as if they did not exist.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, web};

use crate::auth::secrets;
use crate::auth::service::BearerError;
use crate::db::admins::TokenOwner;
use crate::db::audit::{ActorKind, AuditEvent, Outcome};
use crate::domain::{AdminId, OperatorId, TenantId};
use crate::error::{ApiError, Realm};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    Operator { id: OperatorId },
    TenantAdmin { id: AdminId, tenant: TenantId },
}

impl Manager {
    pub fn is_operator(&self) -> bool {
        matches!(self, Manager::Operator { .. })
    }

    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.is_operator() { Ok(()) } else { Err(ApiError::Forbidden("this action needs a platform operator".into())) }
    }

    /// The tenant named in the path, if this caller may see it; otherwise 404.
    pub fn tenant(&self, raw: &str) -> Result<TenantId, ApiError> {
        let not_found = || ApiError::NotFound("tenant not found".into());
        let id = TenantId::parse(raw).map_err(|_| not_found())?;
        match self {
            Manager::Operator { .. } => Ok(id),
            Manager::TenantAdmin { tenant, .. } if *tenant == id => Ok(id),
            Manager::TenantAdmin { .. } => Err(not_found()),
        }
    }

    /// Whether this caller may act on the given tenant's resources.
    pub fn can_see(&self, tenant: &str) -> bool {
        match self {
            Manager::Operator { .. } => true,
            Manager::TenantAdmin { tenant: own, .. } => own.as_str() == tenant,
        }
    }

    pub fn actor_kind(&self) -> ActorKind {
        match self {
            Manager::Operator { .. } => ActorKind::Operator,
            Manager::TenantAdmin { .. } => ActorKind::TenantAdmin,
        }
    }

    pub fn actor_id(&self) -> String {
        match self {
            Manager::Operator { id } => id.to_string(),
            Manager::TenantAdmin { id, .. } => id.to_string(),
        }
    }
}

impl FromRequest for Manager {
    type Error = ApiError;
    type Future = Ready<Result<Manager, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Manager>()
                .cloned()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("Manager requested on a route without authenticate_management"))),
        )
    }
}

/// Middleware for the `/api/v1` scope: the management token is checked before any path, query or
/// body extractor runs, so a stranger learns nothing from validation errors and every refusal is
/// JSON. A tenant admin of a disabled tenant may still read, but every change answers 403.
pub async fn authenticate_management<B: MessageBody>(req: ServiceRequest, next: Next<B>) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let state =
        req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    match authenticate(&state, req.request()).await {
        Ok(manager) => {
            req.extensions_mut().insert(manager);
            next.call(req).await.map(ServiceResponse::map_into_left_body)
        }
        // A response, not an `Err`: outer middleware (security headers, request id) still applies.
        Err(e) => {
            let response = actix_web::ResponseError::error_response(&e);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Manager, ApiError> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(ApiError::bearer(Realm::Management, BearerError::Missing)),
    };
    let record =
        if secrets::parse_management_token(token).is_some() { state.auth.authenticate_management(&state.db, token).await? } else { None };
    let Some(record) = record else {
        let event = AuditEvent::new(ActorKind::Anonymous, "api.authenticate", Outcome::Failure)
            .origin(state.client_ip(req), crate::telemetry::current_request_id())
            .details(serde_json::json!({ "path": req.path() }));
        state.audit.record(event).await;
        return Err(ApiError::bearer(Realm::Management, BearerError::InvalidToken("the management token is invalid")));
    };
    if !record.tenant_active && !req.method().is_safe() {
        return Err(ApiError::Forbidden("this tenant is disabled: its admins can read but not change anything".into()));
    }
    Ok(match &record.owner {
        TokenOwner::Operator(id) => Manager::Operator { id: id.clone() },
        TokenOwner::TenantAdmin { admin, tenant } => Manager::TenantAdmin { id: admin.clone(), tenant: tenant.clone() },
    })
}
