//! Background work with an owner. The `Supervisor` starts every background loop of the
//! application (`startup::background` lists them), and when one dies before shutdown — a panic
//! or an early return — it is logged, counted in `gatehouse_task_restarts_total{task}` and
//! started again after a pause that grows while it keeps dying. Owners that revive their own
//! actors (the gateway's queues, the quota accountant) report those restarts here too, so
//! `/readyz` can name a task that keeps dying. The asynchronous audit writer lives here as well.

pub mod audit_writer;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A task restarted this many times within `FLAPPING_WINDOW` keeps dying: readiness says so.
const FLAPPING_RESTARTS: usize = 3;
const FLAPPING_WINDOW: Duration = Duration::from_secs(300);
/// The longest pause before a task that keeps dying is started again.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Supervisor {
    restarts: Mutex<HashMap<String, VecDeque<Instant>>>,
    stopping: AtomicBool,
    /// The pause before the first restart (doubled for each restart within the flapping window).
    first_delay: Duration,
}

impl Supervisor {
    pub fn new(first_delay: Duration) -> Arc<Supervisor> {
        Arc::new(Supervisor { first_delay, ..Supervisor::default() })
    }

    /// Runs the loop `make()` on the current actix system, and again whenever it dies while the
    /// application runs.
    pub fn spawn<F, Fut>(self: &Arc<Self>, name: &'static str, make: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let supervisor = self.clone();
        actix_rt::spawn(async move {
            loop {
                let ended = actix_rt::spawn(make()).await;
                if supervisor.is_stopping() {
                    return;
                }
                match ended {
                    Err(e) if e.is_panic() => tracing::error!(task = name, "background task panicked; restarting it"),
                    Err(_) => return, // cancelled: the runtime is shutting down
                    Ok(()) => tracing::error!(task = name, "background task ended unexpectedly; restarting it"),
                }
                let recent = supervisor.restarted(name);
                let delay = supervisor.first_delay.saturating_mul(1 << recent.saturating_sub(1).min(10)).min(MAX_RESTART_DELAY);
                tokio::time::sleep(delay).await;
            }
        });
    }

    /// Records one restart of `task` (logged by the caller); returns its restarts within the
    /// flapping window.
    pub fn restarted(&self, task: &str) -> usize {
        metrics::counter!("gatehouse_task_restarts_total", "task" => task.to_owned()).increment(1);
        let now = Instant::now();
        let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        let log = restarts.entry(task.to_owned()).or_default();
        log.push_back(now);
        while log.front().is_some_and(|t| now.duration_since(*t) > FLAPPING_WINDOW) {
            log.pop_front();
        }
        log.len()
    }

    /// Tasks restarted `FLAPPING_RESTARTS` times or more in the last five minutes, with the count.
    pub fn failing(&self) -> Vec<(String, usize)> {
        let now = Instant::now();
        let restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, usize)> = restarts
            .iter()
            .map(|(task, log)| (task.clone(), log.iter().filter(|t| now.duration_since(**t) <= FLAPPING_WINDOW).count()))
            .filter(|(_, n)| *n >= FLAPPING_RESTARTS)
            .collect();
        out.sort();
        out
    }

    /// Shutdown: a loop that ends from now on is not restarted.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_keeps_dying_is_reported() {
        let s = Supervisor::new(Duration::from_millis(1));
        assert_eq!(s.restarted("usage"), 1);
        s.restarted("usage");
        assert!(s.failing().is_empty());
        s.restarted("usage");
        s.restarted("audit");
        assert_eq!(s.failing(), vec![("usage".to_owned(), 3)]);
    }

    #[actix_rt::test]
    async fn a_panicking_loop_is_started_again() {
        let s = Supervisor::new(Duration::from_millis(1));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = runs.clone();
        s.spawn("flaky", move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("deliberate panic in a test task");
                }
                std::future::pending::<()>().await;
            }
        });
        for _ in 0..200 {
            if runs.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two panics, two restarts");
        assert_eq!(s.restarted("flaky"), 3, "the two restarts were recorded");
    }
}
