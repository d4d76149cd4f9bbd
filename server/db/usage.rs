//! Usage rollups (one row per tenant, credential, model and minute), per-request usage events,
//! the quota totals read back from the rollups, and the export and report queries over them.

use chrono::{DateTime, Offset, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp, Timestamptz};
use diesel::upsert::excluded;

use super::schema::{usage_events, usage_journal_marks, usage_rollups};
use super::usage_hourly;
use crate::domain::TenantId;
use crate::metering::report::{GroupBy, Month, UsageGroup, UsageRow};
use crate::metering::{Amounts, UsageEvent, local_midnight};

/// The key of one rollup row: (minute, tenant, credential, model).
pub type RollupKey = (DateTime<Utc>, TenantId, String, String);

/// What one rollup row adds up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub audio_ms: i64,
    pub queue_wait_ms_sum: i64,
    pub latency_ms_sum: i64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.audio_ms += o.audio_ms;
        self.queue_wait_ms_sum += o.queue_wait_ms_sum;
        self.latency_ms_sum += o.latency_ms_sum;
    }
}

/// The tenant's committed usage since `day` and since `month` (from the hourly rollups, with the
/// minutes before a period's first full hour).
pub fn period_totals(
    conn: &mut PgConnection,
    tenant: &TenantId,
    day: DateTime<Utc>,
    month: DateTime<Utc>,
) -> QueryResult<(Amounts, Amounts)> {
    // Past the current hour: the hourly rows hold everything up to now.
    let to = Utc::now() + chrono::Duration::hours(1);
    Ok((usage_hourly::amounts(conn, tenant, day, to)?, usage_hourly::amounts(conn, tenant, month, to)?))
}

/// How far a usage journal's segments are in the database (0: none yet).
pub fn journal_mark(conn: &mut PgConnection, journal_id: &str) -> QueryResult<i64> {
    usage_journal_marks::table.find(journal_id).select(usage_journal_marks::applied_segment).first(conn).optional().map(|m| m.unwrap_or(0))
}

