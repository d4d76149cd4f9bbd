//! Hourly usage rollups: written with the per-minute rows in the same transaction (so both always
//! agree), read for long ranges. A range `[from, to)` is the full hours inside it from the hourly
//! rows, plus the minutes before its first full hour and after its last one from the minute rows
//! (a period can start mid-hour: time zones with :30 and :45 offsets, "the last 24 hours").

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};

use super::usage::{RollupKey, Totals};
use crate::domain::TenantId;
use crate::metering::Amounts;
use crate::metering::report::UsageGroup;

/// Adds a batch of minute rows to their hours (one statement).
pub fn upsert(conn: &mut PgConnection, rows: &[(RollupKey, Totals)]) -> QueryResult<()> {
    let mut hours: HashMap<(DateTime<Utc>, &str, &str, &str), Totals> = HashMap::new();
    for ((minute, tenant, credential, model), t) in rows {
        let hour = minute.duration_trunc(Duration::hours(1)).unwrap_or(*minute);
        *hours.entry((hour, tenant.as_str(), credential.as_str(), model.as_str())).or_default() += *t;
    }
    if hours.is_empty() {
        return Ok(());
    }
    let mut hour_column: Vec<DateTime<Utc>> = Vec::with_capacity(hours.len());
    let mut keys: [Vec<&str>; 3] = Default::default();
    let mut sums: [Vec<i64>; 7] = Default::default();
    for ((hour, tenant, credential, model), t) in hours {
        hour_column.push(hour);
        for (column, v) in keys.iter_mut().zip([tenant, credential, model]) {
            column.push(v);
        }
        for (sum, v) in sums.iter_mut().zip([
            t.requests,
            t.errors,
            t.prompt_tokens,
            t.completion_tokens,
            t.audio_ms,
            t.queue_wait_ms_sum,
            t.latency_ms_sum,
        ]) {
            sum.push(v);
        }
    }
    let [requests, errors, prompt, completion, audio, wait, latency] = sums;
    let [tenants, credentials, models] = keys;
    diesel::sql_query(
        "INSERT INTO usage_rollups_hourly AS u (hour, tenant_id, credential_id, model, requests, errors, prompt_tokens,
                completion_tokens, audio_ms, queue_wait_ms_sum, latency_ms_sum)
         SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                              $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
         ON CONFLICT (hour, tenant_id, credential_id, model) DO UPDATE SET
             requests = u.requests + excluded.requests, errors = u.errors + excluded.errors,
             prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
             completion_tokens = u.completion_tokens + excluded.completion_tokens,
             audio_ms = u.audio_ms + excluded.audio_ms, queue_wait_ms_sum = u.queue_wait_ms_sum + excluded.queue_wait_ms_sum,
             latency_ms_sum = u.latency_ms_sum + excluded.latency_ms_sum",
    )
    .bind::<Array<Timestamptz>, _>(hour_column)
    .bind::<Array<Text>, _>(tenants)
    .bind::<Array<Text>, _>(credentials)
    .bind::<Array<Text>, _>(models)
    .bind::<Array<BigInt>, _>(requests)
    .bind::<Array<BigInt>, _>(errors)
    .bind::<Array<BigInt>, _>(prompt)
    .bind::<Array<BigInt>, _>(completion)
    .bind::<Array<BigInt>, _>(audio)
    .bind::<Array<BigInt>, _>(wait)
    .bind::<Array<BigInt>, _>(latency)
    .execute(conn)?;
    Ok(())
}

/// `[from, to)` split: the full hours `[a, b)` (read from the hourly rows) and, around them, the
/// minutes `[from, a)` and `[b, to)`. Without full hours, `a = b = to` (all minutes).
fn split(from: DateTime<Utc>, to: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let floor = |t: DateTime<Utc>| t.duration_trunc(Duration::hours(1)).unwrap_or(t);
    let a = if floor(from) == from { from } else { floor(from) + Duration::hours(1) };
    let b = floor(to);
    if a < b { (a, b) } else { (to, to) }
}

/// The three parts of a range as one row source with the columns `key`, `requests`, `errors`,
/// `prompt_tokens`, `completion_tokens`, `audio_ms`. Binds: $1 tenant, $2 from, $3 to, $4 a, $5 b.
fn parts(key: &str) -> String {
    format!(
        "SELECT {key} AS key, requests, errors, prompt_tokens, completion_tokens, audio_ms
           FROM usage_rollups_hourly WHERE tenant_id = $1 AND hour >= $4 AND hour < $5
         UNION ALL
         SELECT {key}, requests, errors, prompt_tokens, completion_tokens, audio_ms
           FROM usage_rollups WHERE tenant_id = $1 AND minute >= $2 AND minute < $4
         UNION ALL
         SELECT {key}, requests, errors, prompt_tokens, completion_tokens, audio_ms
           FROM usage_rollups WHERE tenant_id = $1 AND minute >= $5 AND minute < $3"
    )
}

#[derive(QueryableByName)]
struct Sums {
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
    #[diesel(sql_type = BigInt)]
    audio_ms: i64,
}

/// What counts against a quota over `[from, to)`.
pub fn amounts(conn: &mut PgConnection, tenant: &TenantId, from: DateTime<Utc>, to: DateTime<Utc>) -> QueryResult<Amounts> {
    let (a, b) = split(from, to);
    let sums: Sums = diesel::sql_query(format!(
        "SELECT coalesce(sum(requests), 0)::bigint AS requests,
                coalesce(sum(prompt_tokens + completion_tokens), 0)::bigint AS tokens,
                coalesce(sum(audio_ms), 0)::bigint AS audio_ms
         FROM ({}) p",
        parts("''")
    ))
    .bind::<Text, _>(tenant.as_str())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Timestamptz, _>(a)
    .bind::<Timestamptz, _>(b)
    .get_result(conn)?;
    Ok(Amounts { requests: sums.requests, tokens: sums.tokens, audio_ms: sums.audio_ms })
}

/// Usage over `[from, to)` grouped by a column of the rollups (`model` or `credential_id`).
pub fn grouped(
    conn: &mut PgConnection,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    column: &str,
) -> QueryResult<Vec<UsageGroup>> {
    let (a, b) = split(from, to);
    diesel::sql_query(format!(
        "SELECT key, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
                sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens,
                sum(audio_ms)::bigint AS audio_ms
         FROM ({}) p GROUP BY 1 ORDER BY 1",
        parts(column)
    ))
    .bind::<Text, _>(tenant.as_str())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Timestamptz, _>(a)
    .bind::<Timestamptz, _>(b)
    .load(conn)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_range_splits_into_full_hours_and_the_minutes_around_them() {
        let t = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap();
        assert_eq!(split(t(5, 30), t(9, 10)), (t(6, 0), t(9, 0)));
        assert_eq!(split(t(6, 0), t(9, 0)), (t(6, 0), t(9, 0)), "aligned ends need no minutes");
        assert_eq!(split(t(6, 10), t(6, 50)), (t(6, 50), t(6, 50)), "inside one hour: minutes only");
        assert_eq!(split(t(6, 10), t(7, 20)), (t(7, 20), t(7, 20)), "no full hour: minutes only");
    }
}
