//! Alert rules over the live gateway, evaluated every `alerts.evaluate_ms` by a supervised loop.
//! Each rule yields the conditions true now, each with a key naming the rule and its object
//! (`worker_down:wkr_…`). The conditions are kept in `alert_states`, shared by every instance
//! and updated under row locks, so a condition fires once (one outbox row), repeats at most every
//! `alerts.repeat_interval_s` while it lasts, and resolves once with a second mail. The rows go
//! to the outbox in the same transaction as the state change; the `AlertMailer` sends them.
//!
//! Rules: a worker down (ejected or failing its health checks) for `alerts.worker_down_after_s`
//! (warning); a pool with no healthy worker for as long (critical); a pool whose queue-wait p95
//! over `alerts.window_s` stays above `alerts.queue_wait_p95_ms` for `alerts.saturated_for_s`
//! (warning); a pool whose worker failures reach `alerts.error_rate` of its finished requests
//! (warning); `alerts.auth_failures` failed authentications from one IP or against one client id
//! within the window (warning: possible credential stuffing). Quota thresholds are raised by the
//! quota accountant as it meters.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::actors::inference_queue::WorkerStatus;
use crate::auth::failures::FailureKey;
use crate::auth::service::AuthService;
use crate::config::AlertsConfig;
use crate::db::alerts::{self, AlertState, NewAlert};
use crate::db::{Db, DbError};
use crate::domain::{Severity, TenantId};
use crate::limits::RateLimiter;
use crate::workers::gateway::{Gateway, PoolStats, WorkerHealth};

/// The rules this evaluator owns (it resolves their conditions).
const RULES: [&str; 6] = ["worker_down", "pool_down", "queue_saturated", "error_rate", "auth_failures", "store_down"];

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

/// The conditions of the traffic rules, from each pool's recent statistics. `over_since`
/// remembers when each pool's queue wait went over its target (the rule needs it to last).
pub fn traffic_conditions(
    pools: &[PoolStats],
    config: &AlertsConfig,
    over_since: &mut HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut out = Vec::new();
    let target = std::time::Duration::from_millis(config.queue_wait_p95_ms);
    for p in pools {
        let key = format!("queue_saturated:{}", p.pool_id);
        match p.recent.wait_p95.filter(|w| *w > target) {
            Some(p95) => {
                let since = *over_since.entry(key.clone()).or_insert(now);
                if now - since >= chrono::Duration::seconds(config.saturated_for_s as i64) {
                    out.push(Condition {
                        key,
                        rule: "queue_saturated",
                        tenant: None,
                        severity: Severity::Warning,
                        since,
                        summary: format!("pool {} is saturated: p95 queue wait {} ms", p.pool, p95.as_millis()),
                        details: json!({ "Pool": p.pool, "Queue wait p95": format!("{} ms", p95.as_millis()), "Target": format!("{} ms", target.as_millis()) }),
                        hint: "requests wait for a worker slot longer than the target: add workers or slots, or lower the \
                               heaviest tenants' limits (gatehouse_queue_depth shows who waits)",
                    });
                }
            }
            None => drop(over_since.remove(&key)),
        }
        let (finished, failures) = (p.recent.finished, p.recent.worker_failures);
        let rate = if finished == 0 { 0.0 } else { f64::from(failures) / f64::from(finished) };
        if finished >= config.error_min_requests && rate >= config.error_rate {
            out.push(Condition {
                key: format!("error_rate:{}", p.pool_id),
                rule: "error_rate",
                tenant: None,
                severity: Severity::Warning,
                since: now,
                summary: format!("pool {}: {:.0}% of requests fail at the worker", p.pool, rate * 100.0),
                details: json!({ "Pool": p.pool, "Failed": format!("{failures} of {finished}"), "Window": format!("{} s", config.window_s) }),
                hint: "workers refuse connections, time out, answer 5xx or break streams: gatehouse_upstream_errors_total{kind} \
                       says which; check the model servers' logs",
            });
        }
    }
    out
}

