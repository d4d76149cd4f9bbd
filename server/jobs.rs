//! Alignment jobs for long audio: `POST /v1/audio/alignments/jobs` (honours `Idempotency-Key`),
//! `GET …/jobs/{id}`, `DELETE …/jobs/{id}`, and the `JobRunner` that works on them.
//!
//! A job is a row in `jobs` plus its audio (checked, decoded, stored as 16 kHz mono WAV under
//! `alignment.jobs_dir`). Runners on every instance claim runnable jobs with `SKIP LOCKED`, and
//! keep a claimed job's `updated_at` fresh; a job whose instance died is taken over once that
//! heartbeat is 60 s old, and a graceful shutdown puts its jobs back in the queue at once.
//!
//! Chunking. The aligner takes at most `alignment.max_duration_s` per call, so a job is aligned
//! chunk by chunk, in order, each chunk joining the pool's batching queue at low priority (fair
//! with the tenant's live traffic). A chunk ends at the quietest 200 ms of its last quarter (a
//! pause between words, where one is found) and gets the transcript's next units in proportion
//! to its share of the remaining audio, plus a margin. Units aligned inside the chunk's guard
//! band (its last 10 %, at least 2 s) are not kept: the next chunk starts where the last kept
//! unit ended and aligns the rest again, so the overlap absorbs a wrong estimate of how much of
//! the transcript the chunk holds. Kept units are shifted by the chunk's offset and merged. After
//! each chunk the progress (offset, next unit, kept units) is saved, so a restarted job resumes
//! from its last finished chunk. Audio is billed as the job advances, so overlap is not billed
//! twice and the total billed is the audio's duration.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::audio::Audio;
use crate::db::jobs::{self, Job, NewJob};
use crate::db::{Db, DbError};
use crate::domain::{AUDIO_ALIGN, JobId, TenantId};
use crate::error::ApiError;
use crate::extract::Principal;
use crate::limits::Demand;
use crate::routes::alignments::{Checked, check, record_usage};
use crate::scheduler::Priority;
use crate::state::AppState;
use crate::usage::Amounts;
use crate::workers::aligner::{AlignFailure, AlignItem, AlignedUnit, ItemResult, Unit, language};

/// A claimed job with no heartbeat for this long is taken over by another runner.
const STALE_AFTER_S: i64 = 60;
const HEARTBEAT: Duration = Duration::from_secs(10);
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Retries of a chunk whose worker failed, before the job fails.
const CHUNK_ATTEMPTS: u32 = 4;

/// Request parameters kept with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    language: String,
    text: String,
    fingerprint: String,
}

/// Progress saved after each chunk (in `jobs.result` while the job runs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    offset_ms: u64,
    next_unit: usize,
    items: Vec<AlignedUnit>,
}

/// The job runners of this instance.
pub struct JobRunner {
    wake: Notify,
    /// Jobs this instance is working on (put back in the queue on graceful shutdown).
    running: Mutex<Vec<String>>,
    stopping: std::sync::atomic::AtomicBool,
}

impl Default for JobRunner {
    fn default() -> Self {
        JobRunner { wake: Notify::new(), running: Mutex::new(Vec::new()), stopping: false.into() }
    }
}

