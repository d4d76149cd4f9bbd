//! The in-memory store: one mutex over every counter of this instance. A check and its update
//! happen under one lock, so concurrent requests cannot both take the last unit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Check, CounterState, Dimension, Settle, Verdict, WINDOW};

/// Retry hint for a full concurrency limit: slots free when requests finish, not on a clock.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Window {
    /// (ms since the store's epoch, request id, amount), oldest first.
    entries: VecDeque<(u64, String, u64)>,
    total: u64,
}

impl Window {
    fn expire(&mut self, now: u64) {
        let window = WINDOW.as_millis() as u64;
        while let Some((t, _, amount)) = self.entries.front() {
            if t + window > now {
                break;
            }
            self.total -= amount;
            self.entries.pop_front();
        }
    }

    /// Time until the oldest entry leaves the window.
    fn reset(&self, now: u64) -> Duration {
        self.entries.front().map_or(Duration::ZERO, |(t, _, _)| Duration::from_millis((t + WINDOW.as_millis() as u64).saturating_sub(now)))
    }

    /// Time until enough entries leave for `amount` more to fit under `limit`.
    fn retry_after(&self, now: u64, limit: u64, amount: u64) -> Duration {
        let need = (self.total + amount).saturating_sub(limit);
        let mut freed = 0;
        for (t, _, a) in &self.entries {
            freed += a;
            if freed >= need {
                return Duration::from_millis((t + WINDOW.as_millis() as u64).saturating_sub(now).max(1));
            }
        }
        WINDOW
    }
}

/// Idle windows are swept once the map holds more than this many (or twice what the last sweep
/// left, whichever is more).
const SWEEP_FLOOR: usize = 10_000;

struct State {
    windows: HashMap<String, Window>,
    leases: HashMap<String, HashSet<String>>,
    /// The map size that triggers the next sweep.
    sweep_at: usize,
}

impl Default for State {
    fn default() -> Self {
        State { windows: HashMap::new(), leases: HashMap::new(), sweep_at: SWEEP_FLOOR }
    }
}

pub struct LocalStore {
    epoch: Instant,
    state: Mutex<State>,
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalStore {
    pub fn new() -> LocalStore {
        LocalStore { epoch: Instant::now(), state: Mutex::new(State::default()) }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The counters' state for `checks`, taking nothing (for the headers of an answer that was
    /// refused before admission).
    pub fn peek(&self, checks: &[Check]) -> Vec<CounterState> {
        let now = self.now();
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        measure(&mut guard, now, checks).0
    }

    pub fn admit(&self, id: &str, checks: &[Check]) -> Verdict {
        let now = self.now();
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let (mut states, refused) = measure(state, now, checks);
        if let Some((check, retry_after)) = refused {
            return Verdict::Refused { check, retry_after, states };
        }
        for (c, s) in checks.iter().zip(states.iter_mut()) {
            if c.dim.is_window() {
                let w = state.windows.entry(c.key.clone()).or_default();
                w.entries.push_back((now, id.to_owned(), c.amount));
                w.total += c.amount;
                if s.reset.is_zero() {
                    s.reset = WINDOW;
                }
            } else {
                state.leases.entry(c.key.clone()).or_default().insert(id.to_owned());
            }
            s.remaining = s.remaining.saturating_sub(c.amount);
        }
        // Forget idle counters now and then so the map does not grow with every tenant ever seen.
        // The next sweep waits until the map has doubled again: with more live windows than the
        // floor (10,000 tenants active within the minute), sweeping at every admission cost a
        // scan of all of them under this lock; doubling keeps it O(1) per admission on average.
        if state.windows.len() > state.sweep_at {
            state.windows.retain(|_, w| {
                w.expire(now);
                !w.entries.is_empty()
            });
            state.sweep_at = (state.windows.len() * 2).max(SWEEP_FLOOR);
        }
        Verdict::Admitted { states }
    }

    pub fn settle(&self, ops: Vec<Settle>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            match op {
                Settle::Reconcile { key, id, amount } => {
                    let Some(w) = state.windows.get_mut(&key) else { continue };
                    if let Some(entry) = w.entries.iter_mut().rev().find(|(_, i, _)| *i == id) {
                        w.total = w.total - entry.2 + amount;
                        entry.2 = amount;
                    }
                }
                Settle::Release { key, id } => {
                    if let Some(l) = state.leases.get_mut(&key) {
                        l.remove(&id);
                        if l.is_empty() {
                            state.leases.remove(&key);
                        }
                    }
                }
            }
        }
    }

    /// The amount a window holds now (tests and the benchmark).
    pub fn used(&self, key: &str, dim: Dimension) -> u64 {
        let now = self.now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if dim.is_window() {
            state.windows.get_mut(key).map_or(0, |w| {
                w.expire(now);
                w.total
            })
        } else {
            state.leases.get(key).map_or(0, |l| l.len() as u64)
        }
    }
}

/// Each check's counter after expiring old entries, and the first check that cannot take its
/// amount (with when it could).
fn measure(state: &mut State, now: u64, checks: &[Check]) -> (Vec<CounterState>, Option<(usize, Duration)>) {
    let mut states = Vec::with_capacity(checks.len());
    let mut refused = None;
    for (i, c) in checks.iter().enumerate() {
        let (used, reset, retry) = if c.dim.is_window() {
            let w = state.windows.entry(c.key.clone()).or_default();
            w.expire(now);
            let retry = (w.total + c.amount > c.limit).then(|| w.retry_after(now, c.limit, c.amount));
            (w.total, w.reset(now), retry)
        } else {
            let held = state.leases.get(&c.key).map_or(0, |l| l.len() as u64);
            (held, Duration::ZERO, (held + 1 > c.limit).then_some(CONCURRENCY_RETRY))
        };
        if let Some(retry_after) = retry {
            refused.get_or_insert((i, retry_after));
        }
        states.push(CounterState { dim: c.dim, limit: c.limit, remaining: c.limit.saturating_sub(used), reset });
    }
    (states, refused)
}

#[cfg(test)]
mod tests {
    use super::super::Scope;
    use super::*;

