//! Durable alignment jobs. Every read and write of a tenant's job takes its `TenantId`; the job
//! runner claims runnable jobs with `FOR UPDATE SKIP LOCKED`, so several instances share the
//! work and a job whose instance died (its `updated_at` stopped moving) is taken over.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use super::schema::jobs;
use crate::domain::{JobStatus, TenantId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = jobs, check_for_backend(diesel::pg::Pg))]
pub struct Job {
    pub id: String,
    pub tenant_id: String,
    pub credential_id: String,
    pub kind: String,
    pub status: JobStatus,
    pub idempotency_key: Option<String>,
    pub model: String,
    pub params: Value,
    pub audio_path: Option<String>,
    pub audio_duration_ms: Option<i64>,
    pub chunks_total: i32,
    pub chunks_done: i32,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = jobs)]
pub struct NewJob<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub credential_id: &'a str,
    pub kind: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub model: &'a str,
    pub params: Value,
    pub audio_path: &'a str,
    pub audio_duration_ms: i64,
    pub chunks_total: i32,
}

/// Inserts a job; a repeated idempotency key of the tenant is a `UniqueViolation`.
pub fn insert(conn: &mut PgConnection, job: &NewJob<'_>) -> QueryResult<Job> {
    diesel::insert_into(jobs::table).values(job).returning(Job::as_returning()).get_result(conn)
}

pub fn find(conn: &mut PgConnection, tenant: &TenantId, id: &str) -> QueryResult<Option<Job>> {
    jobs::table.filter(jobs::tenant_id.eq(tenant.as_str())).filter(jobs::id.eq(id)).select(Job::as_select()).first(conn).optional()
}

pub fn find_by_idempotency_key(conn: &mut PgConnection, tenant: &TenantId, key: &str) -> QueryResult<Option<Job>> {
    jobs::table
        .filter(jobs::tenant_id.eq(tenant.as_str()))
        .filter(jobs::idempotency_key.eq(key))
        .select(Job::as_select())
        .first(conn)
        .optional()
}

/// Cancels a queued or running job; None when it is not the tenant's, Some(false) when it had
/// already finished.
pub fn cancel(conn: &mut PgConnection, tenant: &TenantId, id: &str, expires_at: DateTime<Utc>) -> QueryResult<Option<(bool, Job)>> {
    conn.transaction(|conn| {
        let Some(job) = jobs::table
            .filter(jobs::tenant_id.eq(tenant.as_str()))
            .filter(jobs::id.eq(id))
            .for_update()
            .select(Job::as_select())
            .first(conn)
            .optional()?
        else {
            return Ok(None);
        };
        if !job.status.is_open() {
            return Ok(Some((false, job)));
        }
        let job = diesel::update(jobs::table.filter(jobs::id.eq(id)))
            .set((
                jobs::status.eq(JobStatus::Cancelled),
                jobs::finished_at.eq(diesel::dsl::now),
                jobs::updated_at.eq(diesel::dsl::now),
                jobs::expires_at.eq(expires_at),
                jobs::audio_path.eq(None::<String>),
            ))
            .returning(Job::as_returning())
            .get_result(conn)?;
        Ok(Some((true, job)))
    })
}

