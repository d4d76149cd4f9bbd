//! The `JobRunner`: works on alignment jobs for long audio, which `POST /v1/audio/alignments/jobs`
//! creates (the HTTP side lives in `routes::v1::alignments::jobs`).
//!
//! A job is a row in `jobs` plus its audio (checked, and decoded as it streams into a 16 kHz mono
//! WAV file under `alignment.jobs_dir`, by the route). The runner reads that file one chunk at a
//! time, so memory stays bounded by `alignment.max_duration_s`, not by the job's duration. Runners on every instance claim runnable jobs with `SKIP LOCKED`, and
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

mod chunking;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::actors::quota_accountant::QuotaAccountantHandle;
use crate::admission::PolicyStore;
use crate::config::AlignmentConfig;
use crate::db::Db;
use crate::db::jobs::{self, Job};
use crate::domain::{AlignedUnit, JobStatus, Severity, TenantId, language};
use crate::tasks::Supervisor;
use crate::workers::gateway::Gateway;
pub use chunking::chunks_for;

/// Request parameters kept with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub language: String,
    pub text: String,
    pub fingerprint: String,
}

/// Progress saved after each chunk (in `jobs.result` while the job runs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    offset_ms: u64,
    next_unit: usize,
    items: Vec<AlignedUnit>,
}

/// The job runners of this instance, with what they need to work.
pub struct JobRunner {
    db: Db,
    config: AlignmentConfig,
    gateway: Arc<Gateway>,
    policies: PolicyStore,
    usage: QuotaAccountantHandle,
    wake: Notify,
    /// Jobs this instance is working on (put back in the queue on graceful shutdown).
    running: Mutex<Vec<String>>,
    stopping: AtomicBool,
}

impl JobRunner {
    pub fn new(
        db: Db,
        config: AlignmentConfig,
        gateway: Arc<Gateway>,
        policies: PolicyStore,
        usage: QuotaAccountantHandle,
    ) -> Arc<JobRunner> {
        Arc::new(JobRunner {
            db,
            config,
            gateway,
            policies,
            usage,
            wake: Notify::new(),
            running: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        })
    }

    /// Starts `alignment.job_concurrency` runner loops under the supervisor.
    pub fn start(self: &Arc<Self>, supervisor: &Arc<Supervisor>) {
        for _ in 0..self.config.job_concurrency {
            let runner = self.clone();
            supervisor.spawn("job_runner", move || runner.clone().run());
        }
    }

