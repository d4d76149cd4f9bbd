//! Alignment jobs for long audio: `POST /v1/audio/alignments/jobs` (honours `Idempotency-Key`),
//! `GET …/jobs/{id}` and `DELETE …/jobs/{id}`. A job is checked like a synchronous alignment,
//! stored (a row plus its 16 kHz WAV audio) and worked on by the `JobRunner`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Checked, check};
use crate::admission::Gate;
use crate::auth::service::Principal;
use crate::db::DbError;
use crate::db::jobs::{self, Job, NewJob};
use crate::domain::{AUDIO_ALIGN, JobId};
use crate::error::ApiError;
use crate::jobs::{Params, chunks_for, job_json};
use crate::limits::Demand;
use crate::metering::Amounts;
use crate::state::AppState;

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else { return Ok(None) };
    let key = v.to_str().ok().map(str::trim).filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x21..0x7f).contains(&b)));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_idempotency_key",
        message: "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
        param: None,
    })
}

/// The job a repeated idempotency key names: the same request gets the same job, another
/// request with the key is refused.
fn replay(existing: Job, fingerprint: &str) -> Result<HttpResponse, ApiError> {
    let same = existing.params.get("fingerprint").and_then(Value::as_str) == Some(fingerprint);
    if !same {
        return Err(ApiError::Conflict("this Idempotency-Key was used for a different request".into()));
    }
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/v1/audio/alignments/jobs/{}", existing.id)))
        .insert_header(("Idempotent-Replayed", "true"))
        .json(job_json(&existing)))
}

/// What makes two job requests the same request.
fn fingerprint(checked: &Checked) -> String {
    let mut h = Sha256::new();
    h.update(checked.model.as_bytes());
    h.update([0]);
    h.update(checked.language.name.as_bytes());
    h.update([0]);
    h.update(checked.text.as_bytes());
    h.update([0]);
    checked.audio.samples.iter().for_each(|s| h.update(s.to_le_bytes()));
    format!("{:x}", h.finalize())
}

/// `POST /v1/audio/alignments/jobs`.
pub async fn post_job(principal: Principal, state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let mut gate = state.admission.gate(&principal);
    let result = create(&mut gate, &state, req, payload).await;
    gate.respond(result).await
}

async fn create(gate: &mut Gate<'_>, state: &AppState, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    gate.principal().require(AUDIO_ALIGN)?;
    let key = idempotency_key(&req)?;
    let max_ms = state.config.alignment.job_max_duration_s * 1000;
    let checked = check(gate, state, &req, payload, max_ms, true).await?;
    let fingerprint = fingerprint(&checked);
    let tenant = gate.principal().tenant_id.clone();
    if let Some(key) = key.clone() {
        let t = tenant.clone();
        if let Some(existing) = state.db.run(move |conn| Ok(jobs::find_by_idempotency_key(conn, &t, &key)?)).await? {
            return replay(existing, &fingerprint);
        }
    }
    // A job counts as one request now; its audio is metered chunk by chunk as it is aligned.
    // The quota must have room for all of it before the job is accepted.
    let Checked { audio, text, language, model, .. } = checked;
    let audio_ms = audio.duration_ms();
    drop(gate.admit(Demand::default(), Amounts { requests: 0, tokens: 0, audio_ms: audio_ms as i64 }).await?);

    let id = JobId::generate();
    let path = state.jobs.store_audio(id.as_str(), audio.to_wav()).await.map_err(ApiError::Internal)?;
    let ceiling = state.config.alignment.max_duration_s * 1000;
    let params = serde_json::to_value(Params { language: language.name.into(), text, fingerprint: fingerprint.clone() })
        .map_err(|e| ApiError::Internal(e.into()))?;
    let path_text = path.to_string_lossy().into_owned();
    let credential = gate.principal().credential_id.clone();
    let (job_id, t) = (id.to_string(), tenant.clone());
    let inserted = state
        .db
        .run(move |conn| {
            let new = NewJob {
                id: &job_id,
                tenant_id: t.as_str(),
                credential_id: &credential,
                kind: "alignment",
                idempotency_key: key.as_deref(),
                model: &model,
                params,
                audio_path: &path_text,
                audio_duration_ms: audio_ms as i64,
                chunks_total: chunks_for(audio_ms, ceiling),
            };
            match jobs::insert(conn, &new) {
                Ok(job) => Ok(Ok(job)),
                Err(e) => match DbError::from(e) {
                    // The same key raced in from another request: answer with that job.
                    DbError::Conflict(_) => match key.as_deref() {
                        Some(k) => jobs::find_by_idempotency_key(conn, &t, k)?.map(Err).ok_or(DbError::NotFound),
                        None => Err(DbError::NotFound),
                    },
                    other => Err(other),
                },
            }
        })
        .await;
    let job = match inserted {
        Ok(Ok(job)) => job,
        Ok(Err(existing)) => {
            state.jobs.remove_audio(id.as_str()).await;
            return replay(existing, &fingerprint);
        }
        Err(e) => {
            state.jobs.remove_audio(id.as_str()).await;
            return Err(e.into());
        }
    };
    tracing::info!(job.id = %job.id, duration_ms = audio_ms, "alignment job queued");
    state.jobs.notify();
    Ok(HttpResponse::Accepted().insert_header(("Location", format!("/v1/audio/alignments/jobs/{}", job.id))).json(job_json(&job)))
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no alignment job `{id}`"))
}

/// `GET /v1/audio/alignments/jobs/{id}`.
pub async fn get_job(principal: Principal, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let gate = state.admission.gate(&principal);
    let result = async {
        principal.require(AUDIO_ALIGN)?;
        let (tenant, job_id) = (principal.tenant_id.clone(), id.into_inner());
        let lookup = job_id.clone();
        let job = state.db.run(move |conn| Ok(jobs::find(conn, &tenant, &lookup)?)).await?.ok_or_else(|| job_not_found(&job_id))?;
        Ok(HttpResponse::Ok().json(job_json(&job)))
    }
    .await;
    gate.respond(result).await
}

/// `DELETE /v1/audio/alignments/jobs/{id}`: cancels a queued or running job.
pub async fn delete_job(principal: Principal, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let gate = state.admission.gate(&principal);
    let result = async {
        principal.require(AUDIO_ALIGN)?;
        let (tenant, job_id) = (principal.tenant_id.clone(), id.into_inner());
        let lookup = job_id.clone();
        let expires = state.jobs.expiry();
        let (cancelled, job) =
            state.db.run(move |conn| Ok(jobs::cancel(conn, &tenant, &lookup, expires)?)).await?.ok_or_else(|| job_not_found(&job_id))?;
        if !cancelled {
            return Err(ApiError::Conflict(format!("the job has already ended ({})", job.status)));
        }
        state.jobs.remove_audio(&job.id).await;
        tracing::info!(job.id = %job.id, "alignment job cancelled");
        Ok(HttpResponse::Ok().json(job_json(&job)))
    }
    .await;
    gate.respond(result).await
}