impl JobRunner {
    /// Starts `alignment.job_concurrency` runner loops on the current actix system.
    pub fn spawn(state: web::Data<AppState>) {
        for _ in 0..state.config.alignment.job_concurrency {
            let state = state.clone();
            actix_rt::spawn(async move {
                while !state.jobs.is_stopping() {
                    match state.db.run(|conn| Ok(jobs::claim(conn, STALE_AFTER_S)?)).await {
                        Ok(Some(job)) => {
                            let id = job.id.clone();
                            state.jobs.track(&id, true);
                            run_job(&state, job).await;
                            state.jobs.track(&id, false);
                        }
                        Ok(None) => {
                            let _ = tokio::time::timeout(IDLE_POLL, state.jobs.wake.notified()).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot claim alignment jobs");
                            tokio::time::sleep(IDLE_POLL).await;
                        }
                    }
                }
            });
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn track(&self, id: &str, running: bool) {
        if let Ok(mut ids) = self.running.lock() {
            if running {
                ids.push(id.to_owned());
            } else {
                ids.retain(|j| j != id);
            }
        }
    }

    fn notify(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming jobs and puts this instance's running jobs back in the queue, so the next
    /// instance resumes them from their last saved chunk at once.
    pub async fn shutdown(&self, db: &Db) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        let ids = self.running.lock().map(|ids| ids.clone()).unwrap_or_default();
        if ids.is_empty() {
            return;
        }
        match db.run(move |conn| Ok(jobs::requeue(conn, &ids)?)).await {
            Ok(n) => tracing::info!(jobs = n, "alignment jobs handed back for the next instance"),
            Err(e) => tracing::warn!(error = %e, "running jobs not handed back; another instance takes them over after 60 s"),
        }
    }
}

fn audio_path(state: &AppState, id: &str) -> PathBuf {
    state.config.alignment.jobs_dir.join(format!("{id}.wav"))
}

fn retention(state: &AppState) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::days(i64::from(state.config.alignment.job_retention_days))
}

/// The job as the API shows it.
fn job_json(job: &Job) -> Value {
    let params: Option<Params> = serde_json::from_value(job.params.clone()).ok();
    let language = params.as_ref().and_then(|p| language(&p.language)).map(|l| l.name);
    let percent = if job.status == "succeeded" {
        100
    } else if job.chunks_total > 0 {
        (i64::from(job.chunks_done) * 100 / i64::from(job.chunks_total)).min(99)
    } else {
        0
    };
    json!({
        "id": job.id,
        "object": "alignment.job",
        "status": job.status,
        "model": job.model,
        "language": language,
        "duration_ms": job.audio_duration_ms,
        "progress": { "chunks_done": job.chunks_done, "chunks_total": job.chunks_total, "percent": percent },
        "created_at": job.created_at.timestamp(),
        "started_at": job.started_at.map(|t| t.timestamp()),
        "finished_at": job.finished_at.map(|t| t.timestamp()),
        "expires_at": job.expires_at.map(|t| t.timestamp()),
        "result": if job.status == "succeeded" { job.result.clone() } else { None },
        "error": job.error,
    })
}

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

/// `POST /v1/audio/alignments/jobs`.
pub async fn post_job(principal: Principal, state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let mut states = Vec::new();
    let result = create(principal, state, req, payload, &mut states).await;
    crate::limits::respond(result, &states)
}

async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    limit_states: &mut Vec<crate::limits::CounterState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(AUDIO_ALIGN)?;
    let key = idempotency_key(&req)?;
    let max_ms = state.config.alignment.job_max_duration_s * 1000;
    let Checked { audio, text, language, model, policy, .. } = check(&principal, &state, &req, payload, max_ms, true).await?;
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(model.as_bytes());
        h.update([0]);
        h.update(language.name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
        audio.samples.iter().for_each(|s| h.update(s.to_le_bytes()));
        format!("{:x}", h.finalize())
    };
    let tenant = principal.tenant_id.clone();
    if let Some(key) = key.clone() {
        let t = tenant.clone();
        if let Some(existing) = state.db.run(move |conn| Ok(jobs::find_by_idempotency_key(conn, &t, &key)?)).await? {
            return replay(existing, &fingerprint);
        }
    }
    // A job counts as one request now; its audio is metered chunk by chunk as it is aligned.
    // The quota must have room for all of it before the job is accepted.
    let subject = crate::policy::subject(&state, &principal, &policy).await?;
    drop(state.limiter.admit_recording(&subject, Demand::default(), limit_states).await?);
    let audio_ms = audio.duration_ms();
    drop(
        state
            .usage
            .reserve(tenant.as_str(), &policy.quotas, Amounts { requests: 0, tokens: 0, audio_ms: audio_ms as i64 })
            .await
            .map_err(crate::routes::completions::quota_error)?,
    );

