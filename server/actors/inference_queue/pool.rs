//! The workers of one pool as the queue sees them: address, slots, outstanding requests, the
//! circuit breaker's health state and the worker's own load reading.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::LOAD_REPORT_TTL;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    pub id: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub slots: u32,
    pub draining: bool,
}

/// A worker as status reports and the `gatehouse_worker_up` gauge show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStatus {
    Healthy,
    HalfOpen,
    Ejected,
    Draining,
}

impl WorkerStatus {
    pub const ALL: [WorkerStatus; 4] = [WorkerStatus::Healthy, WorkerStatus::HalfOpen, WorkerStatus::Ejected, WorkerStatus::Draining];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Healthy => "healthy",
            WorkerStatus::HalfOpen => "half_open",
            WorkerStatus::Ejected => "ejected",
            WorkerStatus::Draining => "draining",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Ejected { until: Instant },
    HalfOpen { probing: bool },
}

/// A worker's identity and address as grants hand them out (shared, not copied per request).
#[derive(Debug)]
pub(super) struct Target {
    pub(super) id: Arc<str>,
    pub(super) base_url: Arc<str>,
    /// `base_url` parsed once, with a trailing `/` to resolve request paths against.
    pub(super) base: Option<Arc<reqwest::Url>>,
    pub(super) api_key: Option<Arc<str>>,
}

impl Target {
    pub(super) fn of(spec: &WorkerSpec) -> Target {
        Target {
            id: spec.id.as_str().into(),
            base_url: spec.base_url.as_str().into(),
            base: reqwest::Url::parse(&format!("{}/", spec.base_url.trim_end_matches('/'))).ok().map(Arc::new),
            api_key: spec.api_key.as_deref().map(Into::into),
        }
    }
}

#[derive(Debug)]
pub(super) struct PoolWorker {
    pub(super) spec: WorkerSpec,
    pub(super) target: Target,
    pub(super) outstanding: u32,
    pub(super) failures: u32,
    pub(super) health: Health,
    /// Removed from the pool; kept only until its in-flight requests finish.
    pub(super) removed: bool,
    /// The worker's last load reading, if it exposes one.
    pub(super) reported: Option<LoadReading>,
}

/// Requests a worker said it was running or holding (vLLM's `num_requests_running` +
/// `num_requests_waiting`), and how many of them were ours when it said so.
#[derive(Debug, Clone, Copy)]
pub(super) struct LoadReading {
    pub(super) busy: u32,
    pub(super) ours_then: u32,
    pub(super) at: Instant,
}

impl PoolWorker {
    /// Outstanding work relative to slots: ours, plus what the worker reported beyond ours
    /// (other gateways' requests, or work it still holds) while the reading is fresh.
    pub(super) fn load(&self, now: Instant) -> f64 {
        let others = self
            .reported
            .filter(|r| now.saturating_duration_since(r.at) < LOAD_REPORT_TTL)
            .map_or(0, |r| r.busy.saturating_sub(r.ours_then));
        f64::from(self.outstanding + others) / f64::from(self.spec.slots.max(1))
    }

    pub(super) fn can_take(&self, now: Instant) -> bool {
        if self.spec.draining || self.outstanding >= self.spec.slots {
            return false;
        }
        match self.health {
            Health::Healthy => true,
            Health::Ejected { until } => until <= now && self.outstanding == 0,
            Health::HalfOpen { probing } => !probing && self.outstanding == 0,
        }
    }
}

pub(super) fn record_failure(w: &mut PoolWorker, eject_for: Duration, eject_after: u32) {
    w.failures += 1;
    let eject = matches!(w.health, Health::HalfOpen { .. }) || w.failures >= eject_after;
    if eject {
        tracing::warn!(worker.id = %w.spec.id, failures = w.failures, "worker ejected by the circuit breaker");
        w.health = Health::Ejected { until: Instant::now() + eject_for };
    }
}
