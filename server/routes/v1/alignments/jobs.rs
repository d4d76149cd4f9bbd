//! Alignment jobs for long audio: `POST /v1/audio/alignments/jobs` (honours `Idempotency-Key`),
//! `GET …/jobs/{id}` and `DELETE …/jobs/{id}`. A job is checked like a synchronous alignment,
//! its upload decoded straight into its 16 kHz WAV file (never whole in memory), stored (a row
//! plus that file) and worked on by the `JobRunner`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Request, audio_error, check_plausible, decode_slot, read_request};
use crate::admission::Gate;
use crate::audio::{AudioError, AudioLimits, Decoded, PcmSink, WavFileWriter, decode_into, pcm16_le_bytes};
use crate::auth::service::Principal;
use crate::db::DbError;
use crate::db::jobs::{self, Job, NewJob};
use crate::domain::{AUDIO_ALIGN, JobId, Slot};
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

/// What makes two job requests the same request: the model, language, transcript and decoded
/// samples. The samples are hashed as they are decoded (`JobAudio`), after this prefix.
fn fingerprint_prefix(model: &str, language: &str, text: &str) -> Sha256 {
    let mut h = Sha256::new();
    for part in [model, language, text] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h
}

/// Where a job's audio goes while it is decoded: its file, streamed, with the fingerprint hash
/// of the samples. Stops at the next block once the request is gone.
struct JobAudio {
    file: WavFileWriter,
    hash: Sha256,
    bytes: Vec<u8>,
    abandoned: Arc<AtomicBool>,
}

impl PcmSink for JobAudio {
    fn write(&mut self, samples: &[i16]) -> std::io::Result<()> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the request went away"));
        }
        self.hash.update(pcm16_le_bytes(samples, &mut self.bytes));
        self.file.write(samples)
    }
}

/// A new job's audio file until the job is stored: dropped before [`PendingAudio::keep`] (the
/// request was refused, failed, or its client went away), it stops the decode and removes the
/// file, so no partial or orphaned audio stays in `alignment.jobs_dir`.
struct PendingAudio {
    path: PathBuf,
    abandoned: Arc<AtomicBool>,
    kept: bool,
}

impl PendingAudio {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for PendingAudio {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        self.abandoned.store(true, Ordering::Relaxed);
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "partial job audio not removed");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Decodes the upload straight into the job's WAV file on a blocking thread, holding `slot`
/// until the decode ends (even if the request is dropped meanwhile). Memory stays the upload
/// plus a few buffers; past `limits.max_duration_ms` decoding stops. On any error the file is
/// removed here; after success `pending` owns it. Returns the decoded audio and the fingerprint.
async fn decode_to_file(
    pending: &PendingAudio,
    slot: Slot,
    file: Vec<u8>,
    limits: AudioLimits,
    hash: Sha256,
) -> Result<(Decoded, String), ApiError> {
    let (path, abandoned) = (pending.path.clone(), pending.abandoned.clone());
    web::block(move || {
        let _slot = slot;
        let decoded = (|| {
            let output = |e: std::io::Error| AudioError::Output(e.to_string());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(output)?;
            }
            let file_writer = WavFileWriter::create(&path).map_err(output)?;
            let mut sink = JobAudio { file: file_writer, hash, bytes: Vec::new(), abandoned: abandoned.clone() };
            let decoded = decode_into(&file, &limits, &mut sink)?;
            sink.file.finish().map_err(output)?;
            if abandoned.load(Ordering::Relaxed) {
                return Err(AudioError::Output("the request went away".into()));
            }
            Ok((decoded, format!("{:x}", sink.hash.finalize())))
        })();
        if decoded.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        decoded
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("audio decoding task failed: {e}")))?
    .map_err(|e| audio_error(e, false))
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
    let Request { file, text, units, language, model, limits, .. } = read_request(gate, state, &req, payload, max_ms).await?;
    let tenant = gate.principal().tenant_id.clone();
    let slot = decode_slot(state, &tenant)?;
    let id = JobId::generate();
    let pending = PendingAudio { path: state.jobs.audio_path(id.as_str()), abandoned: Arc::default(), kept: false };
    let hash = fingerprint_prefix(&model, language.name, &text);
    let (decoded, fingerprint) = decode_to_file(&pending, slot, file, limits, hash).await?;
    let audio_ms = decoded.duration_ms();
    check_plausible(state, units, language, audio_ms)?;
    if let Some(key) = key.clone() {
        let t = tenant.clone();
        if let Some(existing) = state.db.run(move |conn| Ok(jobs::find_by_idempotency_key(conn, &t, &key)?)).await? {
            return replay(existing, &fingerprint);
        }
    }
    // A job counts as one request now; its audio is metered chunk by chunk as it is aligned.
    // The quota must have room for all of it before the job is accepted.
    drop(gate.admit(Demand::default(), Amounts { requests: 0, tokens: 0, audio_ms: audio_ms as i64 }).await?);

    let ceiling = state.config.alignment.max_duration_s * 1000;
    let params = serde_json::to_value(Params { language: language.name.into(), text, fingerprint: fingerprint.clone() })
        .map_err(|e| ApiError::Internal(e.into()))?;
    let path_text = pending.path.to_string_lossy().into_owned();
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
    let job = match inserted? {
        Ok(job) => job,
        Err(existing) => return replay(existing, &fingerprint),
    };
    pending.keep();
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
