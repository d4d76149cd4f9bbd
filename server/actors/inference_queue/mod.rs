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

mod adaptive;
mod grant;
mod handle;
mod pool;
mod stats;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::domain::TenantId;
use crate::scheduler::{FairQueue, QueueLimits};
pub use adaptive::AdaptiveStatus;
use grant::Waiter;
pub use grant::{AlignDone, AlignFailure, AlignItem, AlignReply, Batch, BatchEntry, Grant, ItemResult, Outcome};
pub use handle::{HealthReport, InferenceQueueHandle, QueueStatus};
pub use pool::{Health, WorkerSpec, WorkerStatus};
use pool::{PoolWorker, Target};
pub use stats::WindowStats;

const TICK: Duration = Duration::from_millis(50);
/// A worker's own load reading (vLLM's `/metrics`) counts for this long.
pub(crate) const LOAD_REPORT_TTL: Duration = Duration::from_secs(10);

/// Why no slot was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the tenant's queue for this model is full")]
    TenantQueueFull,
    #[error("the queue for this model is full")]
    QueueFull,
    #[error("no worker became available within the queue deadline")]
    DeadlineExceeded,
    #[error("the pool is saturated and the tenant has more than its fair share waiting")]
    Throttled,
    #[error("the pool is shutting down")]
    Closed,
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
    /// Consecutive failures that eject a worker.
    pub eject_after: u32,
    /// Batching (aligner pools); None grants one slot per request.
    pub batch: Option<BatchSettings>,
    /// How far back the queue's wait and failure statistics look (for the alert rules).
    pub stats_window: Duration,
    /// Adaptive admission: the queue wait the pool aims to keep under (None: off).
    pub wait_target: Option<Duration>,
}

pub struct InferenceQueue {
    workers: Vec<PoolWorker>,
    queue: FairQueue<TenantId, Waiter>,
    pub(super) settings: QueueSettings,
    pub(super) executor: Option<mpsc::UnboundedSender<Batch>>,
    /// A dispatch is already scheduled for this instant (batch wait).
    wake_at: Option<Instant>,
    stats: stats::PoolStats,
    adaptive: adaptive::Adaptive,
}

impl InferenceQueue {
    pub fn new(workers: Vec<WorkerSpec>, settings: QueueSettings) -> Self {
        let mut q = InferenceQueue {
            workers: Vec::new(),
            queue: FairQueue::new(settings.limits),
            settings,
            executor: None,
            wake_at: None,
            stats: stats::PoolStats::new(settings.stats_window),
            adaptive: adaptive::Adaptive::new(settings.wait_target),
        };
        q.set_workers(workers);
        q
    }

    pub(super) fn set_workers(&mut self, specs: Vec<WorkerSpec>) {
        let mut old: HashMap<String, PoolWorker> = self.workers.drain(..).map(|w| (w.spec.id.clone(), w)).collect();
        for spec in specs {
            let state = match old.remove(&spec.id) {
                Some(mut w) => {
                    w.target = Target::of(&spec);
                    w.spec = spec;
                    w
                }
                None => PoolWorker {
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

    pub(super) fn dispatch(&mut self, ctx: &mut Context<Self>) {
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
            self.stats.waited(now, waited);
            self.adaptive.granted(now, waited);
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
                self.adaptive.granted(now, waited);
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

impl InferenceQueue {
    /// One period of adaptive admission (see `adaptive`).
    fn adjust_admission(&mut self) {
        self.adaptive.adjust(Instant::now(), self.queue.oldest(), self.queue.depths());
    }
}

impl Actor for InferenceQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(10_000);
        ctx.run_interval(TICK, |act, ctx| act.dispatch(ctx));
        if self.settings.wait_target.is_some() {
            ctx.run_interval(adaptive::CONTROL_PERIOD, |act, _| act.adjust_admission());
        }
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        while let Some(job) = self.queue.pop() {
            job.item.refuse(QueueError::Closed);
        }
        Running::Stop
    }
}
