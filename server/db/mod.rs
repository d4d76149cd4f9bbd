//! PostgreSQL access: the `Db` handle (pool + semaphore + `run`), embedded migrations, monthly
//! partitions and one file of query functions per table group. Query functions are synchronous,
//! take `&mut PgConnection` and, for tenant data, an explicit `TenantId`. Handlers and actors never
//! touch the pool directly: they call `db.run(…)`.

pub mod admins;
pub mod alerts;
pub mod api_keys;
pub mod audit;
pub mod clients;
pub mod ip_rules;
pub mod jobs;
pub mod migrations;
pub mod operators;
pub mod partitions;
pub mod plans;
pub mod revocations;
pub mod schema;
pub mod sessions;
pub mod signing_keys;
pub mod states;
pub mod tenants;
pub mod usage;
pub mod usage_hourly;
pub mod usage_views;
pub mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, PgConnection};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::DatabaseConfig;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgPooled = PooledConnection<ConnectionManager<PgConnection>>;

/// Why a database call failed, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection within the checkout timeout: the database is down or saturated (→ 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated (→ 409); carries the constraint name.
    #[error("conflict on {0}")]
    Conflict(String),
    #[error(transparent)]
    Query(DieselError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => DbError::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                DbError::Conflict(info.constraint_name().unwrap_or("unique constraint").to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => DbError::Unavailable(info.message().to_owned()),
            other => DbError::Query(other),
        }
    }
}

/// The database handle shared by handlers and actors. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    url: Arc<str>,
    permits: Arc<Semaphore>,
    checkout_timeout: Duration,
}

impl Db {
    /// Builds the pool without connecting; see `wait_until_reachable`.
    pub fn new(url: &str, config: &DatabaseConfig) -> Db {
        let checkout_timeout = Duration::from_millis(config.checkout_timeout_ms);
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(checkout_timeout)
            .test_on_check_out(true)
            .error_handler(Box::new(TracingErrorHandler))
            .build_unchecked(ConnectionManager::new(url));
        Db { pool, url: Arc::from(url), permits: Arc::new(Semaphore::new(config.pool_size as usize)), checkout_timeout }
    }

    /// Retries with exponential backoff (250 ms doubling to 5 s) until a connection succeeds or
    /// `timeout` passes. Start-up calls this so Gatehouse and its database can boot in any order.
    pub async fn wait_until_reachable(&self, timeout: Duration) -> Result<(), DbError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(250);
        let mut attempt = 1u32;
        loop {
            let url = self.url.clone();
            let result = tokio::task::spawn_blocking(move || PgConnection::establish(&url).map(drop))
                .await
                .map_err(|e| DbError::Other(anyhow::anyhow!("database probe panicked: {e}")))?;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() + backoff < timeout => {
                    tracing::warn!(attempt, retry_in_ms = backoff.as_millis() as u64, error = %e, "database not reachable yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => {
                    return Err(DbError::Unavailable(format!(
                        "could not connect within {} s ({attempt} attempts): {e}",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }

    /// Runs blocking diesel work on the blocking thread pool, inside the caller's tracing span,
    /// with at most `pool_size` calls in flight. A pool timeout becomes `DbError::Unavailable`.
    pub async fn run<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = tokio::time::timeout(self.checkout_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| DbError::Unavailable("all database connections are busy".into()))?
            .map_err(|_| DbError::Unavailable("database handle closed".into()))?;
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        actix_web::web::block(move || {
            let _entered = span.enter();
            let _permit = permit;
            let mut conn = pool.get().map_err(|e| DbError::Unavailable(e.to_string()))?;
            f(&mut conn)
        })
        .instrument(tracing::Span::current())
        .await
        .map_err(|e| DbError::Other(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// Readiness: a connection within `timeout` and no pending migrations. Bypasses the
    /// semaphore so a saturated (but healthy) database still reports ready.
    pub async fn check_ready(&self, timeout: Duration) -> Readiness {
        let pool = self.pool.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Readiness {
            let mut conn = match pool.get_timeout(timeout) {
                Ok(conn) => conn,
                Err(_) => return Readiness::DatabaseUnreachable,
            };
            match migrations::pending(&mut conn) {
                Ok(pending) if pending.is_empty() => Readiness::Ready,
                Ok(pending) => Readiness::MigrationsPending(pending.len()),
                Err(_) => Readiness::DatabaseUnreachable,
            }
        })
        .await;
        outcome.unwrap_or(Readiness::DatabaseUnreachable)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    DatabaseUnreachable,
    MigrationsPending(usize),
}

/// r2d2 reports each failed connection attempt here. The caller that gave up reports the
/// failure once (as a 503 or a start-up error), so attempts are only debug lines. libpq's
/// messages name host and port, never the password.
#[derive(Debug)]
struct TracingErrorHandler;

impl r2d2::HandleError<diesel::r2d2::Error> for TracingErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::debug!(error = %error, "database connection failed");
    }
}

/// Removes the password from a PostgreSQL URL for logs and banners.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparseable database url]".into();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') { format!("{scheme}://{user}:***@{host}{tail}") } else { format!("{scheme}://{user}@{host}{tail}") }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgresql:///db?host=/tmp/x"), "postgresql:///db?host=/tmp/x");
        assert_eq!(redact_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }
}
