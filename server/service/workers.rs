//! Worker pools and workers (operators only): register a pool serving some model names, add
//! workers to it (base URL, optional upstream API key sealed at rest, concurrent slots), drain
//! and remove them.

use diesel::{Connection, PgConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, ServiceError};
use crate::auth::seal::MasterKey;
use crate::db::workers::{self, Pool, Worker, worker_seal_context};
use crate::db::{DbError, audit};
use crate::domain::{PoolId, PoolKind, PoolSource, WorkerId, WorkerState};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolRequest {
    /// Lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// `llm` (OpenAI-compatible workers such as vLLM) or `aligner` (forced-alignment workers
    /// serving `POST /v1/align/batch`).
    pub kind: PoolKind,
    /// Model names every worker of the pool serves.
    pub models: Vec<String>,
    /// How long a request may wait for a slot before 503 (default 30000 ms).
    pub queue_deadline_ms: Option<i32>,
    /// Adaptive admission: the queue wait (p95) the pool aims to keep under, ms (default 5000,
    /// or the deadline if shorter; 0 turns it off). While the pool is above it, a tenant with
    /// more than its fair share waiting is refused at once with 429 `pool_saturated`.
    #[serde(default)]
    pub queue_wait_target_ms: Option<i32>,
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
    pub fn new(name: &str, kind: PoolKind, models: Vec<String>) -> CreatePoolRequest {
        CreatePoolRequest {
            name: name.into(),
            kind,
            models,
            queue_deadline_ms: None,
            queue_wait_target_ms: None,
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
    pub state: WorkerState,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolResponse {
    pub id: String,
    pub name: String,
    pub kind: PoolKind,
    pub models: Vec<String>,
    pub queue_deadline_ms: i32,
    /// Adaptive admission's target queue wait, ms; null when off.
    pub queue_wait_target_ms: Option<i32>,
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
        queue_wait_target_ms: pool.queue_wait_target_ms,
        batch_max_items: pool.batch_max_items,
        batch_max_audio_ms: pool.batch_max_audio_ms,
        batch_max_wait_ms: pool.batch_max_wait_ms,
        workers,
    })
}

/// A pool request's settings, checked and with defaults filled in.
struct ValidPool {
    models: Vec<String>,
    deadline: i32,
    wait_target: Option<i32>,
    batch_max_items: i32,
    batch_max_audio_ms: i32,
    batch_max_wait_ms: i32,
}

impl ValidPool {
    fn row<'a>(&'a self, id: &'a str, req: &'a CreatePoolRequest, source: PoolSource) -> workers::NewPool<'a> {
        workers::NewPool {
            id,
            name: &req.name,
            kind: req.kind,
            models: &self.models,
            queue_deadline_ms: self.deadline,
            queue_wait_target_ms: self.wait_target,
            batch_max_items: self.batch_max_items,
            batch_max_audio_ms: self.batch_max_audio_ms,
            batch_max_wait_ms: self.batch_max_wait_ms,
            source,
        }
    }
}

pub fn create_pool(conn: &mut PgConnection, req: &CreatePoolRequest, actor: &Actor) -> Result<PoolResponse, ServiceError> {
    let valid = validate_pool(req)?;
    let id = PoolId::generate();
    let new = valid.row(id.as_str(), req, PoolSource::Api);
    conn.transaction(|conn| {
        let pool = workers::insert_pool(conn, &new).map_err(|e| match DbError::from(e) {
            DbError::Conflict(_) => ServiceError::Conflict(format!("a pool named `{}` already exists", req.name)),
            other => other.into(),
        })?;
        audit::insert(conn, &actor.event("pool.create").target("pool", id.as_str()).details(serde_json::json!({ "models": new.models })))?;
        pool_response(conn, pool)
    })
}

