//! `InferenceQueue`: one actor per worker pool. It keeps the pool's workers (slots, outstanding
//! work, health and circuit-breaker state) and a `FairQueue` of waiting requests across tenants,
//! and grants a worker slot to the next request by fair share. The actor never touches request
//! or response bodies: the handler streams the bytes itself and returns the slot by dropping
//! (or finishing) its `Grant`. Reached only through `InferenceQueueHandle`.
//!
//! Aligner pools batch: the queue packs waiting jobs (fair order across tenants, cost = audio
//! seconds) into batches bounded by item count and total audio, waits up to the pool's
//! `batch_max_wait` for a batch to fill, puts jobs of similar duration together (a padded batch
//! costs its longest item), and hands each batch with its slot to the pool's executor task, which
//! sends it to the worker and fans the results back. The actor only moves the jobs' handles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::domain::TenantId;
use crate::scheduler::{FairQueue, Priority, QueueLimits};
use crate::workers::aligner::{AlignFailure, AlignItem, AlignReply};

/// Consecutive failures that eject a worker.
pub const EJECT_AFTER_FAILURES: u32 = 3;
/// Default rest of an ejected worker before one half-open probe request.
pub const EJECT_FOR: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(50);
/// A worker's own load reading (vLLM's `/metrics`) counts for this long.
const LOAD_REPORT_TTL: Duration = Duration::from_secs(10);

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

/// A worker's identity and address as grants hand them out (shared, not copied per request).
#[derive(Debug)]
struct Target {
    id: Arc<str>,
    base_url: Arc<str>,
    api_key: Option<Arc<str>>,
}

impl Target {
    fn of(spec: &WorkerSpec) -> Target {
        Target { id: spec.id.as_str().into(), base_url: spec.base_url.as_str().into(), api_key: spec.api_key.as_deref().map(Into::into) }
    }
}

#[derive(Debug)]
struct WorkerState {
    spec: WorkerSpec,
    target: Target,
    outstanding: u32,
    failures: u32,
    health: Health,
    /// Removed from the pool; kept only until its in-flight requests finish.
    removed: bool,
    /// The worker's last load reading, if it exposes one.
    reported: Option<LoadReading>,
}

/// Requests a worker said it was running or holding (vLLM's `num_requests_running` +
/// `num_requests_waiting`), and how many of them were ours when it said so.
#[derive(Debug, Clone, Copy)]
struct LoadReading {
    busy: u32,
    ours_then: u32,
    at: Instant,
}

impl WorkerState {
    /// Outstanding work relative to slots: ours, plus what the worker reported beyond ours
    /// (other gateways' requests, or work it still holds) while the reading is fresh.
    fn load(&self, now: Instant) -> f64 {
        let others = self
            .reported
            .filter(|r| now.saturating_duration_since(r.at) < LOAD_REPORT_TTL)
            .map_or(0, |r| r.busy.saturating_sub(r.ours_then));
        f64::from(self.outstanding + others) / f64::from(self.spec.slots.max(1))
    }

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
    pub worker_id: Arc<str>,
    pub base_url: Arc<str>,
    pub api_key: Option<Arc<str>>,
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

/// One job waiting in a batching pool, and where its result goes.
pub struct BatchEntry {
    pub item: AlignItem,
    pub reply: oneshot::Sender<AlignReply>,
    /// Time spent queued, set when the batch is formed.
    pub waited: Duration,
}

/// Jobs packed for one worker slot: the executor sends them as one request.
pub struct Batch {
    pub grant: Grant,
    pub entries: Vec<BatchEntry>,
}

/// What waits in the queue: a request for a slot, or a job to be batched.
enum Waiter {
    Slot(Reply),
    Batch(BatchEntry),
}

impl Waiter {
    fn refuse(self, e: QueueError) {
        match self {
            Waiter::Slot(reply) => drop(reply.send(Err(e))),
            Waiter::Batch(entry) => drop(entry.reply.send(Err(AlignFailure::Queue(e)))),
        }
    }

    fn audio_ms(&self) -> u64 {
        match self {
            Waiter::Slot(_) => 0,
            Waiter::Batch(entry) => entry.item.audio_ms,
        }
    }
}

/// How an aligner pool packs batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_items: usize,
    pub max_audio_ms: u64,
    /// How long the oldest job may wait for a batch to fill while a worker is free.
    pub max_wait: Duration,
}

