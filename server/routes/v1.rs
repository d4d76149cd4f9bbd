//! The OpenAI-compatible API under `/v1`. Every route here runs behind `authenticate_v1`, so the
//! `Principal` is known before any body is read; each handler checks its own scope first.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::{plans, tenants, workers};
use crate::domain::MODELS_READ;
use crate::error::ApiError;
use crate::extract::Principal;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/models", web::get().to(list_models))
        .route("/chat/completions", web::post().to(super::completions::post_chat_completions))
        .route("/completions", web::post().to(super::completions::post_completions));
}

/// `GET /v1/models`: the models this credential's plan allows, in OpenAI's list shape.
pub async fn list_models(principal: Principal, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    principal.require(MODELS_READ)?;
    let tenant = principal.tenant_id.clone();
    let models = state
        .db
        .run(move |conn| {
            let t = tenants::find(conn, &tenant)?;
            let plan = plans::find(conn, &tenants::plan_id_of(&t))?;
            let served = workers::list_models(conn)?;
            let allow_all = plan.allowed_models.iter().any(|m| m == "*");
            Ok(served.into_iter().filter(|(model, _)| allow_all || plan.allowed_models.contains(model)).collect::<Vec<_>>())
        })
        .await?;
    let data: Vec<_> = models
        .into_iter()
        .map(|(id, created)| json!({ "id": id, "object": "model", "created": created.timestamp(), "owned_by": "gatehouse" }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}
