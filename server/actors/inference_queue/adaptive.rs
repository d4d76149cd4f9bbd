//! Adaptive admission: when a pool is saturated, each tenant's queue is held to its fair share,
//! so a flood is refused at once (429 `pool_saturated`, with `Retry-After`) instead of waiting
//! until its deadline, and the requests that are admitted still start within the pool's target.
//!
//! Every `CONTROL_PERIOD` the queue measures its pressure: the largest of the p95 wait of the
//! requests granted over the last `PRESSURE_WINDOW`, the age of the oldest request still waiting,
//! and the wait a request arriving now can expect (the requests ahead of it over the recent grant
//! rate). The last two see a backlog building before anyone leaves it, which keeps the waits
//! under the target rather than reacting once they have passed it. The pool is saturated while
//! the measured waits are above its target (`queue_wait_target_ms`), or the expected wait is
//! above the part of the target the allowed queue aims at (`HEADROOM`).
//!
//! The queue the target allows is `target × grant rate × HEADROOM` requests; a tenant's fair share
//! of it is in proportion to its plan weight among the tenants that have requests waiting. While
//! saturated, a tenant with more than its share waiting gets a limit on its waiting requests, cut
//! by `DECREASE` each period down to its share (multiplicative decrease); while not, every limit
//! grows by a quarter of the tenant's share each period (additive increase), and all limits go
//! once the pool's queue is empty. A tenant under its share is never refused, so a light tenant
//! keeps its share whatever a heavy one sends.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::domain::TenantId;

/// How often the limits are adjusted.
pub(super) const CONTROL_PERIOD: Duration = Duration::from_millis(50);
/// How far back the grant rate and the recent waits look.
const PRESSURE_WINDOW: Duration = Duration::from_secs(1);
/// The share of the target the allowed queue aims at (the rest absorbs bursts between periods).
const HEADROOM: f64 = 0.5;
/// The multiplicative decrease per period while saturated.
const DECREASE: f64 = 0.5;
/// Grants kept for the rate and wait estimates.
const MAX_SAMPLES: usize = 10_000;

/// One pool's adaptive admission state (owned by its queue actor).
#[derive(Debug)]
pub(super) struct Adaptive {
    /// None: adaptive admission is off for this pool.
    target: Option<Duration>,
    /// Waiting-request limits of the tenants being held back.
    limits: HashMap<TenantId, f64>,
    /// The last weight each waiting tenant came with.
    weights: HashMap<TenantId, u32>,
    /// (granted at, waited) of recent grants.
    grants: VecDeque<(Instant, Duration)>,
    saturated: bool,
}

/// What the queue reports about its adaptive admission.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdaptiveStatus {
    pub target: Option<Duration>,
    pub saturated: bool,
    /// (tenant, waiting-request limit) of the tenants held back now.
    pub limits: Vec<(String, f64)>,
}

impl Adaptive {
    pub(super) fn new(target: Option<Duration>) -> Adaptive {
        Adaptive { target, limits: HashMap::new(), weights: HashMap::new(), grants: VecDeque::new(), saturated: false }
    }

    /// Whether `tenant`, with `waiting` requests in the queue already, may queue one more.
    pub(super) fn admits(&mut self, tenant: &TenantId, weight: u32, waiting: usize) -> bool {
        if self.target.is_none() {
            return true;
        }
        self.weights.insert(tenant.clone(), weight.max(1));
        self.limits.get(tenant).is_none_or(|limit| (waiting as f64) < limit.floor().max(1.0))
    }

    /// A request left the queue for a worker after waiting `waited`.
    pub(super) fn granted(&mut self, now: Instant, waited: Duration) {
        if self.target.is_none() {
            return;
        }
        if self.grants.len() >= MAX_SAMPLES {
            self.grants.pop_front();
        }
        self.grants.push_back((now, waited));
    }

