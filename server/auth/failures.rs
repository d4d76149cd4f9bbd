//! A tally of failed authentications by source IP and by client id over a recent window, for the
//! authentication-failure alert (possible credential stuffing). Bounded: at most `MAX_KEYS` keys,
//! each with at most its window's failures counted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 100_000;
/// Failures remembered per key (a burst is reported long before this).
const MAX_PER_KEY: usize = 10_000;

/// Whose failures: one source, or one client id under attack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKey {
    Ip(IpAddr),
    Client(String),
}

pub struct FailureTally {
    window: Duration,
    seen: Mutex<Seen>,
}

/// A full tally is swept at most this often: each sweep scans every key, and failed
/// authentications from ever new addresses or client ids are the cheapest requests to send.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Seen {
    keys: HashMap<FailureKey, VecDeque<Instant>>,
    /// A sweep left the tally full: none again before this instant.
    no_sweep_before: Option<Instant>,
}

impl FailureTally {
    pub fn new(window: Duration) -> FailureTally {
        FailureTally { window, seen: Mutex::default() }
    }

    /// Counts one failed authentication.
    pub fn record(&self, ip: Option<IpAddr>, client: Option<&str>) {
        let now = Instant::now();
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let Seen { keys: seen, no_sweep_before } = &mut *guard;
        if seen.len() >= MAX_KEYS && no_sweep_before.is_none_or(|t| now >= t) {
            let window = self.window;
            seen.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) <= window));
            *no_sweep_before = (seen.len() >= MAX_KEYS).then(|| now + FULL_SWEEP_EVERY);
        }
        let keys = ip.map(FailureKey::Ip).into_iter().chain(client.map(|c| FailureKey::Client(c.to_owned())));
        for key in keys {
            if seen.len() >= MAX_KEYS && !seen.contains_key(&key) {
                continue;
            }
            let times = seen.entry(key).or_default();
            if times.len() >= MAX_PER_KEY {
                times.pop_front();
            }
            times.push_back(now);
        }
    }

    /// Keys with at least `threshold` failures in the window, with their counts.
    pub fn bursts(&self, threshold: u32) -> Vec<(FailureKey, u32)> {
        let now = Instant::now();
        let window = self.window;
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let seen = &mut guard.keys;
        seen.retain(|_, times| {
            while times.front().is_some_and(|t| now.duration_since(*t) > window) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let mut out: Vec<(FailureKey, u32)> =
            seen.iter().map(|(k, t)| (k.clone(), t.len() as u32)).filter(|(_, n)| *n >= threshold.max(1)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_by_ip_and_by_client() {
        let tally = FailureTally::new(Duration::from_secs(60));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..5 {
            tally.record(Some(ip), Some("cli_a"));
        }
        tally.record(Some("198.51.100.1".parse().unwrap()), None);
        assert_eq!(tally.bursts(5), vec![(FailureKey::Ip(ip), 5), (FailureKey::Client("cli_a".into()), 5)]);
        assert!(tally.bursts(6).is_empty());
    }

    #[test]
    fn a_full_tally_is_swept_at_most_once_a_second() {
        let tally = FailureTally::new(Duration::from_secs(60));
        for i in 0..MAX_KEYS {
            tally.record(None, Some(&format!("c{i}")));
        }
        tally.record(None, Some("one more"));
        let seen = tally.seen.lock().unwrap();
        assert_eq!(seen.keys.len(), MAX_KEYS, "bounded: the new client is not counted");
        assert!(seen.no_sweep_before.is_some_and(|t| t > Instant::now()), "the sweep that found it full waits a second");
    }
}
