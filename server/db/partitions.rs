//! Monthly partitions for the tables that grow with traffic (usage rollups, usage events, audit
//! events). Partitions are created ahead of time and retention drops whole partitions: old data
//! leaves with a `DROP TABLE`, never a mass `DELETE` that bloats the heap.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use crate::config::RetentionConfig;

/// Serialises partition maintenance across instances ("partitio").
const PARTITION_LOCK_KEY: i64 = 0x7061_7274_6974_696f;

/// A partitioned table and the retention that applies to it.
#[derive(Debug, Clone, Copy)]
pub struct Partitioned {
    pub table: &'static str,
    pub retention_months: u32,
}

pub fn partitioned_tables(retention: &RetentionConfig) -> [Partitioned; 4] {
    [
        Partitioned { table: "usage_rollups", retention_months: retention.usage_months },
        Partitioned { table: "usage_rollups_hourly", retention_months: retention.usage_months },
        Partitioned { table: "usage_events", retention_months: retention.usage_months },
        Partitioned { table: "audit_events", retention_months: retention.audit_months },
    ]
}

/// First day of the month `offset` months after the month of `at` (negative = before).
pub fn month_start(at: DateTime<Utc>, offset: i32) -> NaiveDate {
    let months = at.year() * 12 + at.month0() as i32 + offset;
    // month0 is 0..=11 and day 1 exists in every month, so this cannot fail.
    NaiveDate::from_ymd_opt(months.div_euclid(12), months.rem_euclid(12) as u32 + 1, 1).unwrap_or_default()
}

pub fn partition_name(table: &str, month: NaiveDate) -> String {
    format!("{table}_p{:04}{:02}", month.year(), month.month())
}

fn parse_partition_month(table: &str, name: &str) -> Option<NaiveDate> {
    let suffix = name.strip_prefix(table)?.strip_prefix("_p")?;
    if suffix.len() != 6 {
        return None;
    }
    let year = suffix[..4].parse().ok()?;
    let month = suffix[4..].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, 1)
}

fn utc_midnight(day: NaiveDate) -> String {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN)).format("%Y-%m-%d %H:%M:%S+00").to_string()
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
}

/// Creates partitions from the current month to `ahead` months ahead and drops partitions wholly
/// older than each table's retention. Idempotent; one transaction under an advisory lock.
pub fn maintain(conn: &mut PgConnection, now: DateTime<Utc>, retention: &RetentionConfig) -> anyhow::Result<MaintenanceReport> {
    conn.transaction(|conn| {
        conn.batch_execute(&format!("SELECT pg_advisory_xact_lock({PARTITION_LOCK_KEY})"))?;
        let mut report = MaintenanceReport::default();
        for p in partitioned_tables(retention) {
            let existing = list_partitions(conn, p.table)?;
            for offset in 0..=retention.partitions_ahead_months as i32 {
                let start = month_start(now, offset);
                let name = partition_name(p.table, start);
                if existing.contains(&name) {
                    continue;
                }
                let end = month_start(now, offset + 1);
                conn.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM ('{from}') TO ('{to}')",
                    table = p.table,
                    from = utc_midnight(start),
                    to = utc_midnight(end),
                ))?;
                report.created.push(name);
            }
            // Keep the current month and the `retention_months - 1` before it.
            let cutoff = month_start(now, 1 - p.retention_months as i32);
            for name in existing {
                if parse_partition_month(p.table, &name).is_some_and(|month| month < cutoff) {
                    conn.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))?;
                    report.dropped.push(name);
                }
            }
        }
        Ok(report)
    })
}

#[derive(QueryableByName)]
struct PartitionRow {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Names of the partitions attached to `table`.
pub fn list_partitions(conn: &mut PgConnection, table: &str) -> diesel::QueryResult<Vec<String>> {
    diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = $1 ORDER BY 1",
    )
    .bind::<Text, _>(table)
    .load::<PartitionRow>(conn)
    .map(|rows| rows.into_iter().map(|r| r.name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_arithmetic_crosses_years() {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        assert_eq!(month_start(at, 0), NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert_eq!(month_start(at, 2), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!(month_start(at, -11), NaiveDate::from_ymd_opt(2025, 12, 1).unwrap());
        assert_eq!(month_start(at, -23), NaiveDate::from_ymd_opt(2024, 12, 1).unwrap());
    }

    #[test]
    fn partition_names_round_trip() {
        let m = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        let name = partition_name("audit_events", m);
        assert_eq!(name, "audit_events_p202701");
        assert_eq!(parse_partition_month("audit_events", &name), Some(m));
        assert_eq!(parse_partition_month("usage_events", &name), None);
        assert_eq!(parse_partition_month("audit_events", "audit_events_pxx"), None);
    }
}
