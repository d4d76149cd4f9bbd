//! GPU worker pools and their workers (installation-wide, not tenant data). The `Gateway` loads
//! them into the pools' queues; the management API and the config file's `[[pools]]` change them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::worker_pools;
use super::schema::workers;
use crate::domain::{PoolKind, PoolSource, WorkerState};

/// The associated data a worker's upstream API key is sealed with (bound to its row).
pub fn worker_seal_context(id: &str) -> String {
    format!("worker_api_key:{id}")
}

/// Every model name served by some pool, with the pool's creation time (first pool wins).
pub fn list_models(conn: &mut PgConnection) -> QueryResult<Vec<(String, DateTime<Utc>)>> {
    let pools: Vec<(Vec<String>, DateTime<Utc>)> =
        worker_pools::table.order(worker_pools::created_at).select((worker_pools::models, worker_pools::created_at)).load(conn)?;
    let mut out: Vec<(String, DateTime<Utc>)> = Vec::new();
    for (models, created) in pools {
        for m in models {
            if !out.iter().any(|(existing, _)| *existing == m) {
                out.push((m, created));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = worker_pools, check_for_backend(diesel::pg::Pg))]
pub struct Pool {
    pub id: String,
    pub name: String,
    pub kind: PoolKind,
    pub models: Vec<String>,
    pub queue_deadline_ms: i32,
    pub max_queue_per_tenant: i32,
    pub max_queue_total: i32,
    pub batch_max_items: i32,
    pub batch_max_audio_ms: i32,
    pub batch_max_wait_ms: i32,
    pub source: PoolSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub queue_wait_target_ms: Option<i32>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workers, check_for_backend(diesel::pg::Pg))]
pub struct Worker {
    pub id: String,
    pub pool_id: String,
    pub base_url: String,
    pub api_key_sealed: Option<Vec<u8>>,
    pub slots: i32,
    pub state: WorkerState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A pool to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = worker_pools)]
pub struct NewPool<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub kind: PoolKind,
    pub models: &'a [String],
    pub queue_deadline_ms: i32,
    pub batch_max_items: i32,
    pub batch_max_audio_ms: i32,
    pub batch_max_wait_ms: i32,
    pub source: PoolSource,
    pub queue_wait_target_ms: Option<i32>,
}

/// Rewrites a pool's settings (a config-file declaration applied again); id and name stay.
pub fn update_pool(conn: &mut PgConnection, pool: &NewPool<'_>) -> QueryResult<Pool> {
    diesel::update(worker_pools::table.find(pool.id))
        .set((
            worker_pools::models.eq(pool.models),
            worker_pools::queue_deadline_ms.eq(pool.queue_deadline_ms),
            worker_pools::batch_max_items.eq(pool.batch_max_items),
            worker_pools::batch_max_audio_ms.eq(pool.batch_max_audio_ms),
            worker_pools::batch_max_wait_ms.eq(pool.batch_max_wait_ms),
            worker_pools::source.eq(pool.source),
            worker_pools::queue_wait_target_ms.eq(pool.queue_wait_target_ms),
            worker_pools::updated_at.eq(Utc::now()),
        ))
        .returning(Pool::as_returning())
        .get_result(conn)
}

pub fn delete_pool(conn: &mut PgConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(worker_pools::table.find(id)).execute(conn)
}

/// Every worker row of a pool, removed ones included.
pub fn list_all_workers(conn: &mut PgConnection, pool_id: &str) -> QueryResult<Vec<Worker>> {
    workers::table.filter(workers::pool_id.eq(pool_id)).order(workers::created_at).select(Worker::as_select()).load(conn)
}

/// Sets a worker's slots, key and state (a config-file declaration applied again).
pub fn update_worker(
    conn: &mut PgConnection,
    id: &str,
    api_key_sealed: Option<&[u8]>,
    slots: i32,
    state: WorkerState,
) -> QueryResult<Worker> {
    diesel::update(workers::table.find(id))
        .set((
            workers::api_key_sealed.eq(api_key_sealed),
            workers::slots.eq(slots),
            workers::state.eq(state),
            workers::updated_at.eq(Utc::now()),
        ))
        .returning(Worker::as_returning())
        .get_result(conn)
}

pub fn find_pool_of_worker(conn: &mut PgConnection, worker_id: &str) -> QueryResult<Pool> {
    worker_pools::table.inner_join(workers::table).filter(workers::id.eq(worker_id)).select(Pool::as_select()).first(conn)
}

pub fn insert_pool(conn: &mut PgConnection, pool: &NewPool<'_>) -> QueryResult<Pool> {
    diesel::insert_into(worker_pools::table).values(pool).returning(Pool::as_returning()).get_result(conn)
}

pub fn list_pools(conn: &mut PgConnection) -> QueryResult<Vec<Pool>> {
    worker_pools::table.order(worker_pools::name).select(Pool::as_select()).load(conn)
}

pub fn find_pool_by_name(conn: &mut PgConnection, name: &str) -> QueryResult<Pool> {
    worker_pools::table.filter(worker_pools::name.eq(name)).select(Pool::as_select()).first(conn)
}

pub fn insert_worker(
    conn: &mut PgConnection,
    id: &str,
    pool_id: &str,
    base_url: &str,
    api_key_sealed: Option<&[u8]>,
    slots: i32,
) -> QueryResult<Worker> {
    diesel::insert_into(workers::table)
        .values((
            workers::id.eq(id),
            workers::pool_id.eq(pool_id),
            workers::base_url.eq(base_url),
            workers::api_key_sealed.eq(api_key_sealed),
            workers::slots.eq(slots),
        ))
        .returning(Worker::as_returning())
        .get_result(conn)
}

/// Workers of a pool that are not removed.
pub fn list_workers(conn: &mut PgConnection, pool_id: &str) -> QueryResult<Vec<Worker>> {
    workers::table
        .filter(workers::pool_id.eq(pool_id))
        .filter(workers::state.ne(WorkerState::Removed))
        .order(workers::created_at)
        .select(Worker::as_select())
        .load(conn)
}

pub fn set_worker_state(conn: &mut PgConnection, id: &str, state: WorkerState) -> QueryResult<Worker> {
    diesel::update(workers::table.find(id))
        .set((workers::state.eq(state), workers::updated_at.eq(Utc::now())))
        .returning(Worker::as_returning())
        .get_result(conn)
}
