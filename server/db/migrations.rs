//! Embedded migrations, applied under a PostgreSQL advisory lock so that several instances (or a
//! deploy job racing a rolling restart) never apply the same migration twice.

use diesel::connection::SimpleConnection;
use diesel::{PgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key for schema changes ("gatehous" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6761_7465_686f_7573;

/// Applies pending migrations; returns the versions applied (empty when already current).
pub fn run_pending(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
    let unlock = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(conn);
    let applied = result?;
    unlock?;
    Ok(applied)
}

/// Versions the binary knows that the database has not applied yet.
pub fn pending(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let pending = conn.pending_migrations(MIGRATIONS).map_err(|e| anyhow::anyhow!("cannot read migration state: {e}"))?;
    Ok(pending.iter().map(|m| m.name().to_string()).collect())
}

/// Reverts every migration (tests and `down` checks only).
pub fn revert_all(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let reverted = conn.revert_all_migrations(MIGRATIONS).map_err(|e| anyhow::anyhow!("revert failed: {e}"))?;
    Ok(reverted.iter().map(ToString::to_string).collect())
}