    async fn run(self: Arc<Self>) {
        let idle = Duration::from_millis(self.config.job_idle_poll_ms);
        let stale_after = self.config.job_stale_after_s as i64;
        while !self.is_stopping() {
            match self.db.run(move |conn| Ok(jobs::claim(conn, stale_after)?)).await {
                Ok(Some(job)) => {
                    let id = job.id.clone();
                    self.track(&id, true);
                    self.run_job(job).await;
                    self.track(&id, false);
                }
                Ok(None) => {
                    let _ = tokio::time::timeout(idle, self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim alignment jobs");
                    tokio::time::sleep(idle).await;
                }
            }
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
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

    /// A new job is waiting: wake an idle runner.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming jobs and puts this instance's running jobs back in the queue, so the next
    /// instance resumes them from their last saved chunk at once.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let ids = self.running.lock().map(|ids| ids.clone()).unwrap_or_default();
        if ids.is_empty() {
            return;
        }
        match self.db.run(move |conn| Ok(jobs::requeue(conn, &ids)?)).await {
            Ok(n) => tracing::info!(jobs = n, "alignment jobs handed back for the next instance"),
            Err(e) => tracing::warn!(error = %e, "running jobs not handed back; another instance takes them over once they are stale"),
        }
    }

    /// Where a job's audio is kept until the job ends.
    pub fn audio_path(&self, id: &str) -> PathBuf {
        self.config.jobs_dir.join(format!("{id}.wav"))
    }

    /// When a job that ends now is deleted.
    pub fn expiry(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::days(i64::from(self.config.job_retention_days))
    }

    /// Removes a job's audio (on a blocking thread); a file already gone is fine.
    pub async fn remove_audio(&self, id: &str) {
        remove_files(vec![self.audio_path(id)]).await;
    }

    async fn run_job(&self, job: Job) {
        let id = job.id.clone();
        let outcome = self.align_job(&job).await;
        let expires = self.expiry();
        let finish = match &outcome {
            JobEnd::Done(result, chunks) => Some((Ok(result.clone()), *chunks)),
            JobEnd::Failed(error, chunks) => Some((Err(error.clone()), *chunks)),
            JobEnd::Stopped => None,
        };
        let Some((result, chunks)) = finish else { return };
        let (job_id, fence) = (id.clone(), job.attempts);
        let tenant = TenantId::from_trusted(job.tenant_id.clone());
        let saved = self
            .db
            .run(move |conn| {
                use diesel::Connection;
                conn.transaction(|conn| {
                    let outcome = match &result {
                        Ok(r) => Ok(r),
                        Err(e) => Err(e),
                    };
                    let finished = jobs::finish(conn, &job_id, fence, outcome, chunks, expires)?;
                    if let (true, Err(error)) = (finished, &result) {
                        failed_job_alert(conn, &tenant, &job_id, error)?;
                    }
                    Ok::<bool, diesel::result::Error>(finished)
                })
                .map_err(crate::db::DbError::from)
            })
            .await;
        match saved {
            Ok(true) => {
                self.remove_audio(&id).await;
                tracing::info!(job.id = %id, ok = matches!(outcome, JobEnd::Done(..)), "alignment job finished");
            }
            Ok(false) => tracing::info!(job.id = %id, "alignment job was cancelled before it finished"),
            Err(e) => tracing::warn!(job.id = %id, error = %e, "alignment job result not saved; it will run again"),
        }
    }

    /// Deletes jobs past their retention, with any audio they left (hourly maintenance).
    pub async fn sweep_expired(&self) {
        let now = chrono::Utc::now();
        match self.db.run(move |conn| Ok(jobs::delete_expired(conn, now)?)).await {
            Ok(paths) => remove_files(paths.into_iter().flatten().map(PathBuf::from).collect()).await,
            Err(e) => tracing::warn!(error = %e, "expired alignment jobs not deleted"),
        }
    }
}

/// How a job's run ended.
enum JobEnd {
    Done(Value, i32),
    Failed(Value, i32),
    /// Cancelled, shutting down, or the database is unreachable: nothing more to write here.
    Stopped,
}

/// The tenant's alert for a job that failed, in the transaction that records the failure.
fn failed_job_alert(conn: &mut diesel::PgConnection, tenant: &TenantId, job_id: &str, error: &Value) -> diesel::QueryResult<bool> {
    let code = error.get("code").and_then(Value::as_str).unwrap_or("failed");
    let payload = json!({
        "state": "firing",
        "summary": format!("alignment job {job_id} failed ({code})"),
        "details": { "Job": job_id, "Tenant": tenant.as_str(), "Error": error.get("message").and_then(Value::as_str).unwrap_or(code) },
        "hint": "GET /v1/audio/alignments/jobs/{id} shows the error; a worker failure is retried before a job fails, so \
                 check the aligner pool's workers",
    });
    let key = format!("job_failed:{job_id}");
    crate::db::alerts::enqueue(
        conn,
        &crate::db::alerts::NewAlert {
            tenant: Some(tenant),
            kind: "job_failed",
            dedup_key: &key,
            severity: Severity::Warning,
            payload: &payload,
        },
    )
}

/// Removes files on a blocking thread, off the async threads.
async fn remove_files(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let removed = tokio::task::spawn_blocking(move || {
        for path in paths {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "job audio not removed");
                }
            }
        }
    })
    .await;
    if let Err(e) = removed {
        tracing::warn!(error = %e, "job audio removal did not run");
    }
}

/// The job as the API shows it.
pub fn job_json(job: &Job) -> Value {
    let params: Option<Params> = serde_json::from_value(job.params.clone()).ok();
    let language = params.as_ref().and_then(|p| language(&p.language)).map(|l| l.name);
    let percent = if job.status == JobStatus::Succeeded {
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
        "result": if job.status == JobStatus::Succeeded { job.result.clone() } else { None },
        "error": job.error,
    })
}
