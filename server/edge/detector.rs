//! Attack detection for one instance: per source address, requests, failed authentications and
//! other 4xx answers in a sliding window (two fixed windows, the older one weighted by how much of
//! it still overlaps), and the set of addresses banned right now. Pure and in memory: the ban
//! check on every request is one read-locked hash lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What an answer counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    RequestRate,
    AuthFailures,
    ClientErrors,
}

impl Reason {
    pub const ALL: [Reason; 3] = [Reason::RequestRate, Reason::AuthFailures, Reason::ClientErrors];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RequestRate => "request_rate",
            Reason::AuthFailures => "auth_failures",
            Reason::ClientErrors => "client_errors",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts of one address in one fixed window: requests, auth failures, client errors.
pub type Counts = [u64; 3];

/// The counts an answer adds: every answer is a request; a 401 is a failed authentication; any
/// other 4xx but 429 (which bans and limits answer themselves) is a client error.
pub fn counts_for(status: u16) -> Counts {
    match status {
        401 => [1, 1, 0],
        429 => [1, 0, 0],
        400..=499 => [1, 0, 1],
        _ => [1, 0, 0],
    }
}

#[derive(Default)]
struct Tracked {
    window: u64,
    current: Counts,
    previous: Counts,
    /// Counted here since the last sync (shared through Redis).
    unsynced: Counts,
    /// A ban was asked for in this window already.
    reported: bool,
}

/// The sliding-window estimate: the current window plus the part of the previous one that the
/// sliding window still covers.
pub fn estimate(current: u64, previous: u64, progress: f64) -> u64 {
    current + (previous as f64 * (1.0 - progress)).round() as u64
}

pub struct Detector {
    window_ms: u64,
    limits: Counts,
    max_tracked: usize,
    tracked: Mutex<HashMap<IpAddr, Tracked>>,
    /// The window in which a sweep last left `tracked` full. Entries age only when the window
    /// rolls, so sweeping again before then frees nothing: without this, every request from a
    /// new address during a flood from more addresses than `max_tracked` scanned the whole map
    /// under the lock.
    full_in_window: AtomicU64,
    /// Banned address → end of the ban (milliseconds since the epoch).
    bans: RwLock<HashMap<IpAddr, u64>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

impl Detector {
    pub fn new(window: Duration, limits: Counts, max_tracked: usize) -> Detector {
        Detector {
            window_ms: window.as_millis().max(1) as u64,
            limits,
            max_tracked,
            tracked: Mutex::default(),
            full_in_window: AtomicU64::new(u64::MAX),
            bans: RwLock::default(),
        }
    }