/// Jobs of similar duration (within this ratio of the batch's first job) fill a batch first.
const SIMILAR_DURATION_RATIO: f64 = 1.5;

/// Queue bounds and timings of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub limits: QueueLimits,
    /// How long a request may wait for a slot.
    pub deadline: Duration,
    /// How long an ejected worker rests before a half-open probe.
    pub eject_for: Duration,
    /// Batching (aligner pools); None grants one slot per request.
    pub batch: Option<BatchSettings>,
}

pub struct InferenceQueue {
    workers: Vec<WorkerState>,
    queue: FairQueue<TenantId, Waiter>,
    settings: QueueSettings,
    executor: Option<mpsc::UnboundedSender<Batch>>,
    /// A dispatch is already scheduled for this instant (batch wait).
    wake_at: Option<Instant>,
}

impl InferenceQueue {
    pub fn new(workers: Vec<WorkerSpec>, settings: QueueSettings) -> Self {
        let mut q = InferenceQueue { workers: Vec::new(), queue: FairQueue::new(settings.limits), settings, executor: None, wake_at: None };
        q.set_workers(workers);
        q
    }

    fn set_workers(&mut self, specs: Vec<WorkerSpec>) {
        let mut old: HashMap<String, WorkerState> = self.workers.drain(..).map(|w| (w.spec.id.clone(), w)).collect();
        for spec in specs {
            let state = match old.remove(&spec.id) {
                Some(mut w) => {
                    w.target = Target::of(&spec);
                    w.spec = spec;
                    w
                }
                None => WorkerState {
                    target: Target::of(&spec),
                    spec,
                    outstanding: 0,
                    failures: 0,
                    health: Health::Healthy,
                    removed: false,
                    reported: None,
                },
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

    /// The worker with the least outstanding work relative to its slots, counting what the
    /// worker itself reports when it does.
    fn pick(&mut self, now: Instant) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.can_take(now))
            .min_by(|(_, a), (_, b)| a.load(now).total_cmp(&b.load(now)))
            .map(|(i, _)| i)
    }

    /// Takes a slot on worker `index` and makes its grant.
    fn take_slot(&mut self, index: usize, waited: Duration, ctx: &Context<Self>) -> Grant {
        let worker = &mut self.workers[index];
        worker.outstanding += 1;
        if let Health::Ejected { .. } | Health::HalfOpen { .. } = worker.health {
            worker.health = Health::HalfOpen { probing: true };
        }
        Grant {
            worker_id: worker.target.id.clone(),
            base_url: worker.target.base_url.clone(),
            api_key: worker.target.api_key.clone(),
            waited,
            addr: Some(ctx.address()),
        }
    }

    /// Gives back a slot that was never used (its requester went away).
    fn untake_slot(&mut self, mut grant: Grant) {
        grant.addr = None;
        if let Some(worker) = self.workers.iter_mut().find(|w| w.target.id == grant.worker_id) {
            worker.outstanding = worker.outstanding.saturating_sub(1);
            if let Health::HalfOpen { probing: true } = worker.health {
                worker.health = Health::HalfOpen { probing: false };
            }
        }
    }

    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for expired in self.queue.expire(now) {
            expired.item.refuse(QueueError::DeadlineExceeded);
        }
        while !self.queue.is_empty() {
            let Some(index) = self.pick(now) else { break };
            if let Some(batch) = self.settings.batch {
                if self.should_wait_for_batch(batch, now, ctx) {
                    break;
                }
            }
            let Some(job) = self.queue.pop() else { break };
            let waited = job.waited(now);
            match job.item {
                Waiter::Slot(reply) => {
                    let grant = self.take_slot(index, waited, ctx);
                    if let Err(Ok(unsent)) = reply.send(Ok(grant)) {
                        // The requester went away while waiting: take the slot back quietly.
                        self.untake_slot(unsent);
                    }
                }
                Waiter::Batch(entry) => self.dispatch_batch(index, entry, waited, now, ctx),
            }
        }
        self.workers.retain(|w| !(w.removed && w.outstanding == 0));
    }