    let id = JobId::generate();
    let path = audio_path(&state, id.as_str());
    let wav = audio.to_wav();
    let dir = state.config.alignment.jobs_dir.clone();
    let write_path = path.clone();
    web::block(move || {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&write_path, wav)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("storing job audio: {e}")))?
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("storing job audio in {}: {e}", path.display())))?;

    let ceiling = state.config.alignment.max_duration_s * 1000;
    let params = serde_json::to_value(Params { language: language.name.into(), text, fingerprint: fingerprint.clone() })
        .map_err(|e| ApiError::Internal(e.into()))?;
    let path_text = path.to_string_lossy().into_owned();
    let credential = principal.credential_id.clone();
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
                chunks_total: audio_ms.div_ceil(chunk_stride(ceiling)).max(1) as i32,
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
            let _ = std::fs::remove_file(&path);
            return replay(existing, &fingerprint);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
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
pub async fn get_job(principal: Principal, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    principal.require(AUDIO_ALIGN)?;
    let (tenant, job_id) = (principal.tenant_id.clone(), id.into_inner());
    let lookup = job_id.clone();
    let job = state.db.run(move |conn| Ok(jobs::find(conn, &tenant, &lookup)?)).await?.ok_or_else(|| job_not_found(&job_id))?;
    Ok(HttpResponse::Ok().json(job_json(&job)))
}

/// `DELETE /v1/audio/alignments/jobs/{id}`: cancels a queued or running job.
pub async fn delete_job(principal: Principal, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    principal.require(AUDIO_ALIGN)?;
    let (tenant, job_id) = (principal.tenant_id.clone(), id.into_inner());
    let lookup = job_id.clone();
    let expires = retention(&state);
    let (cancelled, job) =
        state.db.run(move |conn| Ok(jobs::cancel(conn, &tenant, &lookup, expires)?)).await?.ok_or_else(|| job_not_found(&job_id))?;
    if !cancelled {
        return Err(ApiError::Conflict(format!("the job has already ended ({})", job.status)));
    }
    let _ = std::fs::remove_file(audio_path(&state, &job.id));
    tracing::info!(job.id = %job.id, "alignment job cancelled");
    Ok(HttpResponse::Ok().json(job_json(&job)))
}

/// Audio a chunk advances the job by, at least (the chunk minus its guard band).
fn chunk_stride(ceiling_ms: u64) -> u64 {
    ceiling_ms.saturating_sub(guard_ms(ceiling_ms)).max(1)
}

fn guard_ms(chunk_ms: u64) -> u64 {
    (chunk_ms / 10).max(2_000).min(chunk_ms / 2)
}

/// The transcript's units and how they are joined back into text.
fn units(text: &str, unit: Unit) -> (Vec<String>, &'static str) {
    match unit {
        Unit::Word => (text.split_whitespace().map(str::to_owned).collect(), " "),
        Unit::Character => (text.chars().filter(|c| c.is_alphanumeric()).map(String::from).collect(), ""),
    }
}

/// Why a job ended without a result.
fn job_error(code: &str, message: impl Into<String>) -> Value {
    json!({ "code": code, "message": message.into() })
}

async fn run_job(state: &web::Data<AppState>, job: Job) {
    let id = job.id.clone();
    let outcome = align_job(state, &job).await;
    let expires = retention(state);
    let finish = match &outcome {
        JobEnd::Done(result, chunks) => Some((Ok(result.clone()), *chunks)),
        JobEnd::Failed(error, chunks) => Some((Err(error.clone()), *chunks)),
        JobEnd::Stopped => None,
    };
    if let Some((result, chunks)) = finish {
        let (job_id, fence) = (id.clone(), job.attempts);
        let saved = state
            .db
            .run(move |conn| {
                let outcome = match &result {
                    Ok(r) => Ok(r),
                    Err(e) => Err(e),
                };
                Ok(jobs::finish(conn, &job_id, fence, outcome, chunks, expires)?)
            })
            .await;
        match saved {
            Ok(true) => {
                let _ = std::fs::remove_file(audio_path(state, &id));
                tracing::info!(job.id = %id, ok = matches!(outcome, JobEnd::Done(..)), "alignment job finished");
            }
            Ok(false) => tracing::info!(job.id = %id, "alignment job was cancelled before it finished"),
            Err(e) => tracing::warn!(job.id = %id, error = %e, "alignment job result not saved; it will run again"),
        }
    }
}

enum JobEnd {
    Done(Value, i32),
    Failed(Value, i32),
    /// Cancelled, shutting down, or the database is unreachable: nothing more to write here.
    Stopped,
}

