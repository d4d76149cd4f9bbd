//! Administrative revocation and introspection: `DELETE /api/v1/oauth2/tokens?client_id=`
//! (revoke every token of a client), `POST /api/v1/oauth2/revoke` (one token, by value or by
//! jti + client id), `POST /api/v1/oauth2/introspect`. Tenant admins reach only their tenant.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{RouteTable, actor};
use crate::auth::jwt::{AccessClaims, Audience, Introspection, LEEWAY_S, MAX_LIFETIME_S};
use crate::error::ApiError;
use crate::extract::Manager;
use crate::service::clients as svc;
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::DELETE, "/oauth2/tokens", revoke_client_tokens).add(Method::POST, "/oauth2/revoke", revoke_token).add(
        Method::POST,
        "/oauth2/introspect",
        introspect_token,
    );
}

#[derive(Debug, Deserialize)]
pub struct ClientQuery {
    client_id: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The access token itself…
    pub token: Option<String>,
    /// …or its jti together with the client it was issued to.
    pub jti: Option<String>,
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    pub token: String,
}

/// The client's tenant, if the caller may see it (404 otherwise).
async fn client_tenant(manager: &Manager, state: &AppState, client_id: &str) -> Result<crate::domain::TenantId, ApiError> {
    let not_found = || ApiError::NotFound("client not found".into());
    let record = state.auth.client_record(&state.db, client_id).await?.ok_or_else(not_found)?;
    if !manager.can_see(&record.client.tenant_id) {
        return Err(not_found());
    }
    Ok(crate::domain::TenantId::from_trusted(record.client.tenant_id.clone()))
}

/// Every token issued to the client so far stops working (Hydra's admin path).
#[utoipa::path(delete, path = "/api/v1/oauth2/tokens", tag = "oauth2", params(("client_id" = String, Query, description = "client id")),
    responses((status = 200, body = crate::service::clients::ClientResponse), (status = 404)))]
pub async fn revoke_client_tokens(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ClientQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = client_tenant(&manager, &state, &query.client_id).await?;
    let actor = actor(&manager, &state, &req);
    let id = query.client_id.clone();
    let client = state.db.run(move |conn| Ok(svc::revoke_tokens(conn, &tenant, &id, &actor))).await??;
    state.auth.invalidate_client(&query.client_id).await;
    Ok(HttpResponse::Ok().json(client))
}

/// Revokes one access token. Idempotent; 204 whether or not it was still valid.
#[utoipa::path(post, path = "/api/v1/oauth2/revoke", tag = "oauth2", request_body = RevokeRequest, responses((status = 204), (status = 404), (status = 422)))]
pub async fn revoke_token(
    manager: Manager,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let claims: AccessClaims = match (&body.token, &body.jti, &body.client_id) {
        (Some(token), None, None) => {
            let claims = state.auth.verify_jwt(token).map_err(|_| ApiError::Validation {
                code: "invalid_value",
                message: "`token` is not a valid access token".into(),
                param: Some("token"),
            })?;
            if !manager.can_see(&claims.tenant_id) {
                return Err(ApiError::NotFound("token not found".into()));
            }
            (*claims).clone()
        }
        (None, Some(jti), Some(client_id)) => {
            if jti.is_empty() || jti.len() > 64 {
                return Err(ApiError::Validation {
                    code: "invalid_value",
                    message: "`jti` must be 1 to 64 characters".into(),
                    param: Some("jti"),
                });
            }
            let tenant = client_tenant(&manager, &state, client_id).await?;
            let now = chrono::Utc::now().timestamp();
            // The token's real expiry is unknown here: deny for the longest possible lifetime.
            AccessClaims {
                iss: String::new(),
                sub: client_id.clone(),
                aud: Audience::One(String::new()),
                exp: now + MAX_LIFETIME_S + LEEWAY_S,
                iat: now,
                nbf: now,
                jti: jti.clone(),
                client_id: client_id.clone(),
                scope: String::new(),
                tenant_id: tenant.to_string(),
            }
        }
        _ => {
            return Err(ApiError::Validation {
                code: "invalid_value",
                message: "give either `token`, or `jti` and `client_id`".into(),
                param: None,
            });
        }
    };
    state.auth.revoke_jti(&state.db, &claims, "revoked by administrator").await?;
    let a = actor(&manager, &state, &req);
    let tenant = crate::domain::TenantId::from_trusted(claims.tenant_id.clone());
    let event = a.event("oauth2.admin_revoke").tenant(&tenant).target("access_token", claims.jti.clone());
    state.db.run(move |conn| Ok(crate::db::audit::insert(conn, &event)?)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Introspects any token the caller may see (operators: all; tenant admins: their tenant's).
#[utoipa::path(post, path = "/api/v1/oauth2/introspect", tag = "oauth2", request_body = IntrospectRequest, responses((status = 200, description = "RFC 7662: `{\"active\": false}` for a token that is not active or not the caller's to see; \
        otherwise `active: true` with the token's `scope`, `client_id`, `sub`, `aud`, `iss`, `exp`, `iat`, `nbf`, `jti`, \
        `token_type` and `tenant_id`", body = Introspection)))]
pub async fn introspect_token(
    manager: Manager,
    state: web::Data<AppState>,
    body: web::Json<IntrospectRequest>,
) -> Result<HttpResponse, ApiError> {
    let claims = match state.auth.active_token(&state.db, &body.token).await {
        Ok(Some(c)) if manager.can_see(&c.tenant_id) => c,
        Ok(_) => return Ok(HttpResponse::Ok().json(Introspection::inactive())),
        Err(_) => {
            return Err(ApiError::Unavailable {
                message: "credential store unavailable".into(),
                retry_after: std::time::Duration::from_secs(2),
            });
        }
    };
    Ok(HttpResponse::Ok().json(claims.introspection()))
}
