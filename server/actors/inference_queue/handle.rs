//! `InferenceQueueHandle`, the only way in: it reaches the pool's shared state
//! (`state::Shared`) on the caller's thread, and the actor only for what needs its clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::grant::{AlignFailure, AlignItem, AlignReply, Batch, BatchEntry, Grant, Waiter};
use super::pool::{Health, LoadReading, WorkerStatus, record_failure};
use super::state::{Core, Request, Shared};
use super::{AdaptiveStatus, InferenceQueue, LOAD_REPORT_TTL, QueueError, QueueSettings, WindowStats, WorkerSpec};
use crate::domain::TenantId;
use crate::scheduler::Priority;

/// A snapshot for readiness and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStatus {
    pub waiting: usize,
    pub waiting_by_tenant: Vec<(String, usize)>,
    pub workers: Vec<(String, WorkerStatus, u32)>,
    /// Each worker's last load reading from its `/metrics` (vLLM's running + waiting requests,
    /// ours and others'), while fresh; None when it exposes none.
    pub worker_loads: Vec<(String, Option<u32>)>,
    /// Waits and outcomes over the pool's statistics window.
    pub recent: WindowStats,
    /// Adaptive admission: saturated or not, and the tenants held back.
    pub adaptive: AdaptiveStatus,
}

impl Core {
    /// A snapshot for readiness and metrics.
    fn status(&mut self) -> QueueStatus {
        let now = Instant::now();
        let recent = self.stats.summary(now);
        QueueStatus {
            recent,
            adaptive: self.adaptive.status(),
            waiting: self.queue.len(),
            waiting_by_tenant: self.queue.depths().map(|(t, n)| (t.to_string(), n)).collect(),
            workers: self
                .workers
                .iter()
                .map(|w| {
                    let state = match w.health {
                        _ if w.spec.draining => WorkerStatus::Draining,
                        Health::Healthy => WorkerStatus::Healthy,
                        Health::Ejected { until } if until > now => WorkerStatus::Ejected,
                        _ => WorkerStatus::HalfOpen,
                    };
                    (w.spec.id.clone(), state, w.outstanding)
                })
                .collect(),
            worker_loads: self
                .workers
                .iter()
                .map(|w| (w.spec.id.clone(), w.reported.filter(|r| now.saturating_duration_since(r.at) < LOAD_REPORT_TTL).map(|r| r.busy)))
                .collect(),
        }
    }

    fn report_health(&mut self, worker_id: &str, healthy: bool) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.spec.id == worker_id) {
            if healthy {
                if !matches!(w.health, Health::Healthy) {
                    tracing::info!(worker.id = %w.spec.id, "worker healthy again");
                }
                w.failures = 0;
                w.health = Health::Healthy;
            } else if matches!(w.health, Health::Healthy) {
                record_failure(w, self.settings.eject_for, self.settings.eject_after);
            }
        }
    }

    fn report_load(&mut self, worker_id: &str, busy: Option<u32>) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.spec.id == worker_id) {
            w.reported = busy.map(|busy| LoadReading { busy, ours_then: w.outstanding, at: Instant::now() });
        }
    }
}

/// The only way to reach a pool's queue.
#[derive(Clone)]
pub struct InferenceQueueHandle {
    shared: Arc<Shared>,
    addr: Addr<InferenceQueue>,
}

impl InferenceQueueHandle {
    /// Starts a queue on `arbiter`.
    pub fn start(arbiter: &actix_rt::ArbiterHandle, workers: Vec<WorkerSpec>, settings: QueueSettings) -> InferenceQueueHandle {
        Self::start_with(arbiter, Core::new(workers, settings, None))
    }

    /// A batching queue (`settings.batch` set): formed batches go to `executor`.
    pub fn start_batching(
        arbiter: &actix_rt::ArbiterHandle,
        workers: Vec<WorkerSpec>,
        settings: QueueSettings,
        executor: mpsc::UnboundedSender<Batch>,
    ) -> InferenceQueueHandle {
        Self::start_with(arbiter, Core::new(workers, settings, Some(executor)))
    }

    fn start_with(arbiter: &actix_rt::ArbiterHandle, core: Core) -> InferenceQueueHandle {
        let shared = Arc::new(Shared::new(core));
        let actor = InferenceQueue { shared: shared.clone() };
        let addr = InferenceQueue::start_in_arbiter(arbiter, move |_| actor);
        shared.set_actor(addr.clone());
        InferenceQueueHandle { shared, addr }
    }

    /// False once the actor has stopped or died (its owner then starts a new one).
    pub fn is_alive(&self) -> bool {
        self.addr.connected()
    }

    /// Test builds only: makes the actor panic, as a bug would.
    #[cfg(feature = "test-hooks")]
    pub fn crash(&self) {
        self.addr.do_send(Crash);
    }

    /// Waits (up to the pool's queue deadline) for a worker slot, in fair order across tenants.
    pub async fn acquire(&self, tenant: TenantId, weight: u32, priority: Priority, cost: f64) -> Result<Grant, QueueError> {
        let (reply, granted) = oneshot::channel();
        self.enqueue(Request { tenant, weight, priority, cost, waiter: Waiter::Slot(reply) });
        granted.await.map_err(|_| QueueError::Closed)?
    }

    /// Queues one alignment job (cost: its audio seconds) and waits for its result from the
    /// batch it joins. Dropping the future abandons the job; a batch already sent runs on.
    pub async fn align(&self, tenant: TenantId, weight: u32, priority: Priority, item: AlignItem) -> AlignReply {
        let (reply, done) = oneshot::channel();
        let cost = item.audio_ms as f64 / 1000.0;
        let waiter = Waiter::Batch(BatchEntry { item, reply, waited: Duration::ZERO });
        self.enqueue(Request { tenant, weight, priority, cost, waiter });
        done.await.map_err(|_| AlignFailure::Queue(QueueError::Closed))?
    }

    /// Grants, queues or refuses the request at once, on the caller's thread.
    fn enqueue(&self, request: Request) {
        self.shared.with(|core, shared| core.enqueue(shared, request));
    }

    pub fn set_workers(&self, workers: Vec<WorkerSpec>) {
        self.shared.with(|core, shared| {
            core.set_workers(workers);
            core.dispatch(shared)
        });
    }

    pub fn report_health(&self, worker_id: String, healthy: bool) {
        self.shared.with(|core, shared| {
            core.report_health(&worker_id, healthy);
            core.dispatch(shared)
        });
    }

    /// The worker's own count of requests running and waiting (vLLM's `/metrics`).
    pub fn report_load(&self, worker_id: String, busy: Option<u32>) {
        self.shared.lock().report_load(&worker_id, busy);
    }

    pub async fn status(&self) -> QueueStatus {
        self.shared.lock().status()
    }
}

/// Test builds only: a message whose handler panics.
#[cfg(feature = "test-hooks")]
#[derive(Message)]
#[rtype(result = "()")]
struct Crash;

#[cfg(feature = "test-hooks")]
impl Handler<Crash> for InferenceQueue {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!("InferenceQueue crashed on purpose (test hook)");
    }
}
