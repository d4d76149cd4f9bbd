//! Usage queries and billing exports over the per-minute rollups, shared by the management API
//! and `gatehouse export usage` (which therefore write the same bytes).
//!
//! Export rows are one per (tenant, credential, model, day), days in the tenant's time zone,
//! streamed from the database row by row (never built in memory). The columns are a contract:
//!
//! | column | meaning |
//! |---|---|
//! | `tenant_id` | `ten_…` |
//! | `credential_id` | OAuth2 client id or API key id |
//! | `model` | model name as requested |
//! | `period_start` | start of the day in the tenant's time zone, RFC 3339 with offset |
//! | `requests` | finished requests, errors included |
//! | `prompt_tokens`, `completion_tokens` | as reported by the workers |
//! | `audio_seconds` | aligned audio, seconds with millisecond precision |
//! | `errors` | requests answered with a 4xx/5xx status after admission |

use std::io::Write;

use chrono::{DateTime, NaiveDate, Offset, Utc};
use diesel::pg::PgRowByRowLoadingMode;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp, Timestamptz};
use serde::Serialize;

use crate::db::DbError;

pub const CSV_COLUMNS: [&str; 9] =
    ["tenant_id", "credential_id", "model", "period_start", "requests", "prompt_tokens", "completion_tokens", "audio_seconds", "errors"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub first: NaiveDate,
    pub next: NaiveDate,
}

impl Month {
    pub fn parse(s: &str) -> Option<Month> {
        let first = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok()?;
        if s.len() != 7 {
            return None;
        }
        let next = first.checked_add_months(chrono::Months::new(1))?;
        Some(Month { first, next })
    }
}

#[derive(Debug, Clone, Serialize, QueryableByName, utoipa::ToSchema)]
pub struct UsageRow {
    #[diesel(sql_type = Text)]
    pub tenant_id: String,
    #[diesel(sql_type = Text)]
    pub credential_id: String,
    #[diesel(sql_type = Text)]
    pub model: String,
    #[diesel(sql_type = Text)]
    pub period_start: String,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = Text)]
    pub audio_seconds: String,
    #[diesel(sql_type = BigInt)]
    pub errors: i64,
}

/// The export query: local-day rows of one month, for one tenant or all. The UTC range is widened
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
GROUP BY r.tenant_id, r.credential_id, r.model, period_start_local, period_start_utc
ORDER BY r.tenant_id, period_start_utc, r.credential_id, r.model";

#[derive(QueryableByName)]
struct RawRow {
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

impl RawRow {
    fn into_row(self) -> UsageRow {
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

/// Streams the export of `month` (one tenant, or all when `tenant` is None) into `out`; returns
/// the number of rows.
pub fn export(conn: &mut PgConnection, tenant: Option<&str>, month: Month, format: Format, out: &mut dyn Write) -> Result<u64, DbError> {
    let io = |e: std::io::Error| DbError::Other(anyhow::Error::new(e).context("writing the export"));
    let utc_from = crate::usage::local_midnight(chrono_tz::UTC, month.first) - chrono::Duration::days(1);
    let utc_to = crate::usage::local_midnight(chrono_tz::UTC, month.next) + chrono::Duration::days(1);
    let rows = diesel::sql_query(EXPORT_SQL)
        .bind::<Timestamptz, _>(utc_from)
        .bind::<Timestamptz, _>(utc_to)
        .bind::<Nullable<Text>, _>(tenant)
        .bind::<Timestamp, _>(month.first.and_hms_opt(0, 0, 0).unwrap_or_default())
        .bind::<Timestamp, _>(month.next.and_hms_opt(0, 0, 0).unwrap_or_default())
        .load_iter::<RawRow, PgRowByRowLoadingMode>(conn)?;
    let csv_error = |e: csv::Error| DbError::Other(anyhow::Error::new(e).context("writing the export"));
    let mut n = 0;
    match format {
        Format::Csv => {
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(&mut *out);
            w.write_record(CSV_COLUMNS).map_err(csv_error)?;
            for row in rows {
                w.serialize(row?.into_row()).map_err(csv_error)?;
                n += 1;
            }
            w.flush().map_err(io)?;
        }
        Format::Ndjson => {
            for row in rows {
                serde_json::to_writer(&mut *out, &row?.into_row()).map_err(|e| DbError::Other(e.into()))?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Model,
    Credential,
}

#[derive(Debug, Clone, Serialize, QueryableByName, utoipa::ToSchema)]
pub struct UsageGroup {
    /// The day (`YYYY-MM-DD`, tenant time zone), model name or credential id.
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub errors: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub audio_ms: i64,
}

/// One tenant's usage in `[from, to)`, grouped.
pub fn query(
    conn: &mut PgConnection,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: GroupBy,
) -> QueryResult<Vec<UsageGroup>> {
    let key = match group_by {
        GroupBy::Day => "to_char(r.minute AT TIME ZONE t.time_zone, 'YYYY-MM-DD')",
        GroupBy::Model => "r.model",
        GroupBy::Credential => "r.credential_id",
    };
    diesel::sql_query(format!(
        "SELECT {key} AS key, sum(r.requests)::bigint AS requests, sum(r.errors)::bigint AS errors,
                sum(r.prompt_tokens)::bigint AS prompt_tokens, sum(r.completion_tokens)::bigint AS completion_tokens,
                sum(r.audio_ms)::bigint AS audio_ms
         FROM usage_rollups r JOIN tenants t ON t.id = r.tenant_id
         WHERE r.tenant_id = $1 AND r.minute >= $2 AND r.minute < $3
         GROUP BY 1 ORDER BY 1"
    ))
    .bind::<Text, _>(tenant)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let m = Month::parse("2026-11").unwrap();
        assert_eq!((m.first.to_string(), m.next.to_string()), ("2026-11-01".into(), "2026-12-01".into()));
        assert_eq!(Month::parse("2026-12").unwrap().next.to_string(), "2027-01-01");
        for bad in ["2026-13", "2026-1", "nov", "2026-11-01", ""] {
            assert!(Month::parse(bad).is_none(), "{bad}");
        }
    }
}