    /// The fixed window `at` falls in, and how far into it (0..1). Wall-clock based, so every
    /// instance numbers windows alike.
    pub fn window_at(&self, at_ms: u64) -> (u64, f64) {
        (at_ms / self.window_ms, (at_ms % self.window_ms) as f64 / self.window_ms as f64)
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// How long `ip` stays banned, if it is.
    pub fn banned(&self, ip: IpAddr, now_ms: u64) -> Option<Duration> {
        let bans = self.bans.read().unwrap_or_else(|p| p.into_inner());
        bans.get(&ip).filter(|until| **until > now_ms).map(|until| Duration::from_millis(until - now_ms))
    }

    /// Counts one answer; returns the threshold it crossed, once per address and window.
    pub fn observe(&self, ip: IpAddr, status: u16, now_ms: u64) -> Option<(Reason, u64)> {
        let add = counts_for(status);
        let (window, progress) = self.window_at(now_ms);
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        if tracked.len() >= self.max_tracked && !tracked.contains_key(&ip) {
            if self.full_in_window.load(Ordering::Relaxed) != window {
                tracked.retain(|_, t| t.window + 1 >= window);
                if tracked.len() >= self.max_tracked {
                    self.full_in_window.store(window, Ordering::Relaxed);
                }
            }
            if tracked.len() >= self.max_tracked {
                metrics::counter!("gatehouse_edge_untracked_total").increment(1);
                return None;
            }
        }
        let t = tracked.entry(ip).or_default();
        roll(t, window);
        for (i, n) in add.into_iter().enumerate() {
            t.current[i] += n;
            t.unsynced[i] += n;
        }
        if t.reported {
            return None;
        }
        let over = Reason::ALL.into_iter().find_map(|r| {
            let i = r.index();
            let seen = estimate(t.current[i], t.previous[i], progress);
            (seen > self.limits[i]).then_some((r, seen))
        });
        t.reported |= over.is_some();
        over
    }

    /// Takes the counts not yet shared, by address, for the window they are in now.
    pub fn take_unsynced(&self, now_ms: u64) -> (u64, Vec<(IpAddr, Counts)>) {
        let (window, _) = self.window_at(now_ms);
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        tracked.retain(|_, t| t.window + 1 >= window);
        let taken =
            tracked.iter_mut().filter(|(_, t)| t.unsynced != [0; 3]).map(|(ip, t)| (*ip, std::mem::take(&mut t.unsynced))).collect();
        (window, taken)
    }

    /// Whether the shared totals of `ip` pass a threshold not reported yet in this window;
    /// marks it reported.
    pub fn check_shared(&self, ip: IpAddr, current: Counts, previous: Counts, now_ms: u64) -> Option<(Reason, u64)> {
        let (window, progress) = self.window_at(now_ms);
        let over = Reason::ALL.into_iter().find_map(|r| {
            let i = r.index();
            let seen = estimate(current[i], previous[i], progress);
            (seen > self.limits[i]).then_some((r, seen))
        })?;
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        let t = tracked.entry(ip).or_default();
        roll(t, window);
        if t.reported {
            return None;
        }
        t.reported = true;
        Some(over)
    }

    /// Bans `ip` here until `until_ms` (a ban decided here, before the shared list has it).
    pub fn ban(&self, ip: IpAddr, until_ms: u64) {
        let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
        let until = bans.entry(ip).or_default();
        *until = (*until).max(until_ms);
    }

    /// Replaces the bans with the shared list (lifted bans end here too); returns the addresses
    /// whose ban ended, which start counting afresh.
    pub fn replace_bans(&self, bans: HashMap<IpAddr, u64>) -> Vec<IpAddr> {
        let ended: Vec<IpAddr> = {
            let old = self.bans.read().unwrap_or_else(|p| p.into_inner());
            old.keys().filter(|ip| !bans.contains_key(ip)).copied().collect()
        };
        *self.bans.write().unwrap_or_else(|p| p.into_inner()) = bans;
        // An address whose ban was lifted starts counting afresh.
        if !ended.is_empty() {
            let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
            for ip in &ended {
                tracked.remove(ip);
            }
        }
        ended
    }

    pub fn active_bans(&self, now_ms: u64) -> usize {
        self.bans.read().unwrap_or_else(|p| p.into_inner()).values().filter(|u| **u > now_ms).count()
    }
}

fn roll(t: &mut Tracked, window: u64) {
    if t.window == window {
        return;
    }
    t.previous = if t.window + 1 == window { t.current } else { [0; 3] };
    t.current = [0; 3];
    t.window = window;
    t.reported = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    #[test]
    fn crossing_a_threshold_is_reported_once_per_window() {
        let d = Detector::new(Duration::from_secs(60), [10, 3, 5], 100);
        let t0 = 60_000 * 1000;
        for _ in 0..3 {
            assert_eq!(d.observe(ip(1), 401, t0), None);
        }
        assert_eq!(d.observe(ip(1), 401, t0), Some((Reason::AuthFailures, 4)));
        assert_eq!(d.observe(ip(1), 401, t0), None, "reported once");
        assert_eq!(d.observe(ip(2), 200, t0), None, "another address is counted apart");
        // Half-way through the next window, half of the last one still counts.
        assert_eq!(d.observe(ip(1), 200, t0 + 90_000), None);
        assert_eq!(d.observe(ip(1), 401, t0 + 90_000), Some((Reason::AuthFailures, 4)));
    }

    #[test]
    fn statuses_count_as_what_they_say() {
        assert_eq!(counts_for(200), [1, 0, 0]);
        assert_eq!(counts_for(401), [1, 1, 0]);
        assert_eq!(counts_for(404), [1, 0, 1]);
        assert_eq!(counts_for(429), [1, 0, 0]);
        assert_eq!(counts_for(503), [1, 0, 0]);
    }

    #[test]
    fn bans_end_on_time_and_a_replaced_list_lifts_them() {
        let d = Detector::new(Duration::from_secs(60), [10, 10, 10], 100);
        d.ban(ip(1), 5_000);
        assert_eq!(d.banned(ip(1), 4_000), Some(Duration::from_millis(1_000)));
        assert_eq!(d.banned(ip(1), 5_000), None);
        d.ban(ip(2), 9_000);
        d.replace_bans(HashMap::new());
        assert_eq!(d.banned(ip(2), 1_000), None);
    }

    #[test]
    fn tracking_is_bounded() {
        let d = Detector::new(Duration::from_secs(60), [1, 1, 1], 2);
        d.observe(ip(1), 200, 0);
        d.observe(ip(2), 200, 0);
        d.observe(ip(3), 200, 0);
        assert_eq!(d.take_unsynced(0).1.len(), 2);
        // Full for the rest of this window: later new addresses are refused without a sweep.
        assert_eq!(d.full_in_window.load(Ordering::Relaxed), 0);
        d.observe(ip(4), 200, 30_000);
        assert_eq!(d.take_unsynced(30_000).1.len(), 0, "ip 4 is not tracked either");
        // Once the old addresses' windows are over, new ones are tracked again.
        d.observe(ip(3), 200, 180_000);
        assert_eq!(d.take_unsynced(180_000).1.len(), 1);
    }

    #[test]
    fn unsynced_counts_are_taken_once() {
        let d = Detector::new(Duration::from_secs(60), [100, 100, 100], 10);
        d.observe(ip(1), 404, 0);
        d.observe(ip(1), 200, 0);
        assert_eq!(d.take_unsynced(0).1, vec![(ip(1), [2, 0, 1])]);
        assert!(d.take_unsynced(0).1.is_empty());
        assert_eq!(d.check_shared(ip(1), [150, 0, 0], [0; 3], 0), Some((Reason::RequestRate, 150)));
        assert_eq!(d.check_shared(ip(1), [150, 0, 0], [0; 3], 0), None);
    }
}