fn validate_pool(req: &CreatePoolRequest) -> Result<ValidPool, ServiceError> {
    let name_ok = (1..=63).contains(&req.name.len())
        && req.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && req.name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !name_ok {
        return Err(ServiceError::invalid("name", "use 1-63 lowercase letters, digits, `-` and `_`"));
    }
    let models: Vec<String> = req.models.iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
    if models.is_empty() || models.iter().any(|m| m.len() > 200 || m.chars().any(char::is_control)) {
        return Err(ServiceError::invalid("models", "give at least one model name (≤ 200 printable characters each)"));
    }
    let deadline = req.queue_deadline_ms.unwrap_or(30_000);
    if !(1..=600_000).contains(&deadline) {
        return Err(ServiceError::invalid("queue_deadline_ms", "must be between 1 and 600000"));
    }
    let wait_target = match req.queue_wait_target_ms {
        None => Some(deadline.min(5_000)),
        Some(0) => None,
        Some(ms) if (10..=600_000).contains(&ms) => Some(ms),
        Some(_) => return Err(ServiceError::invalid("queue_wait_target_ms", "must be 0 (off) or between 10 and 600000")),
    };
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
    Ok(ValidPool { models, deadline, wait_target, batch_max_items, batch_max_audio_ms, batch_max_wait_ms })
}

/// What applying the config file's pools changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredPools {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

/// Makes the database match the pools declared in the config file (`[[pools]]`): creates or
/// updates them and their workers (keys sealed like API-added ones), removes workers no longer
/// listed, and deletes pools an earlier file declared that this one does not. A same-named pool
/// made through the API is taken over. One transaction under an advisory lock, so instances
/// starting together apply the file one after the other. Pools declared in the file refuse
/// worker changes through the API and CLI (drain excepted), so the file stays the truth.
pub fn apply_declared_pools(
    conn: &mut PgConnection,
    master: &MasterKey,
    declared: &[crate::config::PoolDeclaration],
    actor: &Actor,
) -> Result<DeclaredPools, ServiceError> {
    let mut checked = Vec::new();
    for d in declared {
        let req = CreatePoolRequest {
            name: d.name.clone(),
            kind: d.kind,
            models: d.models.clone(),
            queue_deadline_ms: d.queue_deadline_ms,
            queue_wait_target_ms: d.queue_wait_target_ms,
            batch_max_items: d.batch_max_items,
            batch_max_audio_ms: d.batch_max_audio_ms,
            batch_max_wait_ms: d.batch_max_wait_ms,
        };
        let valid = validate_pool(&req).map_err(|e| ServiceError::invalid("pools", format!("pool `{}`: {e}", d.name)))?;
        let mut workers = Vec::new();
        for w in &d.workers {
            let url = normalized_url(&w.url).map_err(|e| ServiceError::invalid("pools", format!("pool `{}`: {e}", d.name)))?;
            let key = match &w.api_key_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    ServiceError::invalid("pools", format!("pool `{}`: worker {url}: environment variable {var} is not set", d.name))
                })?),
                None => None,
            };
            workers.push((url, w.slots.unwrap_or(8), key));
        }
        checked.push((req, valid, workers));
    }
    conn.transaction(|conn| {
        diesel::RunQueryDsl::execute(diesel::sql_query("SELECT pg_advisory_xact_lock(7366253001)"), conn)?;
        let mut report = DeclaredPools::default();
        let existing = workers::list_pools(conn)?;
        for (req, valid, declared_workers) in &checked {
            let pool = match existing.iter().find(|p| p.name == req.name) {
                Some(p) if p.kind != req.kind => {
                    return Err(ServiceError::invalid(
                        "pools",
                        format!("pool `{}` exists with kind `{}`; a pool's kind cannot change", p.name, p.kind),
                    ));
                }
                Some(p) => {
                    let pool = workers::update_pool(conn, &valid.row(&p.id, req, PoolSource::Config))?;
                    report.updated.push(pool.name.clone());
                    pool
                }
                None => {
                    let id = PoolId::generate();
                    let pool = workers::insert_pool(conn, &valid.row(id.as_str(), req, PoolSource::Config))?;
                    audit::insert(
                        conn,
                        &actor.event("pool.create").target("pool", id.as_str()).details(serde_json::json!({ "source": "config" })),
                    )?;
                    report.created.push(pool.name.clone());
                    pool
                }
            };
            let rows = workers::list_all_workers(conn, &pool.id)?;
            for (url, slots, key) in declared_workers {
                let (id, state) = match rows.iter().find(|w| &w.base_url == url) {
                    // A drained worker stays drained until the operator resumes it.
                    Some(w) => (w.id.clone(), if w.state == WorkerState::Draining { WorkerState::Draining } else { WorkerState::Active }),
                    None => (WorkerId::generate().to_string(), WorkerState::Active),
                };
                let sealed = match key {
                    Some(k) => {
                        Some(master.seal(k.as_bytes(), &worker_seal_context(&id)).map_err(|e| ServiceError::Db(DbError::Other(e.into())))?)
                    }
                    None => None,
                };
                if rows.iter().any(|w| w.id == id) {
                    workers::update_worker(conn, &id, sealed.as_deref(), *slots, state)?;
                } else {
                    workers::insert_worker(conn, &id, &pool.id, url, sealed.as_deref(), *slots)?;
                }
            }
            for gone in
                rows.iter().filter(|w| w.state != WorkerState::Removed && !declared_workers.iter().any(|(u, _, _)| u == &w.base_url))
            {
                workers::set_worker_state(conn, &gone.id, WorkerState::Removed)?;
            }
        }
        for stale in existing.iter().filter(|p| p.source == PoolSource::Config && !checked.iter().any(|(r, _, _)| r.name == p.name)) {
            workers::delete_pool(conn, &stale.id)?;
            audit::insert(conn, &actor.event("pool.delete").target("pool", &stale.id).details(serde_json::json!({ "source": "config" })))?;
            report.deleted.push(stale.name.clone());
        }
        Ok(report)
    })
}

