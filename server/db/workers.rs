//! Worker pools and workers (installation-wide; the scheduler arrives with the gateway issue).

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::worker_pools;

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