/// One multi-row upsert of rollups, plus the per-request rows when kept, and the journal mark
/// (`(journal id, segment)`: that journal's segments up to this one are applied), in one
/// transaction.
pub fn write_rollups(
    conn: &mut PgConnection,
    rows: &[(RollupKey, Totals)],
    events: &[UsageEvent],
    mark: Option<(&str, i64)>,
) -> QueryResult<()> {
    let values: Vec<_> = rows
        .iter()
        .map(|((minute, tenant, credential, model), t)| {
            (
                usage_rollups::minute.eq(*minute),
                usage_rollups::tenant_id.eq(tenant.as_str()),
                usage_rollups::credential_id.eq(credential),
                usage_rollups::model.eq(model),
                usage_rollups::requests.eq(t.requests),
                usage_rollups::errors.eq(t.errors),
                usage_rollups::prompt_tokens.eq(t.prompt_tokens),
                usage_rollups::completion_tokens.eq(t.completion_tokens),
                usage_rollups::audio_ms.eq(t.audio_ms),
                usage_rollups::queue_wait_ms_sum.eq(t.queue_wait_ms_sum),
                usage_rollups::latency_ms_sum.eq(t.latency_ms_sum),
            )
        })
        .collect();
    conn.transaction(|conn| {
        diesel::insert_into(usage_rollups::table)
            .values(values)
            .on_conflict((usage_rollups::minute, usage_rollups::tenant_id, usage_rollups::credential_id, usage_rollups::model))
            .do_update()
            .set((
                usage_rollups::requests.eq(usage_rollups::requests + excluded(usage_rollups::requests)),
                usage_rollups::errors.eq(usage_rollups::errors + excluded(usage_rollups::errors)),
                usage_rollups::prompt_tokens.eq(usage_rollups::prompt_tokens + excluded(usage_rollups::prompt_tokens)),
                usage_rollups::completion_tokens.eq(usage_rollups::completion_tokens + excluded(usage_rollups::completion_tokens)),
                usage_rollups::audio_ms.eq(usage_rollups::audio_ms + excluded(usage_rollups::audio_ms)),
                usage_rollups::queue_wait_ms_sum.eq(usage_rollups::queue_wait_ms_sum + excluded(usage_rollups::queue_wait_ms_sum)),
                usage_rollups::latency_ms_sum.eq(usage_rollups::latency_ms_sum + excluded(usage_rollups::latency_ms_sum)),
            ))
            .execute(conn)?;
        usage_hourly::upsert(conn, rows)?;
        // Per-request rows, when enabled; chunked under PostgreSQL's 65,535 bind parameters.
        for chunk in events.chunks(5000) {
            let values: Vec<_> = chunk
                .iter()
                .map(|e| {
                    let clamp = |v: u64| v.min(i32::MAX as u64) as i32;
                    (
                        usage_events::occurred_at.eq(e.at),
                        usage_events::id.eq(uuid::Uuid::now_v7()),
                        usage_events::tenant_id.eq(e.tenant_id.as_str()),
                        usage_events::credential_id.eq(&e.credential_id),
                        usage_events::model.eq(&e.model),
                        usage_events::status.eq(e.status as i16),
                        usage_events::prompt_tokens.eq(clamp(e.prompt_tokens)),
                        usage_events::completion_tokens.eq(clamp(e.completion_tokens)),
                        usage_events::audio_ms.eq(clamp(e.audio_ms)),
                        usage_events::queue_wait_ms.eq(clamp(e.queue_wait_ms)),
                        usage_events::latency_ms.eq(clamp(e.latency_ms)),
                    )
                })
                .collect();
            diesel::insert_into(usage_events::table).values(values).execute(conn)?;
        }
        if let Some((journal, segment)) = mark {
            diesel::insert_into(usage_journal_marks::table)
                .values((
                    usage_journal_marks::journal_id.eq(journal),
                    usage_journal_marks::applied_segment.eq(segment),
                    usage_journal_marks::updated_at.eq(Utc::now()),
                ))
                .on_conflict(usage_journal_marks::journal_id)
                .do_update()
                .set((
                    usage_journal_marks::applied_segment
                        .eq(diesel::dsl::sql::<BigInt>("greatest(usage_journal_marks.applied_segment, excluded.applied_segment)")),
                    usage_journal_marks::updated_at.eq(Utc::now()),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Where the next page of an export starts: after this row.
#[derive(Debug, Clone)]
pub struct ExportCursor {
    tenant_id: String,
    period_start_utc: DateTime<Utc>,
    credential_id: String,
    model: String,
}

/// The export query: one page of local-day rows of one month, for one tenant or all, after a cursor. The UTC range is widened
/// by a day on each side so the partition and index bounds apply; the exact bounds are local.
const EXPORT_SQL: &str = "
SELECT r.tenant_id, r.credential_id, r.model,
       to_char(date_trunc('day', r.minute AT TIME ZONE t.time_zone), 'YYYY-MM-DD\"T\"HH24:MI:SS') AS period_start_local,
       (date_trunc('day', r.minute AT TIME ZONE t.time_zone) AT TIME ZONE t.time_zone) AS period_start_utc,
       sum(r.requests)::bigint AS requests, sum(r.prompt_tokens)::bigint AS prompt_tokens,
       sum(r.completion_tokens)::bigint AS completion_tokens, sum(r.audio_ms)::bigint AS audio_ms, sum(r.errors)::bigint AS errors
FROM usage_rollups r JOIN tenants t ON t.id = r.tenant_id
WHERE r.minute >= $1 AND r.minute < $2
  AND ($3::text IS NULL OR r.tenant_id = $3)
  AND (r.minute AT TIME ZONE t.time_zone) >= $4 AND (r.minute AT TIME ZONE t.time_zone) < $5
  AND ($6::text IS NULL OR (r.tenant_id, date_trunc('day', r.minute AT TIME ZONE t.time_zone) AT TIME ZONE t.time_zone, r.credential_id, r.model)
                          > ($6::text, $7::timestamptz, $8::text, $9::text))
GROUP BY r.tenant_id, r.credential_id, r.model, period_start_local, period_start_utc
ORDER BY r.tenant_id, period_start_utc, r.credential_id, r.model
LIMIT $10";

#[derive(QueryableByName)]
pub struct ExportRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    credential_id: String,
    #[diesel(sql_type = Text)]
    model: String,
    #[diesel(sql_type = Text)]
    period_start_local: String,
    #[diesel(sql_type = Timestamptz)]
    period_start_utc: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    audio_ms: i64,
    #[diesel(sql_type = BigInt)]
    errors: i64,
}

impl ExportRow {
    /// Where the page after this row starts.
    pub fn cursor(&self) -> ExportCursor {
        ExportCursor {
            tenant_id: self.tenant_id.clone(),
            period_start_utc: self.period_start_utc,
            credential_id: self.credential_id.clone(),
            model: self.model.clone(),
        }
    }

    pub fn into_row(self) -> UsageRow {
        // The local wall time and the instant give the offset: RFC 3339 with the tenant's offset.
        let offset_s = chrono::NaiveDateTime::parse_from_str(&self.period_start_local, "%Y-%m-%dT%H:%M:%S")
            .map(|local| (local - self.period_start_utc.naive_utc()).num_seconds())
            .unwrap_or(0);
        let offset = chrono::FixedOffset::east_opt(offset_s as i32).unwrap_or(chrono::Utc.fix());
        UsageRow {
            tenant_id: self.tenant_id,
            credential_id: self.credential_id,
            model: self.model,
            period_start: self.period_start_utc.with_timezone(&offset).to_rfc3339(),
            requests: self.requests,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            audio_seconds: format!("{}.{:03}", self.audio_ms / 1000, self.audio_ms % 1000),
            errors: self.errors,
        }
    }
}

/// One page (at most `limit` rows) of one tenant's export of `month`, after `after`.
pub fn export_page(
    conn: &mut PgConnection,
    tenant: &TenantId,
    month: Month,
    after: Option<&ExportCursor>,
    limit: i64,
) -> QueryResult<Vec<ExportRow>> {
    page(conn, Some(tenant), month, after, limit)
}

/// Operators only: one page of every tenant's export of `month`, after `after`.
pub fn export_page_all_tenants(
    conn: &mut PgConnection,
    month: Month,
    after: Option<&ExportCursor>,
    limit: i64,
) -> QueryResult<Vec<ExportRow>> {
    page(conn, None, month, after, limit)
}

fn page(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    month: Month,
    after: Option<&ExportCursor>,
    limit: i64,
) -> QueryResult<Vec<ExportRow>> {
    // The UTC range is widened by a day on each side so partition and index bounds apply; the
    // exact bounds are local.
    let utc_from = local_midnight(chrono_tz::UTC, month.first) - chrono::Duration::days(1);
    let utc_to = local_midnight(chrono_tz::UTC, month.next) + chrono::Duration::days(1);
    diesel::sql_query(EXPORT_SQL)
        .bind::<Timestamptz, _>(utc_from)
        .bind::<Timestamptz, _>(utc_to)
        .bind::<Nullable<Text>, _>(tenant.map(TenantId::as_str))
        .bind::<Timestamp, _>(month.first.and_hms_opt(0, 0, 0).unwrap_or_default())
        .bind::<Timestamp, _>(month.next.and_hms_opt(0, 0, 0).unwrap_or_default())
        .bind::<Nullable<Text>, _>(after.map(|c| c.tenant_id.as_str()))
        .bind::<Nullable<Timestamptz>, _>(after.map(|c| c.period_start_utc))
        .bind::<Nullable<Text>, _>(after.map(|c| c.credential_id.as_str()))
        .bind::<Nullable<Text>, _>(after.map(|c| c.model.as_str()))
        .bind::<BigInt, _>(limit)
        .load(conn)
}

/// One tenant's usage in `[from, to)`, grouped.
pub fn grouped(
    conn: &mut PgConnection,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: GroupBy,
) -> QueryResult<Vec<UsageGroup>> {
    let key = match group_by {
        // A local day can start mid-hour (time zones with :30 and :45 offsets): minute rows.
        GroupBy::Day => "to_char(r.minute AT TIME ZONE t.time_zone, 'YYYY-MM-DD')",
        GroupBy::Model => return usage_hourly::grouped(conn, tenant, from, to, "model"),
        GroupBy::Credential => return usage_hourly::grouped(conn, tenant, from, to, "credential_id"),
    };
    diesel::sql_query(format!(
        "SELECT {key} AS key, sum(r.requests)::bigint AS requests, sum(r.errors)::bigint AS errors,
                sum(r.prompt_tokens)::bigint AS prompt_tokens, sum(r.completion_tokens)::bigint AS completion_tokens,
                sum(r.audio_ms)::bigint AS audio_ms
         FROM usage_rollups r JOIN tenants t ON t.id = r.tenant_id
         WHERE r.tenant_id = $1 AND r.minute >= $2 AND r.minute < $3
         GROUP BY 1 ORDER BY 1"
    ))
    .bind::<Text, _>(tenant.as_str())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
}