#[derive(QueryableByName)]
struct ClaimedId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// Claims a runnable job: queued, or running with no heartbeat for `stale_s` seconds (its
/// instance stopped). Tenants with the fewest jobs running go first, then the oldest job, so one
/// tenant's pile of jobs does not hold the runners from everyone else's. Marks it running and
/// counts the attempt (the count fences off an earlier runner of the same job).
pub fn claim(conn: &mut PgConnection, stale_s: i64) -> QueryResult<Option<Job>> {
    conn.transaction(|conn| {
        let stale = Utc::now() - chrono::Duration::seconds(stale_s);
        let picked = diesel::sql_query(
            "SELECT j.id FROM jobs j \
             WHERE j.status = 'queued' OR (j.status = 'running' AND j.updated_at < $1) \
             ORDER BY (SELECT count(*) FROM jobs r \
                       WHERE r.tenant_id = j.tenant_id AND r.status = 'running' AND r.updated_at >= $1), \
                      j.created_at \
             LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
        )
        .bind::<diesel::sql_types::Timestamptz, _>(stale)
        .get_result::<ClaimedId>(conn)
        .optional()?;
        let Some(ClaimedId { id }) = picked else {
            return Ok(None);
        };
        diesel::update(jobs::table.filter(jobs::id.eq(&id)))
            .set((
                jobs::status.eq(JobStatus::Running),
                jobs::attempts.eq(jobs::attempts + 1),
                jobs::started_at
                    .eq(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>("coalesce(started_at, now())")),
                jobs::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Job::as_returning())
            .get_result(conn)
            .map(Some)
    })
}

/// The rows a runner may still write: its claim (`attempts` counts claims, so it fences off a
/// runner whose job was handed back and claimed again) and still running.
macro_rules! claimed {
    ($id:expr, $fence:expr) => {
        jobs::table.filter(jobs::id.eq($id)).filter(jobs::status.eq(JobStatus::Running)).filter(jobs::attempts.eq($fence))
    };
}

/// Records a chunk's progress (the partial result) while the runner still holds the job; false
/// when it was cancelled or handed to another runner meanwhile.
pub fn save_progress(
    conn: &mut PgConnection,
    id: &str,
    fence: i32,
    chunks_done: i32,
    chunks_total: i32,
    state: &Value,
) -> QueryResult<bool> {
    let n = diesel::update(claimed!(id, fence))
        .set((
            jobs::chunks_done.eq(chunks_done),
            jobs::chunks_total.eq(chunks_total),
            jobs::result.eq(state),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Keeps a running job's claim fresh.
pub fn heartbeat(conn: &mut PgConnection, id: &str, fence: i32) -> QueryResult<bool> {
    let n = diesel::update(claimed!(id, fence)).set(jobs::updated_at.eq(diesel::dsl::now)).execute(conn)?;
    Ok(n == 1)
}

/// Ends a running job: `succeeded` with its result or `failed` with its error.
pub fn finish(
    conn: &mut PgConnection,
    id: &str,
    fence: i32,
    outcome: Result<&Value, &Value>,
    chunks_done: i32,
    expires_at: DateTime<Utc>,
) -> QueryResult<bool> {
    let (status, result, error) = match outcome {
        Ok(result) => (JobStatus::Succeeded, Some(result), None),
        Err(error) => (JobStatus::Failed, None, Some(error)),
    };
    let n = diesel::update(claimed!(id, fence))
        .set((
            jobs::status.eq(status),
            jobs::result.eq(result),
            jobs::error.eq(error),
            jobs::chunks_done.eq(chunks_done),
            jobs::chunks_total.eq(chunks_done),
            jobs::finished_at.eq(diesel::dsl::now),
            jobs::updated_at.eq(diesel::dsl::now),
            jobs::expires_at.eq(expires_at),
            jobs::audio_path.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Puts this instance's running jobs back in the queue (graceful shutdown), so the next
/// instance resumes them at once instead of after the stale interval.
pub fn requeue(conn: &mut PgConnection, ids: &[String]) -> QueryResult<usize> {
    diesel::update(jobs::table.filter(jobs::id.eq_any(ids)).filter(jobs::status.eq(JobStatus::Running)))
        .set((jobs::status.eq(JobStatus::Queued), jobs::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
}

/// Deletes finished jobs past their retention; returns the audio paths still recorded (none
/// normally: finishing clears them) so the caller can remove the files.
pub fn delete_expired(conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<Vec<Option<String>>> {
    diesel::delete(jobs::table.filter(jobs::expires_at.lt(now)).filter(jobs::status.ne_all([JobStatus::Queued, JobStatus::Running])))
        .returning(jobs::audio_path)
        .get_results(conn)
}