    /// With a worker free, holds a batch that could still grow until its oldest job has
    /// waited `max_wait`, and schedules the dispatch for then.
    fn should_wait_for_batch(&mut self, batch: BatchSettings, now: Instant, ctx: &mut Context<Self>) -> bool {
        if batch.max_wait.is_zero() || self.queue.len() >= batch.max_items {
            return false;
        }
        let waiting_audio: u64 = self.queue.iter().map(|q| q.item.audio_ms()).sum();
        if waiting_audio >= batch.max_audio_ms {
            return false;
        }
        let Some(oldest) = self.queue.oldest() else { return false };
        let due = oldest + batch.max_wait;
        if due <= now {
            return false;
        }
        if self.wake_at.is_none_or(|at| at > due || at <= now) {
            self.wake_at = Some(due);
            ctx.run_later(due - now, |act, ctx| {
                act.wake_at = None;
                act.dispatch(ctx);
            });
        }
        true
    }

    /// Packs `first` and more waiting jobs of the same model into one batch for worker `index`:
    /// similar durations first, then anything that fits, within the item and audio bounds.
    fn dispatch_batch(&mut self, index: usize, first: BatchEntry, waited: Duration, now: Instant, ctx: &Context<Self>) {
        let Some(bounds) = self.settings.batch else { return };
        let model = first.item.model.clone();
        let anchor = first.item.audio_ms.max(1) as f64;
        let mut total = first.item.audio_ms;
        let mut entries = vec![BatchEntry { waited, ..first }];
        for similar_only in [true, false] {
            while entries.len() < bounds.max_items {
                let room = bounds.max_audio_ms.saturating_sub(total);
                let next = self.queue.pop_where(|w| match w {
                    Waiter::Batch(e) => {
                        let ratio = e.item.audio_ms.max(1) as f64 / anchor;
                        e.item.model == model
                            && e.item.audio_ms <= room
                            && (!similar_only || (1.0 / SIMILAR_DURATION_RATIO..=SIMILAR_DURATION_RATIO).contains(&ratio))
                    }
                    Waiter::Slot(_) => false,
                });
                let Some(job) = next else { break };
                let waited = job.waited(now);
                if let Waiter::Batch(entry) = job.item {
                    if entry.reply.is_closed() {
                        continue; // its requester went away
                    }
                    total += entry.item.audio_ms;
                    entries.push(BatchEntry { waited, ..entry });
                }
            }
        }
        entries.retain(|e| !e.reply.is_closed());
        if entries.is_empty() {
            return;
        }
        let grant = self.take_slot(index, waited, ctx);
        let Some(executor) = &self.executor else {
            self.untake_slot(grant);
            entries.into_iter().for_each(|e| Waiter::Batch(e).refuse(QueueError::Closed));
            return;
        };
        metrics::histogram!("gatehouse_batch_items").record(entries.len() as f64);
        if let Err(mpsc::error::SendError(batch)) = executor.send(Batch { grant, entries }) {
            self.untake_slot(batch.grant);
            batch.entries.into_iter().for_each(|e| Waiter::Batch(e).refuse(QueueError::Closed));
        }
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
            job.item.refuse(QueueError::Closed);
        }
        Running::Stop
    }
}

/// A request for a slot or a job to batch. It has no reply of its own: a refusal (queue full)
/// goes back through the waiter's channel like a grant, so a request costs one message.
#[derive(Message)]
#[rtype(result = "()")]
struct Enqueue {
    tenant: TenantId,
    weight: u32,
    priority: Priority,
    cost: f64,
    waiter: Waiter,
}

impl Handler<Enqueue> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        let now = Instant::now();
        match self.queue.push(msg.tenant, msg.weight, msg.priority, msg.cost, msg.waiter, now, now + self.settings.deadline) {
            Ok(()) => self.dispatch(ctx),
            Err((crate::scheduler::Admission::TenantFull, waiter)) => waiter.refuse(QueueError::TenantQueueFull),
            Err((_, waiter)) => waiter.refuse(QueueError::QueueFull),
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Release {
    worker_id: Arc<str>,
    outcome: Outcome,
}

impl Handler<Release> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.target.id == msg.worker_id) {
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

    /// A batching queue (`settings.batch` set): formed batches go to `executor`.
    pub fn start_batching(
        workers: Vec<WorkerSpec>,
        settings: QueueSettings,
        executor: mpsc::UnboundedSender<Batch>,
    ) -> InferenceQueueHandle {
        let mut queue = InferenceQueue::new(workers, settings);
        queue.executor = Some(executor);
        InferenceQueueHandle { addr: queue.start() }
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
