//! Read-only views over the usage rollups for the dashboard's overview: hourly series and the
//! queue-wait percentile. Like every usage read, they scan rollups (one row per tenant,
//! credential, model and minute), never usage events.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamptz};

use crate::domain::TenantId;

#[derive(Debug, Clone, QueryableByName)]
pub struct HourPoint {
    #[diesel(sql_type = Timestamptz)]
    pub hour: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
}

/// One tenant's requests and tokens per hour in `[from, to)` (hours without usage are absent).
pub fn hourly(conn: &mut PgConnection, tenant: &TenantId, from: DateTime<Utc>, to: DateTime<Utc>) -> QueryResult<Vec<HourPoint>> {
    diesel::sql_query(
        "SELECT date_trunc('hour', minute) AS hour, sum(requests)::bigint AS requests,
                sum(prompt_tokens + completion_tokens)::bigint AS tokens
         FROM usage_rollups WHERE tenant_id = $1 AND minute >= $2 AND minute < $3
         GROUP BY 1 ORDER BY 1",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
}

#[derive(QueryableByName)]
struct P95 {
    #[diesel(sql_type = Nullable<Double>)]
    p95: Option<f64>,
}

/// The 95th percentile, over the minutes of `[from, to)` with requests, of each minute's mean
/// queue wait in milliseconds (rollups keep sums per minute, not every wait).
pub fn queue_wait_p95_ms(conn: &mut PgConnection, tenant: &TenantId, from: DateTime<Utc>, to: DateTime<Utc>) -> QueryResult<Option<f64>> {
    let row: P95 = diesel::sql_query(
        "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY wait)::double precision AS p95
         FROM (SELECT sum(queue_wait_ms_sum)::double precision / sum(requests) AS wait
               FROM usage_rollups WHERE tenant_id = $1 AND minute >= $2 AND minute < $3
               GROUP BY minute HAVING sum(requests) > 0) m",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .get_result(conn)?;
    Ok(row.p95)
}

#[derive(Debug, Clone, QueryableByName)]
pub struct TenantTotals {
    #[diesel(sql_type = Text)]
    pub tenant_id: String,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub audio_ms: i64,
}

/// Every tenant's totals in `[from, to)`, busiest first (operators' usage page).
pub fn by_tenant(conn: &mut PgConnection, from: DateTime<Utc>, to: DateTime<Utc>) -> QueryResult<Vec<TenantTotals>> {
    diesel::sql_query(
        "SELECT tenant_id, sum(requests)::bigint AS requests, sum(prompt_tokens + completion_tokens)::bigint AS tokens,
                sum(audio_ms)::bigint AS audio_ms
         FROM usage_rollups WHERE minute >= $1 AND minute < $2
         GROUP BY tenant_id ORDER BY 2 DESC, 1 LIMIT 500",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
}
