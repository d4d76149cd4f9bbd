//! The OpenAI-compatible API under `/v1`. Every route here runs behind `authenticate_v1`, so the
//! `Principal` is known before any body is read; each handler checks its own scope first.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::workers;
use crate::domain::MODELS_READ;
use crate::error::ApiError;
use crate::extract::Principal;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/models", web::get().to(list_models))
        .route("/chat/completions", web::post().to(super::completions::post_chat_completions))
        .route("/completions", web::post().to(super::completions::post_completions))
        .configure(super::alignments::configure);
}

/// `GET /v1/models`: the models this credential's plan allows, in OpenAI's list shape.
pub async fn list_models(principal: Principal, state: web::Data<AppState>) -> HttpResponse {
    let mut states = Vec::new();
    let result = models(principal, state, &mut states).await;
    crate::limits::respond(result, &states)
}

async fn models(
    principal: Principal,
    state: web::Data<AppState>,
    limit_states: &mut Vec<crate::limits::CounterState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(MODELS_READ)?;
    // A listing counts as one request against the per-minute and concurrency limits.
    let policy = crate::policy::tenant_policy(&state, &principal.tenant_id).await?;
    let subject = crate::policy::subject(&state, &principal, &policy).await?;
    let _admission = state.limiter.admit_recording(&subject, crate::limits::Demand::default(), limit_states).await?;
    let served = state.db.run(|conn| Ok(workers::list_models(conn)?)).await?;
    let models = served.into_iter().filter(|(model, _)| policy.allows(model));
    let data: Vec<_> = models
        .map(|(id, created)| json!({ "id": id, "object": "model", "created": created.timestamp(), "owned_by": "gatehouse" }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}
