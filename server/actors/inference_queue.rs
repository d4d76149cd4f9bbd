//! `InferenceQueue`: one actor per worker pool. It keeps the pool's workers (slots, outstanding
//! work, health and circuit-breaker state) and a `FairQueue` of waiting requests across tenants,
//! and grants a worker slot to the next request by fair share. The actor never touches request
//! or response bodies: the handler streams the bytes itself and returns the slot by dropping
//! (or finishing) its `Grant`. Reached only through `InferenceQueueHandle`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::domain::TenantId;
use crate::scheduler::{FairQueue, Priority, QueueLimits};

/// Consecutive failures that eject a worker.
pub const EJECT_AFTER_FAILURES: u32 = 3;
/// Default rest of an ejected worker before one half-open probe request.
pub const EJECT_FOR: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    pub id: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub slots: u32,
    pub draining: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Ejected { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct WorkerState {
    spec: WorkerSpec,
    outstanding: u32,
    failures: u32,
    health: Health,
    /// Removed from the pool; kept only until its in-flight requests finish.
    removed: bool,
}

impl WorkerState {
    fn can_take(&self, now: Instant) -> bool {
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

/// Why no slot was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the tenant's queue for this model is full")]
    TenantQueueFull,
    #[error("the queue for this model is full")]
    QueueFull,
    #[error("no worker became available within the queue deadline")]
    DeadlineExceeded,
    #[error("the pool is shutting down")]
    Closed,
}

/// How a granted request ended, for the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The worker failed (connect error, 5xx, broken stream).
    WorkerFailure,
    /// The client went away or the request was refused before reaching the worker.
    Abandoned,
}

/// A worker slot, held while the request runs. Dropping it returns the slot as `Abandoned`.
pub struct Grant {
    pub worker_id: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub waited: Duration,
    addr: Option<Addr<InferenceQueue>>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("worker_id", &self.worker_id).field("waited", &self.waited).finish()
    }
}

impl Grant {
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(addr) = self.addr.take() {
            addr.do_send(Release { worker_id: self.worker_id.clone(), outcome });
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(addr) = self.addr.take() {
            addr.do_send(Release { worker_id: self.worker_id.clone(), outcome: Outcome::Abandoned });
        }
    }
}

type Reply = oneshot::Sender<Result<Grant, QueueError>>;

/// Queue bounds and timings of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub limits: QueueLimits,
    /// How long a request may wait for a slot.
    pub deadline: Duration,
    /// How long an ejected worker rests before a half-open probe.
    pub eject_for: Duration,
}

pub struct InferenceQueue {
    workers: Vec<WorkerState>,
    queue: FairQueue<TenantId, Reply>,
    settings: QueueSettings,
}

impl InferenceQueue {
    pub fn new(workers: Vec<WorkerSpec>, settings: QueueSettings) -> Self {
        let mut q = InferenceQueue { workers: Vec::new(), queue: FairQueue::new(settings.limits), settings };
        q.set_workers(workers);
        q
    }

    fn set_workers(&mut self, specs: Vec<WorkerSpec>) {
        let mut old: HashMap<String, WorkerState> = self.workers.drain(..).map(|w| (w.spec.id.clone(), w)).collect();
        for spec in specs {
            let state = match old.remove(&spec.id) {
                Some(mut w) => {
                    w.spec = spec;
                    w
                }
                None => WorkerState { spec, outstanding: 0, failures: 0, health: Health::Healthy, removed: false },
            };
            self.workers.push(state);
        }
        // Removed workers with requests in flight finish them; they just get no new work.
        for (_, mut w) in old {
            if w.outstanding > 0 {
                w.spec.draining = true;
                w.removed = true;
                self.workers.push(w);
            }
        }
    }

    /// The worker with the least outstanding work relative to its slots.
    fn pick(&mut self, now: Instant) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.can_take(now))
            .min_by(|(_, a), (_, b)| {
                let load = |w: &WorkerState| f64::from(w.outstanding) / f64::from(w.spec.slots.max(1));
                load(a).total_cmp(&load(b))
            })
            .map(|(i, _)| i)
    }

    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for expired in self.queue.expire(now) {
            let _ = expired.item.send(Err(QueueError::DeadlineExceeded));
        }
        while !self.queue.is_empty() {
            let Some(index) = self.pick(now) else { break };
            let Some(job) = self.queue.pop() else { break };
            let worker = &mut self.workers[index];
            let grant = Grant {
                worker_id: worker.spec.id.clone(),
                base_url: worker.spec.base_url.clone(),
                api_key: worker.spec.api_key.clone(),
                waited: job.waited(now),
                addr: Some(ctx.address()),
            };
            worker.outstanding += 1;
            if let Health::Ejected { .. } | Health::HalfOpen { .. } = worker.health {
                worker.health = Health::HalfOpen { probing: true };
            }
            if let Err(Ok(mut unsent)) = job.item.send(Ok(grant)) {
                // The requester went away while waiting: take the slot back quietly.
                unsent.addr = None;
                worker.outstanding -= 1;
                if let Health::HalfOpen { probing: true } = worker.health {
                    worker.health = Health::HalfOpen { probing: false };
                }
            }
        }
        self.workers.retain(|w| !(w.removed && w.outstanding == 0));
    }
}

