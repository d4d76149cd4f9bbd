//! Migrations: idempotent, reversible, safe to run concurrently; schema.rs matches the SQL;
//! partitions are created ahead and dropped whole by retention.

use chrono::{TimeZone, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use gatehouse::config::RetentionConfig;
use gatehouse::db::audit::{self, ActorKind, AuditEvent, Outcome};
use gatehouse::db::{migrations, partitions};
use serde_json::Value;

use crate::helpers::{TestDb, gatehouse, run};

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Integer)]
    ordinal_position: i32,
}

/// Every (table, column) of the public schema, partitions excluded.
fn schema_snapshot(conn: &mut PgConnection) -> Vec<Column> {
    diesel::sql_query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, c.ordinal_position::int AS ordinal_position \
         FROM information_schema.columns c JOIN pg_class k ON k.relname = c.table_name \
         WHERE c.table_schema = 'public' AND NOT k.relispartition AND c.table_name <> '__diesel_schema_migrations' \
         ORDER BY 1, 3",
    )
    .load(conn)
    .unwrap()
}

#[test]
fn migrate_twice_is_a_noop_the_second_time() {
    let db = TestDb::empty();
    let (code, stdout, stderr) = run(gatehouse().args(["migrate", "--json"]).env("DATABASE_URL", &db.url));
    assert_eq!(code, 0, "{stderr}");
    let first: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        first["applied"].as_array().unwrap().len(),
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count()
    );
    assert!(!first["partitions_created"].as_array().unwrap().is_empty());

    let (code, stdout, _) = run(gatehouse().args(["migrate", "--json"]).env("DATABASE_URL", &db.url));
    assert_eq!(code, 0);
    let second: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(second["applied"], serde_json::json!([]));
    assert_eq!(second["partitions_created"], serde_json::json!([]));

    let (code, stdout, _) = run(gatehouse().arg("migrate").env("DATABASE_URL", &db.url));
    assert_eq!(code, 0);
    assert!(stdout.contains("up to date"), "{stdout}");
}

#[test]
fn every_migration_goes_up_down_and_up_again() {
    let db = TestDb::empty();
    let mut conn = db.conn();
    let applied = migrations::run_pending(&mut conn).unwrap();
    assert!(!applied.is_empty());
    partitions::maintain(&mut conn, Utc::now(), &RetentionConfig::default()).unwrap();
    let up = schema_snapshot(&mut conn);

    let reverted = migrations::revert_all(&mut conn).unwrap();
    assert_eq!(reverted.len(), applied.len());
    assert_eq!(schema_snapshot(&mut conn), vec![], "down.sql files leave nothing behind");

    assert_eq!(migrations::run_pending(&mut conn).unwrap().len(), applied.len());
    assert_eq!(schema_snapshot(&mut conn), up);
    assert!(migrations::pending(&mut conn).unwrap().is_empty());
}

#[test]
fn concurrent_migrations_apply_each_migration_once() {
    let db = TestDb::empty();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut conn = PgConnection::establish(&url).unwrap();
                migrations::run_pending(&mut conn).unwrap().len()
            })
        })
        .collect();
    let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count();
    assert_eq!(counts.iter().sum::<usize>(), total, "{counts:?}");
}

/// schema.rs is written by hand; it must name exactly the columns the migrations create, in order.
#[test]
fn schema_rs_matches_the_database() {
    use diesel::query_builder::AsQuery;
    use gatehouse::db::schema::*;

    macro_rules! declared {
        ($($t:ident),* $(,)?) => {{
            let mut out = Vec::new();
            $(
                let sql = diesel::debug_query::<diesel::pg::Pg, _>(&$t::table.select($t::all_columns).as_query()).to_string();
                let cols = sql.split(" FROM ").next().unwrap().trim_start_matches("SELECT ");
                for (i, col) in cols.split(", ").enumerate() {
                    let name = col.rsplit('.').next().unwrap().trim_matches('"').to_owned();
                    out.push(Column { table_name: stringify!($t).to_owned(), column_name: name, ordinal_position: i as i32 + 1 });
                }
            )*
            out.sort();
            out
        }};
    }
    let declared = declared!(
        plans,
        tenants,
        operators,
        tenant_admins,
        admin_sessions,
        management_tokens,
        oauth_clients,
        api_keys,
        signing_keys,
        token_revocations,
        worker_pools,
        workers,
        jobs,
        usage_rollups,
        usage_rollups_hourly,
        usage_events,
        usage_journal_marks,
        audit_events,
        alert_rules,
        alert_outbox,
        alert_recipients,
        alert_silences,
        alert_states,
        ip_rules,
        ip_bans
    );
    let db = TestDb::new();
    let mut actual = schema_snapshot(&mut db.conn());
    actual.sort();
    assert_eq!(declared, actual);
}

#[test]
fn partitions_are_created_ahead_and_dropped_whole_after_retention() {
    let db = TestDb::empty();
    let mut conn = db.conn();
    migrations::run_pending(&mut conn).unwrap();
    let retention = RetentionConfig { usage_months: 2, audit_months: 3, partitions_ahead_months: 2 };

    let jan = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap();
    let report = partitions::maintain(&mut conn, jan, &retention).unwrap();
    assert!(report.created.contains(&"audit_events_p202601".to_owned()));
    assert!(report.created.contains(&"audit_events_p202603".to_owned()));
    assert!(!report.created.contains(&"audit_events_p202604".to_owned()));
    assert_eq!(
        partitions::list_partitions(&mut conn, "usage_rollups").unwrap(),
        ["usage_rollups_p202601", "usage_rollups_p202602", "usage_rollups_p202603"]
    );

    // A row lands in its month's partition.
    diesel::sql_query("INSERT INTO audit_events (occurred_at, id, actor_kind, action, outcome) VALUES ('2026-01-20T00:00:00Z', gen_random_uuid(), 'system', 'test', 'success')")
        .execute(&mut conn)
        .unwrap();

    // Again in the same month: nothing to do.
    assert_eq!(partitions::maintain(&mut conn, jan, &retention).unwrap(), Default::default());

    // April: usage keeps March and April (2 months); audit keeps February to April (3 months).
    let apr = Utc.with_ymd_and_hms(2026, 4, 2, 0, 0, 0).unwrap();
    let report = partitions::maintain(&mut conn, apr, &retention).unwrap();
    assert!(report.dropped.contains(&"usage_rollups_p202601".to_owned()));
    assert!(report.dropped.contains(&"usage_rollups_p202602".to_owned()));
    assert!(report.dropped.contains(&"audit_events_p202601".to_owned()));
    assert!(!report.dropped.contains(&"audit_events_p202602".to_owned()));
    assert_eq!(
        partitions::list_partitions(&mut conn, "usage_rollups").unwrap(),
        ["usage_rollups_p202603", "usage_rollups_p202604", "usage_rollups_p202605", "usage_rollups_p202606"]
    );
    let left: i64 =
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT count(*) FROM audit_events)")).get_result(&mut conn).unwrap();
    assert_eq!(left, 0, "the January row left with its partition");
}

#[test]
fn audit_events_are_written_to_the_current_partition() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let tenant = gatehouse::domain::TenantId::generate();
    audit::insert(
        &mut conn,
        &AuditEvent::new(ActorKind::Operator, "tenant.create", Outcome::Success).tenant(&tenant).target("tenant", tenant.as_str()),
    )
    .unwrap();
    let rows = audit::list_for_tenant(&mut conn, &tenant, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].action, "tenant.create");
    assert_eq!(rows[0].actor_kind, "operator");
}
