//! Alert rules over the live gateway, evaluated every `alerts.evaluate_ms` by a supervised loop.
//! Each rule yields the conditions true now, each with a key naming the rule and its object
//! (`worker_down:wkr_…`). The conditions are kept in `alert_states`, shared by every instance
//! and updated under row locks, so a condition fires once (one outbox row), repeats at most every
//! `alerts.repeat_interval_s` while it lasts, and resolves once with a second mail. The rows go
//! to the outbox in the same transaction as the state change; the `AlertMailer` sends them.
//!
//! Rules: a worker down (ejected or failing its health checks) for `alerts.worker_down_after_s`
//! (warning), and a pool with no healthy worker for as long (critical). Quota thresholds are
//! raised by the quota accountant as it meters.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::actors::inference_queue::WorkerStatus;
use crate::config::AlertsConfig;
use crate::db::alerts::{self, AlertState, NewAlert};
use crate::db::{Db, DbError};
use crate::domain::{Severity, TenantId};
use crate::workers::gateway::{Gateway, WorkerHealth};

/// The rules this evaluator owns (it resolves their conditions).
const RULES: [&str; 2] = ["worker_down", "pool_down"];

/// A condition true now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub key: String,
    pub rule: &'static str,
    pub tenant: Option<TenantId>,
    pub severity: Severity,
    pub since: DateTime<Utc>,
    pub summary: String,
    pub details: Value,
    pub hint: &'static str,
}

/// The conditions of the health rules, from the last health round.
pub fn health_conditions(health: &[WorkerHealth], down_after: chrono::Duration, now: DateTime<Utc>) -> Vec<Condition> {
    let mut out = Vec::new();
    for w in health {
        let Some(since) = w.down_since.filter(|s| now - *s >= down_after) else { continue };
        out.push(Condition {
            key: format!("worker_down:{}", w.worker),
            rule: "worker_down",
            tenant: None,
            severity: Severity::Warning,
            since,
            summary: format!("worker {} in pool {} is down", w.worker, w.pool),
            details: json!({ "Pool": w.pool, "Worker": w.worker, "URL": w.base_url, "State": w.status.as_str() }),
            hint: "the worker fails its health checks or its requests (circuit breaker open): check the model server \
                   process and its GPU, then its /health endpoint",
        });
    }
    let mut pools: Vec<&str> = health.iter().map(|w| w.pool_id.as_str()).collect();
    pools.sort_unstable();
    pools.dedup();
    for pool in pools {
        let serving: Vec<&WorkerHealth> = health.iter().filter(|w| w.pool_id == pool && w.status != WorkerStatus::Draining).collect();
        let all_down = !serving.is_empty() && serving.iter().all(|w| w.down_since.is_some_and(|s| now - s >= down_after));
        if !all_down {
            continue;
        }
        let since = serving.iter().filter_map(|w| w.down_since).max().unwrap_or(now);
        let name = serving[0].pool.clone();
        out.push(Condition {
            key: format!("pool_down:{pool}"),
            rule: "pool_down",
            tenant: None,
            severity: Severity::Critical,
            since,
            summary: format!("pool {name} has no healthy worker"),
            details: json!({ "Pool": name, "Workers down": serving.len().to_string() }),
            hint: "every request for this pool's models waits out its queue deadline and gets 503: bring a worker \
                   back, or add one with `gatehouse worker add`",
        });
    }
    out
}

/// One evaluation: the health rules against the last health round. Nothing is resolved before
/// this instance has seen a round (a fresh instance knows nothing yet).
pub async fn evaluate(db: &Db, gateway: &Gateway, config: &AlertsConfig) -> Result<(), DbError> {
    let Some(health) = gateway.worker_health() else { return Ok(()) };
    let now = Utc::now();
    let down_after = chrono::Duration::seconds(config.worker_down_after_s as i64);
    let conditions = health_conditions(&health, down_after, now);
    let repeat = chrono::Duration::seconds(config.repeat_interval_s as i64);
    db.run(move |conn| {
        use diesel::Connection;
        conn.transaction(|conn| apply(conn, &conditions, now, repeat)).map_err(DbError::from)
    })
    .await
}

