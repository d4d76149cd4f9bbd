//! `/api/v1/signing-keys` (operators only).

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{RouteTable, actor};
use crate::db::signing_keys::{self, SigningKeyView};
use crate::error::ApiError;
use crate::extract::Manager;
use crate::state::AppState;

pub fn configure(cfg: &mut impl RouteTable) {
    cfg.add(Method::GET, "/signing-keys", list_signing_keys).add(Method::POST, "/signing-keys/rotate", rotate_signing_keys);
}

/// Every signing key with its state; never private material.
#[utoipa::path(get, path = "/api/v1/signing-keys", tag = "signing-keys", responses((status = 200, body = [SigningKeyView]), (status = 403)))]
pub async fn list_signing_keys(manager: Manager, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let keys: Vec<SigningKeyView> = state.db.run(|conn| Ok(signing_keys::list(conn)?)).await?.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(keys))
}

/// The published next key starts signing; the active key retires after the longest token
/// lifetime; a new next key is published.
#[utoipa::path(post, path = "/api/v1/signing-keys/rotate", tag = "signing-keys", responses((status = 200, body = [SigningKeyView]), (status = 403)))]
pub async fn rotate_signing_keys(manager: Manager, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    manager.require_operator()?;
    let master = state.auth.master.clone();
    let alg = state.config.auth.signing_alg;
    let event = actor(&manager, &state, &req).event("signing_key.rotate");
    let keys = state
        .db
        .run(move |conn| {
            let changes = crate::auth::rotation::rotate(conn, &master, alg, chrono::Utc::now())?;
            crate::db::audit::insert(conn, &event.details(serde_json::to_value(&changes).unwrap_or_default()))?;
            Ok(signing_keys::list(conn)?)
        })
        .await?;
    state.auth.reload_keys(&state.db).await?;
    Ok(HttpResponse::Ok().json(keys.into_iter().map(SigningKeyView::from).collect::<Vec<_>>()))
}