/// The conditions of the authentication-failure rule.
pub fn auth_conditions(bursts: &[(FailureKey, u32)], config: &AlertsConfig, now: DateTime<Utc>) -> Vec<Condition> {
    bursts
        .iter()
        .map(|(key, n)| {
            let (id, what, details) = match key {
                FailureKey::Ip(ip) => (format!("ip:{ip}"), format!("from {ip}"), json!({ "IP": ip.to_string() })),
                FailureKey::Client(c) => (format!("client:{c}"), format!("against client {c}"), json!({ "Client": c })),
            };
            let mut details = details;
            details["Failures"] = json!(format!("{n} in {} s", config.window_s));
            Condition {
                key: format!("auth_failures:{id}"),
                rule: "auth_failures",
                tenant: None,
                severity: Severity::Warning,
                since: now,
                summary: format!("{n} failed authentications {what}"),
                details,
                hint: "possible credential stuffing: the audit log (outcome failure) has every attempt; block the source, or \
                       rotate the client's secret if it leaked",
            }
        })
        .collect()
}

/// Evaluates the rules on a tick; remembers what a rule needs to last.
#[derive(Default)]
pub struct RuleEngine {
    over_since: HashMap<String, DateTime<Utc>>,
    /// Since when PostgreSQL has not answered the evaluator (mailed once it answers again: the
    /// outbox lives there).
    db_down_since: Option<DateTime<Utc>>,
}

impl RuleEngine {
    /// One evaluation against the last health round. Nothing is resolved before this instance
    /// has seen a round (a fresh instance knows nothing yet).
    pub async fn evaluate(
        &mut self,
        db: &Db,
        gateway: &Gateway,
        auth: &AuthService,
        limiter: &RateLimiter,
        config: &AlertsConfig,
    ) -> Result<(), DbError> {
        let Some(health) = gateway.worker_health() else { return Ok(()) };
        let now = Utc::now();
        let down_after = chrono::Duration::seconds(config.worker_down_after_s as i64);
        let mut conditions = health_conditions(&health, down_after, now);
        conditions.extend(traffic_conditions(&gateway.pool_stats(), config, &mut self.over_since, now));
        conditions.extend(auth_conditions(&auth.failures.bursts(config.auth_failures), config, now));
        conditions.extend(redis_condition(limiter.redis_failing_since(), config.store_down_after_s, now));
        let repeat = chrono::Duration::seconds(config.repeat_interval_s as i64);
        let outage = self.db_down_since.map(|since| (since, now));
        let result = db
            .run(move |conn| {
                use diesel::Connection;
                conn.transaction(|conn| {
                    if let Some((since, back)) = outage {
                        database_outage(conn, since, back)?;
                    }
                    apply(conn, &conditions, now, repeat)
                })
                .map_err(DbError::from)
            })
            .await;
        match &result {
            Ok(()) => self.db_down_since = None,
            Err(DbError::Unavailable(_)) => drop(self.db_down_since.get_or_insert(now)),
            Err(_) => {}
        }
        result
    }
}

/// Redis failing every admission for `after_s` (the outbox is in PostgreSQL, so this is mailed
/// at once).
fn redis_condition(failing_since: Option<DateTime<Utc>>, after_s: u64, now: DateTime<Utc>) -> Option<Condition> {
    let since = failing_since.filter(|s| now - *s >= chrono::Duration::seconds(after_s as i64))?;
    Some(Condition {
        key: "store_down:redis".into(),
        rule: "store_down",
        tenant: None,
        severity: Severity::Critical,
        since,
        summary: "Redis is unreachable: rate limits are not shared".into(),
        details: json!({ "Store": "Redis" }),
        hint: "redis.on_error applies meanwhile: limits per instance (local) or 503s (closed); check the Redis server and \
               the network to it",
    })
}

/// PostgreSQL did not answer from `since` until `back`: mailed now that the outbox is reachable.
fn database_outage(conn: &mut diesel::PgConnection, since: DateTime<Utc>, back: DateTime<Utc>) -> diesel::QueryResult<bool> {
    let seconds = (back - since).num_seconds().max(1);
    let payload = json!({
        "state": "resolved",
        "summary": format!("PostgreSQL was unreachable for about {seconds} s"),
        "since": since.to_rfc3339(),
        "details": { "Store": "PostgreSQL", "Back at": back.to_rfc3339() },
        "hint": "requests were answered from caches, then with 503; usage waited in memory. Check the database server's \
                 logs for the cause",
    });
    let key = format!("store_down:postgresql:{}", since.timestamp_millis());
    alerts::enqueue(conn, &NewAlert { tenant: None, kind: "store_down", dedup_key: &key, severity: Severity::Critical, payload: &payload })
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