/// Fires new conditions, repeats lasting ones when due, resolves those that cleared.
fn apply(
    conn: &mut diesel::PgConnection,
    conditions: &[Condition],
    now: DateTime<Utc>,
    repeat: chrono::Duration,
) -> diesel::QueryResult<()> {
    for c in conditions {
        let payload = json!({ "rule": c.rule, "summary": c.summary, "since": c.since.to_rfc3339(), "details": c.details, "hint": c.hint });
        match alerts::lock_state(conn, &c.key)? {
            Some(s) if s.resolved_at.is_none() => {
                if now - s.last_notified_at >= repeat {
                    alerts::renotified(conn, &c.key, now)?;
                    let key = format!("{}:repeat:{}:{}", c.key, s.started_at.timestamp_millis(), s.notifications + 1);
                    enqueue(conn, c, &key, "repeat", &payload)?;
                }
            }
            _ => {
                let state = AlertState {
                    key: c.key.clone(),
                    rule: c.rule.into(),
                    tenant_id: c.tenant.as_ref().map(ToString::to_string),
                    severity: c.severity.as_str().into(),
                    started_at: now,
                    last_notified_at: now,
                    notifications: 1,
                    resolved_at: None,
                    payload: payload.clone(),
                };
                alerts::open_state(conn, &state)?;
                enqueue(conn, c, &format!("{}:firing:{}", c.key, now.timestamp_millis()), "firing", &payload)?;
            }
        }
    }
    for open in alerts::lock_open_states(conn, &RULES)? {
        if conditions.iter().any(|c| c.key == open.key) {
            continue;
        }
        alerts::resolve_state(conn, &open.key, now)?;
        let mut payload = open.payload.clone();
        payload["state"] = json!("resolved");
        let tenant = open.tenant_id.clone().map(TenantId::from_trusted);
        let severity = open.severity.parse().unwrap_or(Severity::Warning);
        let key = format!("{}:resolved:{}", open.key, open.started_at.timestamp_millis());
        alerts::enqueue(conn, &NewAlert { tenant: tenant.as_ref(), kind: &open.rule, dedup_key: &key, severity, payload: &payload })?;
    }
    Ok(())
}

fn enqueue(conn: &mut diesel::PgConnection, c: &Condition, key: &str, state: &str, payload: &Value) -> diesel::QueryResult<bool> {
    let mut payload = payload.clone();
    payload["state"] = json!(state);
    alerts::enqueue(conn, &NewAlert { tenant: c.tenant.as_ref(), kind: c.rule, dedup_key: key, severity: c.severity, payload: &payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(pool: &str, id: &str, status: WorkerStatus, down_s: Option<i64>, now: DateTime<Utc>) -> WorkerHealth {
        WorkerHealth {
            pool_id: format!("pool_{pool}"),
            pool: pool.into(),
            worker: id.into(),
            base_url: format!("http://{id}"),
            status,
            down_since: down_s.map(|s| now - chrono::Duration::seconds(s)),
        }
    }

    #[test]
    fn a_worker_alerts_once_down_long_enough_and_a_pool_with_none_healthy_is_critical() {
        let now = Utc::now();
        let after = chrono::Duration::seconds(60);
        let health = vec![
            worker("qwen", "w1", WorkerStatus::Ejected, Some(90), now),
            worker("qwen", "w2", WorkerStatus::HalfOpen, Some(30), now),
            worker("align", "a1", WorkerStatus::Ejected, Some(120), now),
            worker("align", "a2", WorkerStatus::Draining, None, now),
        ];
        let keys: Vec<(String, Severity)> = health_conditions(&health, after, now).into_iter().map(|c| (c.key, c.severity)).collect();
        assert_eq!(
            keys,
            vec![
                ("worker_down:w1".into(), Severity::Warning),
                ("worker_down:a1".into(), Severity::Warning),
                ("pool_down:pool_align".into(), Severity::Critical),
            ],
            "w2 is not down long enough, so qwen still has time; align's only serving worker is down"
        );
    }
}
