//! Worker pools and workers (operators only): register a pool serving some model names, add
//! workers to it (base URL, optional upstream API key sealed at rest, concurrent slots), drain
//! and remove them.

use diesel::{Connection, PgConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, ServiceError};
use crate::auth::seal::MasterKey;
use crate::db::workers::{self, Pool, Worker};
use crate::db::{DbError, audit};
use crate::domain::{PoolId, WorkerId};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolRequest {
    /// Lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// `llm` (OpenAI-compatible workers such as vLLM) or `aligner` (forced-alignment workers
    /// serving `POST /v1/align/batch`).
    pub kind: String,
    /// Model names every worker of the pool serves.
    pub models: Vec<String>,
    /// How long a request may wait for a slot before 503 (default 30000 ms).
    pub queue_deadline_ms: Option<i32>,
    /// Aligner pools: most items in one batch (default 16).
    #[serde(default)]
    pub batch_max_items: Option<i32>,
    /// Aligner pools: most audio in one batch, ms (default 600000).
    #[serde(default)]
    pub batch_max_audio_ms: Option<i32>,
    /// Aligner pools: how long a batch may wait to fill while a worker is free, ms (default 50).
    #[serde(default)]
    pub batch_max_wait_ms: Option<i32>,
}

impl CreatePoolRequest {
    /// A pool with default queue and batch settings.
    pub fn new(name: &str, kind: &str, models: Vec<String>) -> CreatePoolRequest {
        CreatePoolRequest {
            name: name.into(),
            kind: kind.into(),
            models,
            queue_deadline_ms: None,
            batch_max_items: None,
            batch_max_audio_ms: None,
            batch_max_wait_ms: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddWorkerRequest {
    /// e.g. http://10.0.0.5:8000 (the worker's OpenAI-compatible base, without /v1).
    pub base_url: String,
    /// Bearer key the worker expects, if any; stored sealed, never shown again.
    pub api_key: Option<String>,
    /// Requests the worker runs at once (default 8).
    pub slots: Option<i32>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerResponse {
    pub id: String,
    pub pool_id: String,
    pub base_url: String,
    pub has_api_key: bool,
    pub slots: i32,
    pub state: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolResponse {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub models: Vec<String>,
    pub queue_deadline_ms: i32,
    pub batch_max_items: i32,
    pub batch_max_audio_ms: i32,
    pub batch_max_wait_ms: i32,
    pub workers: Vec<WorkerResponse>,
}

impl From<Worker> for WorkerResponse {
    fn from(w: Worker) -> Self {
        WorkerResponse {
            id: w.id,
            pool_id: w.pool_id,
            base_url: w.base_url,
            has_api_key: w.api_key_sealed.is_some(),
            slots: w.slots,
            state: w.state,
        }
    }
}

fn pool_response(conn: &mut PgConnection, pool: Pool) -> Result<PoolResponse, ServiceError> {
    let workers = workers::list_workers(conn, &pool.id)?.into_iter().map(Into::into).collect();
    Ok(PoolResponse {
        id: pool.id,
        name: pool.name,
        kind: pool.kind,
        models: pool.models,
        queue_deadline_ms: pool.queue_deadline_ms,
        batch_max_items: pool.batch_max_items,
        batch_max_audio_ms: pool.batch_max_audio_ms,
        batch_max_wait_ms: pool.batch_max_wait_ms,
        workers,
    })
}

pub fn worker_seal_context(id: &str) -> String {
    format!("worker_api_key:{id}")
}

pub fn create_pool(conn: &mut PgConnection, req: &CreatePoolRequest, actor: &Actor) -> Result<PoolResponse, ServiceError> {
    let name_ok = (1..=63).contains(&req.name.len())
        && req.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && req.name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !name_ok {
        return Err(ServiceError::invalid("name", "use 1-63 lowercase letters, digits, `-` and `_`"));
    }
    if req.kind != "llm" && req.kind != "aligner" {
        return Err(ServiceError::invalid("kind", "must be `llm` or `aligner`"));
    }
    let models: Vec<String> = req.models.iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
    if models.is_empty() || models.iter().any(|m| m.len() > 200 || m.chars().any(char::is_control)) {
        return Err(ServiceError::invalid("models", "give at least one model name (≤ 200 printable characters each)"));
    }
    let deadline = req.queue_deadline_ms.unwrap_or(30_000);
    if !(1..=600_000).contains(&deadline) {
        return Err(ServiceError::invalid("queue_deadline_ms", "must be between 1 and 600000"));
    }
    let batch_max_items = req.batch_max_items.unwrap_or(16);
    if !(1..=1024).contains(&batch_max_items) {
        return Err(ServiceError::invalid("batch_max_items", "must be between 1 and 1024"));
    }
    let batch_max_audio_ms = req.batch_max_audio_ms.unwrap_or(600_000);
    if !(1_000..=36_000_000).contains(&batch_max_audio_ms) {
        return Err(ServiceError::invalid("batch_max_audio_ms", "must be between 1000 and 36000000"));
    }
    let batch_max_wait_ms = req.batch_max_wait_ms.unwrap_or(50);
    if !(0..=60_000).contains(&batch_max_wait_ms) {
        return Err(ServiceError::invalid("batch_max_wait_ms", "must be between 0 and 60000"));
    }
    let id = PoolId::generate();
    let new = workers::NewPool {
        id: id.as_str(),
        name: &req.name,
        kind: &req.kind,
        models: &models,
        queue_deadline_ms: deadline,
        batch_max_items,
        batch_max_audio_ms,
        batch_max_wait_ms,
    };
    conn.transaction(|conn| {
        let pool = workers::insert_pool(conn, &new).map_err(|e| match DbError::from(e) {
            DbError::Conflict(_) => ServiceError::Conflict(format!("a pool named `{}` already exists", req.name)),
            other => other.into(),
        })?;
        audit::insert(conn, &actor.event("pool.create").target("pool", id.as_str()).details(serde_json::json!({ "models": models })))?;
        pool_response(conn, pool)
    })
}

pub fn list_pools(conn: &mut PgConnection) -> Result<Vec<PoolResponse>, ServiceError> {
    let pools = workers::list_pools(conn)?;
    pools.into_iter().map(|p| pool_response(conn, p)).collect()
}

pub fn add_worker(
    conn: &mut PgConnection,
    master: &MasterKey,
    pool_name: &str,
    req: &AddWorkerRequest,
    actor: &Actor,
) -> Result<WorkerResponse, ServiceError> {
    let url = req.base_url.trim().trim_end_matches('/');
    let parsed =
        url.parse::<actix_web::http::Uri>().ok().filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if parsed.is_none() {
        return Err(ServiceError::invalid("base_url", "must be an http(s) URL such as http://10.0.0.5:8000"));
    }
    let slots = req.slots.unwrap_or(8);
    if !(1..=4096).contains(&slots) {
        return Err(ServiceError::invalid("slots", "must be between 1 and 4096"));
    }
    let pool = workers::find_pool_by_name(conn, pool_name).map_err(|e| match e {
        diesel::result::Error::NotFound => ServiceError::NotFound(format!("no pool named `{pool_name}`")),
        other => other.into(),
    })?;
    let id = WorkerId::generate();
    let sealed = match req.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => {
            Some(master.seal(key.as_bytes(), &worker_seal_context(id.as_str())).map_err(|e| ServiceError::Db(DbError::Other(e.into())))?)
        }
        None => None,
    };
    conn.transaction(|conn| {
        let worker =
            workers::insert_worker(conn, id.as_str(), &pool.id, url, sealed.as_deref(), slots).map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => ServiceError::Conflict(format!("pool `{pool_name}` already has a worker at {url}")),
                other => other.into(),
            })?;
        audit::insert(
            conn,
            &actor.event("worker.add").target("worker", id.as_str()).details(serde_json::json!({ "pool": pool.name, "base_url": url })),
        )?;
        Ok(worker.into())
    })
}

/// `draining`: finish in-flight work, take no new work. `removed`: gone.
pub fn set_worker_state(conn: &mut PgConnection, raw_id: &str, state: &'static str, actor: &Actor) -> Result<WorkerResponse, ServiceError> {
    let id = WorkerId::parse(raw_id).map_err(|_| ServiceError::NotFound("worker not found".into()))?;
    conn.transaction(|conn| {
        let worker = workers::set_worker_state(conn, id.as_str(), state).map_err(|e| match e {
            diesel::result::Error::NotFound => ServiceError::NotFound("worker not found".into()),
            other => other.into(),
        })?;
        audit::insert(
            conn,
            &actor.event(if state == "draining" { "worker.drain" } else { "worker.remove" }).target("worker", id.as_str()),
        )?;
        Ok(worker.into())
    })
}
