//! Every background loop of the application, started in one place under the `Supervisor`, which
//! restarts one that dies: the job runners, the gateway's pool reload and health checks, the
//! signing-key reload, revocation polling, the alert rules, the actors' watchdog, and periodic
//! maintenance (partitions, signing-key rotation, expired revocations, bans and jobs, limiter
//! memory), and the edge's sync round (shared counts, bans, IP rules).

use std::time::Duration;

use actix_web::web;

use crate::auth::service::AuthService;
use crate::config::Config;
use crate::db::{Db, partitions};
use crate::state::AppState;

/// How often the quota accountant's actor is checked (and revived if it died).
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn start(state: web::Data<AppState>) {
    let tasks = state.tasks.clone();
    state.jobs.start(&tasks);

    let s = state.clone();
    tasks.spawn("gateway_refresh", move || {
        let s = s.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(s.config.gateway.refresh_interval_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = s.gateway.refresh(&s.db, s.auth.master.clone()).await {
                    tracing::warn!(error = %e, "worker pools not reloaded");
                }
                s.gateway.check_health(&s.upstream).await;
            }
        }
    });

    let s = state.clone();
    tasks.spawn("signing_key_reload", move || {
        let s = s.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(s.config.auth.key_reload_ms));
            loop {
                tick.tick().await;
                if s.auth.keys.snapshot().active.is_none() {
                    // Started before the schema was migrated: create keys as soon as it is.
                    run_maintenance(&s.db, &s.config, &s.auth).await;
                }
                if let Err(e) = s.auth.reload_keys(&s.db).await {
                    tracing::warn!(error = %e, "signing keys not reloaded");
                }
            }
        }
    });

    let s = state.clone();
    tasks.spawn("revocation_poll", move || {
        let s = s.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(s.config.auth.revocation_poll_ms));
            let lookback = chrono::Duration::seconds(crate::auth::jwt::MAX_LIFETIME_S + crate::auth::jwt::LEEWAY_S);
            let mut cursor = chrono::Utc::now() - lookback;
            loop {
                tick.tick().await;
                match s.auth.poll_revocations(&s.db, cursor).await {
                    Ok(next) => cursor = next,
                    Err(e) => tracing::warn!(error = %e, "revocations not polled"),
                }
            }
        }
    });

    let s = state.clone();
    tasks.spawn("actor_watchdog", move || {
        let s = s.clone();
        async move {
            let mut tick = tokio::time::interval(WATCHDOG_INTERVAL);
            loop {
                tick.tick().await;
                if !s.tasks.is_stopping() && s.usage.revive_if_dead() {
                    s.tasks.restarted("quota_accountant");
                }
                if !s.tasks.is_stopping() && s.alerts.revive_if_dead() {
                    s.tasks.restarted("alert_mailer");
                }
            }
        }
    });

    let s = state.clone();
    tasks.spawn("alert_rules", move || {
        let s = s.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(s.config.alerts.evaluate_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut rules = crate::alerting::RuleEngine::default();
            loop {
                tick.tick().await;
                if let Err(e) = rules.evaluate(&s.db, &s.gateway, &s.auth, s.admission.limiter(), &s.config.alerts).await {
                    tracing::warn!(error = %e, "alert rules not evaluated");
                }
            }
        }
    });

    let s = state.clone();
    tasks.spawn("edge_sync", move || {
        let s = s.clone();
        async move {
            let mut tick = tokio::time::interval(s.edge.sync_interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                s.edge.sync().await;
            }
        }
    });

    let s = state;
    tasks.spawn("maintenance", move || {
        let s = s.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(s.config.gateway.maintenance_interval_s));
            tick.tick().await; // the first round ran at start-up
            loop {
                tick.tick().await;
                run_maintenance(&s.db, &s.config, &s.auth).await;
                s.jobs.sweep_expired().await;
                s.auth.limits.shrink();
                s.login_limits.shrink();
                purge_dashboard_sessions(&s).await;
            }
        }
    });
}

/// Deletes dashboard sessions past their absolute lifetime or idle timeout (they are refused
/// already; this keeps the table small).
async fn purge_dashboard_sessions(s: &AppState) {
    let idle = chrono::Duration::seconds(s.config.dashboard.session_idle_s as i64);
    let result =
        s.db.run(move |conn| {
            let now = chrono::Utc::now();
            Ok(crate::db::sessions::purge_expired(conn, now, now - idle)?)
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "expired dashboard sessions not purged");
    }
}

/// Creates monthly partitions ahead and drops expired ones, keeps signing keys rotated and
/// purges expired revocations. Failures are logged, not fatal: the schema may be behind
/// (readiness reports that) or the database briefly away.
pub(super) async fn run_maintenance(db: &Db, config: &Config, auth: &AuthService) {
    let retention = config.retention.clone();
    let master = auth.master.clone();
    let alg = config.auth.signing_alg;
    let rotation_days = config.auth.signing_key_rotation_days;
    let result = db
        .run(move |conn| {
            if !crate::db::migrations::pending(conn)?.is_empty() {
                return Ok(None);
            }
            let now = chrono::Utc::now();
            let parts = partitions::maintain(conn, now, &retention)?;
            let keys = crate::auth::rotation::maintain(conn, &master, alg, rotation_days, now)?;
            crate::db::revocations::purge_expired(conn)?;
            crate::db::ip_rules::delete_ended_bans(conn, now - chrono::Duration::days(31 * i64::from(retention.audit_months)))?;
            Ok(Some((parts, keys)))
        })
        .await;
    match result {
        Ok(Some((report, keys))) => {
            if !report.created.is_empty() || !report.dropped.is_empty() {
                tracing::info!(created = ?report.created, dropped = ?report.dropped, "partition maintenance done");
            }
            if !keys.is_empty() {
                tracing::info!(changes = ?keys, "signing keys rotated");
            }
        }
        Ok(None) => tracing::warn!("database schema is behind this binary; run `gatehouse migrate`"),
        Err(crate::db::DbError::Unavailable(e)) => tracing::warn!(error = %e, "maintenance skipped: the database is unavailable"),
        Err(e) => {
            tracing::error!(error = %e, "maintenance failed");
            maintenance_failed_alert(db, &e.to_string()).await;
        }
    }
}

/// On-call's alert for failed maintenance (signing-key rotation, partitions), once an hour at
/// most while it keeps failing.
async fn maintenance_failed_alert(db: &Db, error: &str) {
    let now = chrono::Utc::now();
    let key = format!("maintenance_failed:{}", now.format("%Y-%m-%dT%H"));
    let error: String = error.chars().take(300).collect();
    let payload = serde_json::json!({
        "state": "firing",
        "summary": "signing-key rotation or partition maintenance failed",
        "since": now.to_rfc3339(),
        "details": { "Error": error },
        "hint": "access tokens keep working with the current key and usage keeps landing in existing partitions for now; \
                 read the logs around this time and run `gatehouse signing-key list` to see the keys' states",
    });
    let result = db
        .run(move |conn| {
            let alert = crate::db::alerts::NewAlert {
                tenant: None,
                kind: "maintenance_failed",
                dedup_key: &key,
                severity: crate::domain::Severity::Critical,
                payload: &payload,
            };
            Ok(crate::db::alerts::enqueue(conn, &alert)?)
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "maintenance alert not recorded");
    }
}
