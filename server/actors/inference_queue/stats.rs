//! What a pool's queue saw recently, for the alert rules: how long granted requests waited, and
//! how many ended in a worker failure. A window of timestamped samples, bounded in count.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most samples kept per series (older ones go first).
const MAX_SAMPLES: usize = 10_000;

#[derive(Debug)]
pub(super) struct PoolStats {
    window: Duration,
    waits: VecDeque<(Instant, Duration)>,
    /// (when, the worker failed)
    outcomes: VecDeque<(Instant, bool)>,
}

/// A summary over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// The 95th percentile of queue waits, None without grants in the window.
    pub wait_p95: Option<Duration>,
    /// Requests that reached a worker and finished (successes and worker failures).
    pub finished: u32,
    pub worker_failures: u32,
}

impl PoolStats {
    pub(super) fn new(window: Duration) -> PoolStats {
        PoolStats { window, waits: VecDeque::new(), outcomes: VecDeque::new() }
    }

    pub(super) fn waited(&mut self, now: Instant, waited: Duration) {
        push(&mut self.waits, (now, waited));
    }

    pub(super) fn finished(&mut self, now: Instant, failed: bool) {
        push(&mut self.outcomes, (now, failed));
    }

    pub(super) fn summary(&mut self, now: Instant) -> WindowStats {
        let window = self.window;
        let fresh = |t: &Instant| now.saturating_duration_since(*t) <= window;
        while self.waits.front().is_some_and(|(t, _)| !fresh(t)) {
            self.waits.pop_front();
        }
        while self.outcomes.front().is_some_and(|(t, _)| !fresh(t)) {
            self.outcomes.pop_front();
        }
        let mut waits: Vec<Duration> = self.waits.iter().map(|(_, w)| *w).collect();
        waits.sort_unstable();
        let wait_p95 = (!waits.is_empty()).then(|| waits[(waits.len() * 95).div_ceil(100).saturating_sub(1).min(waits.len() - 1)]);
        WindowStats {
            wait_p95,
            finished: self.outcomes.len() as u32,
            worker_failures: self.outcomes.iter().filter(|(_, failed)| *failed).count() as u32,
        }
    }
}

fn push<T>(series: &mut VecDeque<T>, sample: T) {
    if series.len() >= MAX_SAMPLES {
        series.pop_front();
    }
    series.push_back(sample);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_recent_samples_and_summarises_them() {
        let start = Instant::now();
        let mut s = PoolStats::new(Duration::from_secs(10));
        for ms in 1..=100 {
            s.waited(start, Duration::from_millis(ms));
        }
        s.finished(start, false);
        s.finished(start, true);
        let now = start + Duration::from_secs(5);
        assert_eq!(s.summary(now), WindowStats { wait_p95: Some(Duration::from_millis(95)), finished: 2, worker_failures: 1 });
        assert_eq!(s.summary(start + Duration::from_secs(11)), WindowStats::default(), "everything left the window");
    }
}
