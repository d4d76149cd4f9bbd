//! Usage queries and billing exports over the per-minute rollups, shared by the management API
//! and `gatehouse export usage` (which therefore write the same bytes).
//!
//! Export rows are one per (tenant, credential, model, day), days in the tenant's time zone,
//! read from the database a page at a time (keyset pagination: no connection is held while
//! the client downloads) and written as they come. The columns are a contract:
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

use chrono::NaiveDate;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;

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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub tenant_id: String,
    pub credential_id: String,
    pub model: String,
    pub period_start: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub audio_seconds: String,
    pub errors: i64,
}

/// Rows read from the database per page of an export.
pub const EXPORT_PAGE_ROWS: i64 = 1000;

/// Writes an export's bytes a page at a time: the CSV header first, then each page's rows.
pub struct ExportWriter {
    format: Format,
    header_written: bool,
    rows: u64,
}

impl ExportWriter {
    pub fn new(format: Format) -> ExportWriter {
        ExportWriter { format, header_written: false, rows: 0 }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The bytes of `rows` (preceded by the header on the first call).
    pub fn page(&mut self, rows: &[UsageRow]) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(rows.len() * 128);
        match self.format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(&mut out);
                if !self.header_written {
                    w.write_record(CSV_COLUMNS)?;
                }
                for row in rows {
                    w.serialize(row)?;
                }
                w.flush()?;
            }
            Format::Ndjson => {
                for row in rows {
                    serde_json::to_writer(&mut out, row)?;
                    out.push(b'\n');
                }
            }
        }
        self.header_written = true;
        self.rows += rows.len() as u64;
        Ok(out)
    }
}

/// How usage is grouped: by day (tenant time zone), model or credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Model,
    Credential,
}

#[derive(Debug, Clone, Serialize, diesel::QueryableByName, utoipa::ToSchema)]
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

    #[test]
    fn the_csv_header_comes_once() {
        let row = UsageRow {
            tenant_id: "ten_a".into(),
            credential_id: "key_a".into(),
            model: "m".into(),
            period_start: "2026-11-01T00:00:00+00:00".into(),
            requests: 2,
            prompt_tokens: 3,
            completion_tokens: 4,
            audio_seconds: "0.000".into(),
            errors: 0,
        };
        let mut w = ExportWriter::new(Format::Csv);
        let first = String::from_utf8(w.page(std::slice::from_ref(&row)).unwrap()).unwrap();
        let second = String::from_utf8(w.page(&[row]).unwrap()).unwrap();
        assert!(first.starts_with("tenant_id,credential_id"));
        assert_eq!(second, "ten_a,key_a,m,2026-11-01T00:00:00+00:00,2,3,4,0.000,0\n");
        assert_eq!(w.rows(), 2);
    }
}