async fn align_job(state: &web::Data<AppState>, job: &Job) -> JobEnd {
    let Ok(params) = serde_json::from_value::<Params>(job.params.clone()) else {
        return JobEnd::Failed(job_error("internal_error", "the job's parameters are unreadable"), 0);
    };
    let Some(lang) = language(&params.language) else {
        return JobEnd::Failed(job_error("unsupported_language", format!("unsupported language {}", params.language)), 0);
    };
    let tenant = TenantId::from_trusted(job.tenant_id.clone());
    let path = audio_path(state, &job.id);
    let audio = match web::block(move || read_wav(&path)).await {
        Ok(Ok(audio)) => audio,
        _ => return JobEnd::Failed(job_error("audio_missing", "the job's stored audio could not be read"), job.chunks_done),
    };
    let duration = audio.duration_ms();
    let ceiling = state.config.alignment.max_duration_s * 1000;
    let (units, sep) = units(&params.text, lang.unit);
    let mut progress: Progress = job.result.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let mut chunks_done = job.chunks_done;
    if progress.offset_ms > 0 {
        tracing::info!(job.id = %job.id, offset_ms = progress.offset_ms, chunks_done, "resuming alignment job");
    }

    while progress.next_unit < units.len() && progress.offset_ms < duration {
        if state.jobs.is_stopping() {
            return JobEnd::Stopped;
        }
        let policy = match crate::policy::tenant_policy(state, &tenant).await {
            Ok(p) => p,
            Err(_) => return JobEnd::Stopped,
        };
        let start = progress.offset_ms;
        let remaining = duration - start;
        let last = remaining <= ceiling;
        let end =
            if last { duration } else { audio.quietest_point(start + ceiling * 3 / 4, start + ceiling - 250, 200).min(start + ceiling) };
        let rest = units.len() - progress.next_unit;
        let take = if last {
            rest
        } else {
            let estimate = rest as f64 * (end - start) as f64 / remaining as f64;
            ((estimate * 1.2).ceil() as usize + 2).min(rest)
        };
        let chunk_units = &units[progress.next_unit..progress.next_unit + take];
        let item = AlignItem {
            model: Arc::from(job.model.as_str()),
            wav: audio.slice(start, end).to_wav().into(),
            text: chunk_units.join(sep),
            language: lang.name,
            audio_ms: end - start,
        };
        let started = Instant::now();
        let aligned = match align_chunk(state, &tenant, policy.weight, &job.id, job.attempts, item).await {
            Ok(ChunkResult::Aligned(items)) => items,
            Ok(ChunkResult::Refused(code, message)) => {
                return JobEnd::Failed(
                    job_error("alignment_failed", format!("chunk {} ({code}): {message}", chunks_done + 1)),
                    chunks_done,
                );
            }
            Err(JobEnd::Failed(error, _)) => return JobEnd::Failed(error, chunks_done),
            Err(end) => return end,
        };
        // Keep what lies before the guard band (all of it in the last chunk).
        let chunk_ms = end - start;
        let boundary = if last { u64::MAX } else { chunk_ms - guard_ms(chunk_ms) };
        let kept: Vec<AlignedUnit> = aligned.into_iter().take(take).take_while(|u| u.end_ms <= boundary).collect();
        let next_offset = if last {
            duration
        } else if let Some(end_of_last) = kept.last().map(|u| start + u.end_ms) {
            end_of_last.max(start + 1)
        } else {
            start + boundary
        };
        progress.next_unit += if last { take } else { kept.len() };
        progress.items.extend(kept.into_iter().map(|u| AlignedUnit {
            text: u.text,
            start_ms: start + u.start_ms,
            end_ms: start + u.end_ms,
        }));
        let billed = next_offset - start;
        progress.offset_ms = next_offset;
        chunks_done += 1;

        let total = chunks_done + (duration.saturating_sub(progress.offset_ms)).div_ceil(chunk_stride(ceiling)) as i32;
        let snapshot = match serde_json::to_value(&progress) {
            Ok(v) => v,
            Err(_) => return JobEnd::Stopped,
        };
        let (job_id, fence) = (job.id.clone(), job.attempts);
        // Billed once the progress is saved: a chunk aligned again after a restart is not billed twice.
        match state.db.run(move |conn| Ok(jobs::save_progress(conn, &job_id, fence, chunks_done, total, &snapshot)?)).await {
            Ok(true) => record_usage(state, &tenant, &job.credential_id, &job.model, 200, billed, Duration::ZERO, started),
            Ok(false) => return JobEnd::Stopped, // cancelled
            Err(e) => {
                tracing::warn!(job.id = %job.id, error = %e, "job progress not saved; the job resumes from its last saved chunk");
                return JobEnd::Stopped;
            }
        }
    }
    // The audio or the transcript ran out; bill audio left after the last unit, if any.
    if progress.offset_ms < duration {
        record_usage(state, &tenant, &job.credential_id, &job.model, 200, duration - progress.offset_ms, Duration::ZERO, Instant::now());
    }
    let result = json!({
        "model": job.model,
        "language": lang.name,
        "duration_ms": duration,
        "items": progress.items,
    });
    JobEnd::Done(result, chunks_done)
}