    /// Adjusts the limits; `waiting` is each tenant's count of waiting requests, `oldest` the
    /// enqueue time of the oldest waiting request.
    pub(super) fn adjust<'a>(&mut self, now: Instant, oldest: Option<Instant>, waiting: impl Iterator<Item = (&'a TenantId, usize)>) {
        let Some(target) = self.target else { return };
        while self.grants.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > PRESSURE_WINDOW) {
            self.grants.pop_front();
        }
        let waiting: Vec<(&TenantId, usize)> = waiting.filter(|(_, n)| *n > 0).collect();
        if waiting.is_empty() {
            self.limits.clear();
            self.weights.clear();
            self.saturated = false;
            return;
        }
        let oldest_age = oldest.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let rate = self.grants.len() as f64 / PRESSURE_WINDOW.as_secs_f64();
        let queued: usize = waiting.iter().map(|(_, n)| n).sum();
        let expected = if rate > 0.0 { Duration::from_secs_f64(queued as f64 / rate) } else { Duration::ZERO };
        // The expected wait is held to the allowed queue's share of the target: by the time a
        // backlog's waits pass the target itself, the requests already in it would wait longer.
        self.saturated = self.recent_p95().max(oldest_age) > target || expected.as_secs_f64() > target.as_secs_f64() * HEADROOM;
        let allowed = (rate * target.as_secs_f64() * HEADROOM).max(1.0);
        let weight = |t: &TenantId| f64::from(self.weights.get(t).copied().unwrap_or(1));
        let total_weight: f64 = waiting.iter().map(|(t, _)| weight(t)).sum();
        let mut limits = std::mem::take(&mut self.limits);
        for (tenant, n) in &waiting {
            let share = (allowed * weight(tenant) / total_weight).max(1.0);
            let current = limits.get(*tenant).copied();
            let next = if self.saturated {
                // Cut only tenants above their share; the cut never goes below the share.
                match current {
                    Some(limit) => Some((limit * DECREASE).max(share)),
                    None if *n as f64 > share => Some((*n as f64 * DECREASE).max(share)),
                    None => None,
                }
            } else {
                current.map(|limit| limit + (share / 4.0).max(1.0))
            };
            match next {
                Some(limit) => limits.insert((*tenant).clone(), limit),
                None => limits.remove(*tenant),
            };
        }
        // A tenant that stopped waiting has nothing to hold back.
        limits.retain(|t, _| waiting.iter().any(|(w, _)| *w == t));
        self.weights.retain(|t, _| waiting.iter().any(|(w, _)| *w == t));
        self.limits = limits;
    }

    fn recent_p95(&self) -> Duration {
        let mut waits: Vec<Duration> = self.grants.iter().map(|(_, w)| *w).collect();
        if waits.is_empty() {
            return Duration::ZERO;
        }
        let rank = (waits.len() * 95).div_ceil(100).saturating_sub(1).min(waits.len() - 1);
        *waits.select_nth_unstable(rank).1
    }

    pub(super) fn status(&self) -> AdaptiveStatus {
        let mut limits: Vec<(String, f64)> = self.limits.iter().map(|(t, l)| (t.to_string(), l.floor().max(1.0))).collect();
        limits.sort_by(|a, b| a.0.cmp(&b.0));
        AdaptiveStatus { target: self.target, saturated: self.saturated, limits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn grants(a: &mut Adaptive, now: Instant, count: usize, waited: Duration) {
        for _ in 0..count {
            a.granted(now, waited);
        }
    }

    #[test]
    fn a_tenant_above_its_share_is_cut_down_to_it_and_a_light_one_never_is() {
        let (heavy, light) = (TenantId::generate(), TenantId::generate());
        let mut a = Adaptive::new(Some(200 * MS));
        let start = Instant::now();
        assert!(a.admits(&heavy, 1, 500) && a.admits(&light, 1, 2), "nothing is limited before the pool is saturated");
        // 400 grants a second, waits far above the 200 ms target: allowed queue = 400 × 0.2 × 0.5 = 40.
        grants(&mut a, start, 400, 900 * MS);
        a.adjust(start, Some(start - Duration::from_secs(1)), [(&heavy, 500), (&light, 2)].into_iter());
        assert!(a.status().saturated);
        assert_eq!(a.status().limits, vec![(heavy.to_string(), 250.0)], "first cut: half of what it has waiting");
        for _ in 0..10 {
            a.adjust(start, Some(start - Duration::from_secs(1)), [(&heavy, 500), (&light, 2)].into_iter());
        }
        assert_eq!(a.status().limits, vec![(heavy.to_string(), 20.0)], "never below its share (40 / 2 tenants)");
        assert!(!a.admits(&heavy, 1, 20) && a.admits(&heavy, 1, 19));
        assert!(a.admits(&light, 1, 2), "the light tenant is under its share");
    }

    #[test]
    fn limits_grow_back_when_pressure_eases_and_go_when_the_queue_empties() {
        let heavy = TenantId::generate();
        let mut a = Adaptive::new(Some(200 * MS));
        let start = Instant::now();
        grants(&mut a, start, 400, 900 * MS);
        a.adjust(start, Some(start - Duration::from_secs(1)), [(&heavy, 100)].into_iter());
        assert_eq!(a.status().limits, vec![(heavy.to_string(), 50.0)]);
        // A second later the recent grants waited little and the oldest waiter is fresh.
        let later = start + Duration::from_millis(1500);
        grants(&mut a, later, 400, 10 * MS);
        a.adjust(later, Some(later - 10 * MS), [(&heavy, 30)].into_iter());
        assert!(!a.status().saturated);
        assert_eq!(a.status().limits, vec![(heavy.to_string(), 60.0)], "additive increase: a quarter of its share (40)");
        a.adjust(later, None, std::iter::empty());
        assert_eq!(a.status().limits, vec![], "an empty queue lifts every limit");
    }

    #[test]
    fn weights_divide_the_allowed_queue() {
        let (big, small) = (TenantId::generate(), TenantId::generate());
        let mut a = Adaptive::new(Some(200 * MS));
        let start = Instant::now();
        assert!(a.admits(&big, 3, 0) && a.admits(&small, 1, 0));
        grants(&mut a, start, 400, 900 * MS);
        for _ in 0..10 {
            a.adjust(start, Some(start - Duration::from_secs(1)), [(&big, 500), (&small, 500)].into_iter());
        }
        let limits: HashMap<String, f64> = a.status().limits.into_iter().collect();
        assert_eq!(limits[&big.to_string()], 30.0);
        assert_eq!(limits[&small.to_string()], 10.0);
    }

    #[test]
    fn off_without_a_target() {
        let t = TenantId::generate();
        let mut a = Adaptive::new(None);
        let now = Instant::now();
        grants(&mut a, now, 400, Duration::from_secs(5));
        a.adjust(now, Some(now - Duration::from_secs(9)), [(&t, 10_000)].into_iter());
        assert_eq!(a.status(), AdaptiveStatus::default());
        assert!(a.admits(&t, 1, 10_000));
    }
}
