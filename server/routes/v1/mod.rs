//! The OpenAI-compatible API under `/v1`. Every route here runs behind `authenticate_v1`, so the
//! `Principal` is known before any body is read; each handler checks its own scope first, takes
//! the admission step through a `Gate`, and answers through it (rate-limit headers included).

pub mod alignments;
pub mod completions;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::admission::Gate;
use crate::auth::service::Principal;
use crate::db::workers;
use crate::domain::MODELS_READ;
use crate::error::ApiError;
use crate::limits::Demand;
use crate::metering::Amounts;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/models", web::get().to(list_models))
        .route("/chat/completions", web::post().to(completions::post_chat_completions))
        .route("/completions", web::post().to(completions::post_completions))
        .configure(alignments::configure);
}

/// `GET /v1/models`: the models this credential's plan allows, in OpenAI's list shape.
pub async fn list_models(principal: Principal, state: web::Data<AppState>) -> HttpResponse {
    let mut gate = state.admission.gate(&principal);
    let result = models(&mut gate, &state).await;
    gate.respond(result).await
}

async fn models(gate: &mut Gate<'_>, state: &AppState) -> Result<HttpResponse, ApiError> {
    gate.principal().require(MODELS_READ)?;
    // A listing counts as one request against the per-minute and concurrency limits (not the quotas).
    let policy = gate.policy().await?;
    let _admitted = gate.admit(Demand::default(), Amounts::default()).await?;
    let served = state.db.run(|conn| Ok(workers::list_models(conn)?)).await?;
    let models = served.into_iter().filter(|(model, _)| policy.allows(model));
    let data: Vec<_> = models
        .map(|(id, created)| json!({ "id": id, "object": "model", "created": created.timestamp(), "owned_by": "gatehouse" }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}