fn normalized_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    let parsed =
        url.parse::<actix_web::http::Uri>().ok().filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    match parsed {
        Some(_) => Ok(url.to_owned()),
        None => Err(format!("`{raw}` is not an http(s) URL such as http://10.0.0.5:8000")),
    }
}

fn declared_in_config(pool: &Pool) -> ServiceError {
    ServiceError::Conflict(format!("pool `{}` is declared in the config file; change its workers there", pool.name))
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
    let url = normalized_url(&req.base_url)
        .map_err(|_| ServiceError::invalid("base_url", "must be an http(s) URL such as http://10.0.0.5:8000"))?;
    let url = url.as_str();
    let slots = req.slots.unwrap_or(8);
    if !(1..=4096).contains(&slots) {
        return Err(ServiceError::invalid("slots", "must be between 1 and 4096"));
    }
    let pool = workers::find_pool_by_name(conn, pool_name).map_err(|e| match e {
        diesel::result::Error::NotFound => ServiceError::NotFound(format!("no pool named `{pool_name}`")),
        other => other.into(),
    })?;
    if pool.source == PoolSource::Config {
        return Err(declared_in_config(&pool));
    }
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
pub fn set_worker_state(conn: &mut PgConnection, raw_id: &str, state: WorkerState, actor: &Actor) -> Result<WorkerResponse, ServiceError> {
    let id = WorkerId::parse(raw_id).map_err(|_| ServiceError::NotFound("worker not found".into()))?;
    conn.transaction(|conn| {
        if state == WorkerState::Removed {
            match workers::find_pool_of_worker(conn, id.as_str()) {
                Ok(pool) if pool.source == PoolSource::Config => return Err(declared_in_config(&pool)),
                Ok(_) | Err(diesel::result::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let worker = workers::set_worker_state(conn, id.as_str(), state).map_err(|e| match e {
            diesel::result::Error::NotFound => ServiceError::NotFound("worker not found".into()),
            other => other.into(),
        })?;
        audit::insert(
            conn,
            &actor.event(if state == WorkerState::Draining { "worker.drain" } else { "worker.remove" }).target("worker", id.as_str()),
        )?;
        Ok(worker.into())
    })
}