enum ChunkResult {
    Aligned(Vec<AlignedUnit>),
    Refused(String, String),
}

/// Aligns one chunk, keeping the job's claim fresh while it waits; retries worker failures
/// and a full or slow queue with backoff.
async fn align_chunk(
    state: &AppState,
    tenant: &TenantId,
    weight: u32,
    job_id: &str,
    fence: i32,
    item: AlignItem,
) -> Result<ChunkResult, JobEnd> {
    let Some(route) = state.gateway.route(&item.model) else {
        return Err(JobEnd::Failed(job_error("model_not_found", format!("no pool serves {} any more", item.model)), 0));
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let align = route.queue.align(tenant.clone(), weight, Priority::Low, item.clone());
        tokio::pin!(align);
        let outcome = loop {
            tokio::select! {
                outcome = &mut align => break outcome,
                _ = tokio::time::sleep(HEARTBEAT) => {
                    let id = job_id.to_owned();
                    if let Ok(false) = state.db.run(move |conn| Ok(jobs::heartbeat(conn, &id, fence)?)).await {
                        return Err(JobEnd::Stopped); // cancelled while waiting
                    }
                }
            }
        };
        match outcome {
            Ok(done) => {
                return Ok(match done.result {
                    ItemResult::Aligned { items, .. } => ChunkResult::Aligned(items),
                    ItemResult::Refused { code, message } => ChunkResult::Refused(code, message),
                });
            }
            Err(AlignFailure::Queue(_)) if !state.jobs.is_stopping() => {
                // Full or no worker in time: jobs wait their turn rather than fail.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e @ (AlignFailure::Worker(_) | AlignFailure::Timeout)) if attempt < CHUNK_ATTEMPTS => {
                tracing::warn!(job.id = %job_id, attempt, error = %e, "chunk failed; retrying");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
            Err(AlignFailure::Queue(_)) => return Err(JobEnd::Stopped),
            Err(e) => return Err(JobEnd::Failed(job_error("worker_failed", e.to_string()), 0)),
        }
    }
}

fn read_wav(path: &std::path::Path) -> anyhow::Result<Audio> {
    let reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    anyhow::ensure!(spec.sample_rate == crate::audio::TARGET_SAMPLE_RATE && spec.channels == 1, "unexpected stored audio format");
    let samples = reader.into_samples::<i16>().collect::<Result<Vec<_>, _>>()?;
    Ok(Audio::from_pcm16(samples))
}

/// Deletes jobs past their retention (hourly maintenance).
pub async fn sweep_expired(state: &AppState) {
    let now = chrono::Utc::now();
    match state.db.run(move |conn| Ok(jobs::delete_expired(conn, now)?)).await {
        Ok(paths) => {
            for path in paths.into_iter().flatten() {
                let _ = std::fs::remove_file(path);
            }
        }
        Err(e) => tracing::warn!(error = %e, "expired alignment jobs not deleted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_band_is_a_tenth_of_the_chunk_but_at_least_two_seconds() {
        assert_eq!(guard_ms(300_000), 30_000);
        assert_eq!(guard_ms(10_000), 2_000);
        assert_eq!(guard_ms(3_000), 1_500);
        assert_eq!(chunk_stride(300_000), 270_000);
    }

    #[test]
    fn units_split_words_or_characters() {
        assert_eq!(units("a bc d", Unit::Word), (vec!["a".to_owned(), "bc".to_owned(), "d".to_owned()], " "));
        assert_eq!(units("你好，世界", Unit::Character).0.len(), 4);
    }
}