    fn check(dim: Dimension, limit: u64, amount: u64) -> Check {
        Check { scope: Scope::Credential, dim, key: format!("c:k:{}", dim.as_str()), limit, amount }
    }

    #[test]
    fn admits_exactly_the_limit_then_refuses() {
        let store = LocalStore::new();
        let checks = [check(Dimension::Requests, 5, 1)];
        let admitted = (0..20).filter(|i| matches!(store.admit(&i.to_string(), &checks), Verdict::Admitted { .. })).count();
        assert_eq!(admitted, 5);
        match store.admit("x", &checks) {
            Verdict::Refused { retry_after, states, .. } => {
                assert!(retry_after <= WINDOW && retry_after > Duration::ZERO);
                assert_eq!(states[0].remaining, 0);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_request_takes_nothing_from_any_counter() {
        let store = LocalStore::new();
        let checks = [check(Dimension::Requests, 10, 1), check(Dimension::Tokens, 100, 80)];
        assert!(matches!(store.admit("a", &checks), Verdict::Admitted { .. }));
        assert!(matches!(store.admit("b", &checks), Verdict::Refused { check: 1, .. }));
        assert_eq!(store.used("c:k:requests", Dimension::Requests), 1);
        assert_eq!(store.used("c:k:tokens", Dimension::Tokens), 80);
    }

    #[test]
    fn reconcile_releases_the_unused_reservation() {
        let store = LocalStore::new();
        let checks = [check(Dimension::Tokens, 100, 80)];
        assert!(matches!(store.admit("a", &checks), Verdict::Admitted { .. }));
        store.settle(vec![Settle::Reconcile { key: "c:k:tokens".into(), id: "a".into(), amount: 15 }]);
        assert_eq!(store.used("c:k:tokens", Dimension::Tokens), 15);
        assert!(matches!(store.admit("b", &checks), Verdict::Admitted { .. }));
    }

    #[test]
    fn concurrency_slots_come_back_on_release() {
        let store = LocalStore::new();
        let checks = [check(Dimension::Concurrent, 1, 1)];
        assert!(matches!(store.admit("a", &checks), Verdict::Admitted { .. }));
        assert!(matches!(store.admit("b", &checks), Verdict::Refused { .. }));
        store.settle(vec![Settle::Release { key: "c:k:concurrent".into(), id: "a".into() }]);
        assert!(matches!(store.admit("b", &checks), Verdict::Admitted { .. }));
    }

    #[test]
    fn idle_windows_are_swept_and_live_ones_wait_for_the_map_to_double() {
        // The store started five minutes ago: windows whose only entry is from its start are idle.
        let store = LocalStore { epoch: Instant::now() - Duration::from_secs(300), state: Mutex::new(State::default()) };
        let now = store.now();
        let window = |at: u64| Window { entries: VecDeque::from([(at, "r".to_owned(), 1)]), total: 1 };
        {
            let mut s = store.state.lock().unwrap();
            s.windows.extend((0..15_000).map(|i| (format!("t:idle{i}:requests"), window(0))));
            s.windows.extend((0..12_000).map(|i| (format!("t:live{i}:requests"), window(now))));
        }
        let admit = |key: String| store.admit("a", &[Check { scope: Scope::Tenant, dim: Dimension::Requests, key, limit: 100, amount: 1 }]);
        let sizes = |store: &LocalStore| {
            let s = store.state.lock().unwrap();
            (s.windows.len(), s.sweep_at)
        };
        assert!(matches!(admit("t:live0:requests".into()), Verdict::Admitted { .. }));
        assert_eq!(sizes(&store), (12_000, 24_000), "the idle windows are gone, the live ones kept");
        // 12,000 more tenants become active: no sweep until the map passes twice what was left.
        for i in 0..12_000 {
            admit(format!("t:new{i}:requests"));
        }
        assert_eq!(sizes(&store), (24_000, 24_000));
        admit("t:one-more:requests".into());
        assert_eq!(sizes(&store), (24_001, 48_002), "all live: kept, and the next sweep waits for twice as many");
    }
}