impl Actor for InferenceQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(10_000);
        ctx.run_interval(TICK, |act, ctx| act.dispatch(ctx));
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        while let Some(job) = self.queue.pop() {
            let _ = job.item.send(Err(QueueError::Closed));
        }
        Running::Stop
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), QueueError>")]
struct Enqueue {
    tenant: TenantId,
    weight: u32,
    priority: Priority,
    cost: f64,
    reply: Reply,
}

impl Handler<Enqueue> for InferenceQueue {
    type Result = Result<(), QueueError>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        self.queue.push(msg.tenant, msg.weight, msg.priority, msg.cost, msg.reply, now, now + self.settings.deadline).map_err(
            |(why, _)| match why {
                crate::scheduler::Admission::TenantFull => QueueError::TenantQueueFull,
                _ => QueueError::QueueFull,
            },
        )?;
        self.dispatch(ctx);
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Release {
    worker_id: String,
    outcome: Outcome,
}

impl Handler<Release> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.spec.id == msg.worker_id) {
            w.outstanding = w.outstanding.saturating_sub(1);
            match msg.outcome {
                Outcome::Success => {
                    w.failures = 0;
                    w.health = Health::Healthy;
                }
                Outcome::WorkerFailure => record_failure(w, self.settings.eject_for),
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

fn record_failure(w: &mut WorkerState, eject_for: Duration) {
    w.failures += 1;
    let eject = matches!(w.health, Health::HalfOpen { .. }) || w.failures >= EJECT_AFTER_FAILURES;
    if eject {
        tracing::warn!(worker.id = %w.spec.id, failures = w.failures, "worker ejected by the circuit breaker");
        w.health = Health::Ejected { until: Instant::now() + eject_for };
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
                record_failure(w, self.settings.eject_for);
            }
        }
        self.dispatch(ctx);
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStatus {
    pub waiting: usize,
    pub waiting_by_tenant: Vec<(String, usize)>,
    pub workers: Vec<(String, &'static str, u32)>,
}

#[derive(Message)]
#[rtype(result = "QueueStatus")]
struct GetStatus;

impl Handler<GetStatus> for InferenceQueue {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        MessageResult(QueueStatus {
            waiting: self.queue.len(),
            waiting_by_tenant: self.queue.depths().map(|(t, n)| (t.to_string(), n)).collect(),
            workers: self
                .workers
                .iter()
                .map(|w| {
                    let state = match w.health {
                        _ if w.spec.draining => "draining",
                        Health::Healthy => "healthy",
                        Health::Ejected { until } if until > now => "ejected",
                        _ => "half_open",
                    };
                    (w.spec.id.clone(), state, w.outstanding)
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
    pub fn start(workers: Vec<WorkerSpec>, settings: QueueSettings) -> InferenceQueueHandle {
        InferenceQueueHandle { addr: InferenceQueue::new(workers, settings).start() }
    }

    /// Waits (up to the pool's queue deadline) for a worker slot, in fair order across tenants.
    pub async fn acquire(&self, tenant: TenantId, weight: u32, priority: Priority, cost: f64) -> Result<Grant, QueueError> {
        let (reply, granted) = oneshot::channel();
        self.addr.send(Enqueue { tenant, weight, priority, cost, reply }).await.map_err(|_| QueueError::Closed)??;
        granted.await.map_err(|_| QueueError::Closed)?
    }

    pub fn set_workers(&self, workers: Vec<WorkerSpec>) {
        self.addr.do_send(SetWorkers(workers));
    }

    pub fn report_health(&self, worker_id: String, healthy: bool) {
        self.addr.do_send(HealthReport { worker_id, healthy });
    }

    pub async fn status(&self) -> QueueStatus {
        self.addr.send(GetStatus).await.unwrap_or_default()
    }
}
