//! The queue's messages and their handlers, and `InferenceQueueHandle`, the only way in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::grant::{AlignFailure, AlignItem, AlignReply, Batch, BatchEntry, Grant, Outcome, Waiter};
use super::pool::{Health, LoadReading, WorkerStatus, record_failure};
use super::{AdaptiveStatus, InferenceQueue, QueueError, QueueSettings, WindowStats, WorkerSpec};
use crate::domain::TenantId;
use crate::scheduler::Priority;

/// A request for a slot or a job to batch. It has no reply of its own: a refusal (queue full)
/// goes back through the waiter's channel like a grant, so a request costs one message.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Enqueue {
    pub(super) tenant: TenantId,
    pub(super) weight: u32,
    pub(super) priority: Priority,
    pub(super) cost: f64,
    pub(super) waiter: Waiter,
}

impl Handler<Enqueue> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        let now = Instant::now();
        if !self.adaptive.admits(&msg.tenant, msg.weight, self.queue.tenant_len(&msg.tenant)) {
            return msg.waiter.refuse(QueueError::Throttled);
        }
        match self.queue.push(msg.tenant, msg.weight, msg.priority, msg.cost, msg.waiter, now, now + self.settings.deadline) {
            Ok(()) => self.dispatch(ctx),
            Err((crate::scheduler::Admission::TenantFull, waiter)) => waiter.refuse(QueueError::TenantQueueFull),
            Err((_, waiter)) => waiter.refuse(QueueError::QueueFull),
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Release {
    pub(super) worker_id: Arc<str>,
    pub(super) outcome: Outcome,
}

impl Handler<Release> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.target.id == msg.worker_id) {
            w.outstanding = w.outstanding.saturating_sub(1);
            if msg.outcome != Outcome::Abandoned {
                self.stats.finished(Instant::now(), msg.outcome == Outcome::WorkerFailure);
            }
            match msg.outcome {
                Outcome::Success => {
                    w.failures = 0;
                    w.health = Health::Healthy;
                }
                Outcome::WorkerFailure => record_failure(w, self.settings.eject_for, self.settings.eject_after),
                Outcome::Abandoned => {
                    if let Health::HalfOpen { probing: true } = w.health {
                        w.health = Health::HalfOpen { probing: false };
                    }
                }
            }
        }
        self.dispatch(ctx);
    }
}

/// Result of an active health check.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HealthReport {
    pub worker_id: String,
    pub healthy: bool,
}

impl Handler<HealthReport> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: HealthReport, ctx: &mut Self::Context) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.spec.id == msg.worker_id) {
            if msg.healthy {
                if !matches!(w.health, Health::Healthy) {
                    tracing::info!(worker.id = %w.spec.id, "worker healthy again");
                }
                w.failures = 0;
                w.health = Health::Healthy;
            } else if matches!(w.health, Health::Healthy) {
                record_failure(w, self.settings.eject_for, self.settings.eject_after);
            }
        }
        self.dispatch(ctx);
    }
}

/// A worker's own load reading (None: it exposes none).
#[derive(Message)]
#[rtype(result = "()")]
struct LoadReport {
    worker_id: String,
    busy: Option<u32>,
}

impl Handler<LoadReport> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: LoadReport, _: &mut Self::Context) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.spec.id == msg.worker_id) {
            w.reported = msg.busy.map(|busy| LoadReading { busy, ours_then: w.outstanding, at: Instant::now() });
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct SetWorkers(Vec<WorkerSpec>);

impl Handler<SetWorkers> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: SetWorkers, ctx: &mut Self::Context) {
        self.set_workers(msg.0);
        self.dispatch(ctx);
    }
}

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

#[derive(Message)]
#[rtype(result = "QueueStatus")]
struct GetStatus;

impl Handler<GetStatus> for InferenceQueue {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let recent = self.stats.summary(now);
        MessageResult(QueueStatus {
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
                .map(|w| {
                    (w.spec.id.clone(), w.reported.filter(|r| now.saturating_duration_since(r.at) < super::LOAD_REPORT_TTL).map(|r| r.busy))
                })
                .collect(),
        })
    }
}

/// The only way to reach an `InferenceQueue`.
#[derive(Clone)]
pub struct InferenceQueueHandle {
    addr: Addr<InferenceQueue>,
}

impl InferenceQueueHandle {
    /// Starts a queue on `arbiter`.
    pub fn start(arbiter: &actix_rt::ArbiterHandle, workers: Vec<WorkerSpec>, settings: QueueSettings) -> InferenceQueueHandle {
        let queue = InferenceQueue::new(workers, settings);
        InferenceQueueHandle { addr: InferenceQueue::start_in_arbiter(arbiter, move |_| queue) }
    }

    /// A batching queue (`settings.batch` set): formed batches go to `executor`.
    pub fn start_batching(
        arbiter: &actix_rt::ArbiterHandle,
        workers: Vec<WorkerSpec>,
        settings: QueueSettings,
        executor: mpsc::UnboundedSender<Batch>,
    ) -> InferenceQueueHandle {
        let mut queue = InferenceQueue::new(workers, settings);
        queue.executor = Some(executor);
        InferenceQueueHandle { addr: InferenceQueue::start_in_arbiter(arbiter, move |_| queue) }
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
        self.enqueue(Enqueue { tenant, weight, priority, cost, waiter: Waiter::Slot(reply) });
        granted.await.map_err(|_| QueueError::Closed)?
    }

    /// Queues one alignment job (cost: its audio seconds) and waits for its result from the
    /// batch it joins. Dropping the future abandons the job; a batch already sent runs on.
    pub async fn align(&self, tenant: TenantId, weight: u32, priority: Priority, item: AlignItem) -> AlignReply {
        let (reply, done) = oneshot::channel();
        let cost = item.audio_ms as f64 / 1000.0;
        let waiter = Waiter::Batch(BatchEntry { item, reply, waited: Duration::ZERO });
        self.enqueue(Enqueue { tenant, weight, priority, cost, waiter });
        done.await.map_err(|_| AlignFailure::Queue(QueueError::Closed))?
    }

    /// Puts the request in the actor's mailbox; a full mailbox (the actor is behind by its
    /// capacity) refuses it at once as a full queue, and a stopped actor as closed.
    fn enqueue(&self, msg: Enqueue) {
        match self.addr.try_send(msg) {
            Ok(()) => {}
            Err(SendError::Full(msg)) => msg.waiter.refuse(QueueError::QueueFull),
            Err(SendError::Closed(msg)) => msg.waiter.refuse(QueueError::Closed),
        }
    }

    pub fn set_workers(&self, workers: Vec<WorkerSpec>) {
        self.addr.do_send(SetWorkers(workers));
    }

    pub fn report_health(&self, worker_id: String, healthy: bool) {
        self.addr.do_send(HealthReport { worker_id, healthy });
    }

    /// The worker's own count of requests running and waiting (vLLM's `/metrics`).
    pub fn report_load(&self, worker_id: String, busy: Option<u32>) {
        self.addr.do_send(LoadReport { worker_id, busy });
    }

    pub async fn status(&self) -> QueueStatus {
        self.addr.send(GetStatus).await.unwrap_or_default()
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
