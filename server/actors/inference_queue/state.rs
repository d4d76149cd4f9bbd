//! `Core`: one pool's queue state — its workers (slots, outstanding work, circuit breaker), the
//! `FairQueue` of waiting requests, the wait statistics and adaptive admission — and the steps
//! that change it. It lives behind the pool's mutex (`Shared`): a request takes a free
//! slot, queues, or returns its slot by locking it for a few hundred nanoseconds on its own
//! thread, and the queue actor takes it for its timers. Nothing here blocks or awaits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use actix::Addr;
use tokio::sync::mpsc;

use super::grant::{Batch, BatchEntry, Grant, Outcome, Waiter};
use super::pool::{Health, PoolWorker, Target, record_failure};
use super::{BatchSettings, InferenceQueue, QueueError, QueueSettings, SIMILAR_DURATION_RATIO, Wake, WorkerSpec, adaptive, stats};
use crate::domain::TenantId;
use crate::scheduler::{Admission, FairQueue, Priority};

pub(super) struct Core {
    pub(super) workers: Vec<PoolWorker>,
    pub(super) queue: FairQueue<TenantId, Waiter>,
    pub(super) settings: QueueSettings,
    pub(super) executor: Option<mpsc::UnboundedSender<Batch>>,
    /// A dispatch is already scheduled for this instant (batch wait).
    pub(super) wake_at: Option<Instant>,
    pub(super) stats: stats::PoolStats,
    pub(super) adaptive: adaptive::Adaptive,
    /// The queue's actor is gone: everything is refused `Closed` (the gateway starts a new one).
    pub(super) closed: bool,
}

/// What a dispatch leaves for the actor: a batch to hold until this instant.
pub(super) type WakeAt = Option<Instant>;

/// One pool's queue state and its actor, shared by the handle and every grant.
pub(super) struct Shared {
    core: Mutex<Core>,
    /// The actor, once started (it schedules the dispatches that batch waits ask for).
    actor: OnceLock<Addr<InferenceQueue>>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock leaves no half-made change worth refusing service for:
        // every step leaves the counters consistent before it can panic.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn new(core: Core) -> Shared {
        Shared { core: Mutex::new(core), actor: OnceLock::new() }
    }

    pub(super) fn set_actor(&self, actor: Addr<InferenceQueue>) {
        let _ = self.actor.set(actor);
    }

    /// Runs `step` on the state; a batch wait it sets up is handed to the actor.
    pub(super) fn with(self: &Arc<Self>, step: impl FnOnce(&mut Core, &Arc<Shared>) -> WakeAt) {
        let wake = step(&mut self.lock(), self);
        if let (Some(at), Some(actor)) = (wake, self.actor.get()) {
            actor.do_send(Wake(at));
        }
    }

    /// A grant's slot comes back (see `Grant`).
    pub(super) fn release(self: &Arc<Self>, worker_id: &str, outcome: Outcome) {
        self.with(|core, shared| core.release(shared, worker_id, outcome));
    }
}

impl Core {
    pub(super) fn new(workers: Vec<WorkerSpec>, settings: QueueSettings, executor: Option<mpsc::UnboundedSender<Batch>>) -> Core {
        let mut core = Core {
            workers: Vec::new(),
            queue: FairQueue::new(settings.limits),
            settings,
            executor,
            wake_at: None,
            stats: stats::PoolStats::new(settings.stats_window),
            adaptive: adaptive::Adaptive::new(settings.wait_target),
            closed: false,
        };
        core.set_workers(workers);
        core
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

    /// A slot at once when nobody waits and a worker has one (no fair order to keep: the queue
    /// is empty); else the request joins the queue, or is refused.
    pub(super) fn enqueue(&mut self, shared: &Arc<Shared>, request: Request) -> WakeAt {
        let now = Instant::now();
        if self.closed {
            request.waiter.refuse(QueueError::Closed);
            return None;
        }
        if self.queue.is_empty() && self.settings.batch.is_none() {
            if let (Some(index), Waiter::Slot(_)) = (self.pick(now), &request.waiter) {
                self.granted(now, Duration::ZERO);
                let grant = self.take_slot(index, Duration::ZERO, shared);
                if let Waiter::Slot(reply) = request.waiter {
                    if let Err(Ok(unsent)) = reply.send(Ok(grant)) {
                        self.untake_slot(unsent);
                    }
                }
                return None;
            }
        }
        if !self.adaptive.admits(&request.tenant, request.weight, self.queue.tenant_len(&request.tenant)) {
            request.waiter.refuse(QueueError::Throttled);
            return None;
        }
        let deadline = now + self.settings.deadline;
        match self.queue.push(request.tenant, request.weight, request.priority, request.cost, request.waiter, now, deadline) {
            Ok(()) => self.dispatch(shared),
            Err((Admission::TenantFull, waiter)) => {
                waiter.refuse(QueueError::TenantQueueFull);
                None
            }
            Err((_, waiter)) => {
                waiter.refuse(QueueError::QueueFull);
                None
            }
        }
    }

    /// A granted request ended: its worker's slot is free again, and its outcome feeds the
    /// circuit breaker.
    pub(super) fn release(&mut self, shared: &Arc<Shared>, worker_id: &str, outcome: Outcome) -> WakeAt {
        if let Some(w) = self.workers.iter_mut().find(|w| &*w.target.id == worker_id) {
            w.outstanding = w.outstanding.saturating_sub(1);
            if outcome != Outcome::Abandoned {
                self.stats.finished(Instant::now(), outcome == Outcome::WorkerFailure);
            }
            match outcome {
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
        self.dispatch(shared)
    }

    /// Refuses everything waiting and everything to come (the actor stopped or died).
    pub(super) fn close(&mut self) {
        self.closed = true;
        while let Some(job) = self.queue.pop() {
            job.item.refuse(QueueError::Closed);
        }
    }

    fn granted(&mut self, now: Instant, waited: Duration) {
        self.stats.waited(now, waited);
        self.adaptive.granted(now, waited);
    }

    /// The worker with the least outstanding work relative to its slots, counting what the
    /// worker itself reports when it does.
    fn pick(&self, now: Instant) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.can_take(now))
            .min_by(|(_, a), (_, b)| a.load(now).total_cmp(&b.load(now)))
            .map(|(i, _)| i)
    }

    /// Takes a slot on worker `index` and makes its grant.
    fn take_slot(&mut self, index: usize, waited: Duration, shared: &Arc<Shared>) -> Grant {
        let worker = &mut self.workers[index];
        worker.outstanding += 1;
        if let Health::Ejected { .. } | Health::HalfOpen { .. } = worker.health {
            worker.health = Health::HalfOpen { probing: true };
        }
        Grant {
            worker_id: worker.target.id.clone(),
            base_url: worker.target.base_url.clone(),
            base: worker.target.base.clone(),
            api_key: worker.target.api_key.clone(),
            waited,
            queue: Some(shared.clone()),
        }
    }

    /// Gives back a slot that was never used (its requester went away). The grant is disarmed
    /// first: dropped armed, it would lock the queue this call already holds.
    fn untake_slot(&mut self, mut grant: Grant) {
        grant.queue = None;
        if let Some(worker) = self.workers.iter_mut().find(|w| w.target.id == grant.worker_id) {
            worker.outstanding = worker.outstanding.saturating_sub(1);
            if let Health::HalfOpen { probing: true } = worker.health {
                worker.health = Health::HalfOpen { probing: false };
            }
        }
    }

    /// Grants free slots to waiting requests in fair order; expires the overdue.
    pub(super) fn dispatch(&mut self, shared: &Arc<Shared>) -> WakeAt {
        let now = Instant::now();
        let mut wake = None;
        for expired in self.queue.expire(now) {
            expired.item.refuse(QueueError::DeadlineExceeded);
        }
        while !self.queue.is_empty() {
            let Some(index) = self.pick(now) else { break };
            if let Some(batch) = self.settings.batch {
                if let Some(hold) = self.batch_hold(batch, now) {
                    wake = hold;
                    break;
                }
            }
            let Some(job) = self.queue.pop() else { break };
            let waited = job.waited(now);
            self.granted(now, waited);
            match job.item {
                Waiter::Slot(reply) => {
                    let grant = self.take_slot(index, waited, shared);
                    if let Err(Ok(unsent)) = reply.send(Ok(grant)) {
                        // The requester went away while waiting: take the slot back quietly.
                        self.untake_slot(unsent);
                    }
                }
                Waiter::Batch(entry) => self.dispatch_batch(index, entry, waited, now, shared),
            }
        }
        self.workers.retain(|w| !(w.removed && w.outstanding == 0));
        wake
    }

    /// With a worker free, holds a batch that could still grow until its oldest job has
    /// waited `max_wait`: Some(hold) to hold it, with the instant to dispatch again when no
    /// dispatch is scheduled for it yet; None to send it now.
    fn batch_hold(&mut self, batch: BatchSettings, now: Instant) -> Option<WakeAt> {
        if batch.max_wait.is_zero() || self.queue.len() >= batch.max_items {
            return None;
        }
        let waiting_audio: u64 = self.queue.iter().map(|q| q.item.audio_ms()).sum();
        if waiting_audio >= batch.max_audio_ms {
            return None;
        }
        let due = self.queue.oldest()? + batch.max_wait;
        if due <= now {
            return None;
        }
        if self.wake_at.is_none_or(|at| at > due || at <= now) {
            self.wake_at = Some(due);
            return Some(Some(due));
        }
        Some(None)
    }

    /// Packs `first` and more waiting jobs of the same model into one batch for worker `index`:
    /// similar durations first, then anything that fits, within the item and audio bounds.
    fn dispatch_batch(&mut self, index: usize, first: BatchEntry, waited: Duration, now: Instant, shared: &Arc<Shared>) {
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
        let grant = self.take_slot(index, waited, shared);
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

    /// One period of adaptive admission (see `adaptive`).
    pub(super) fn adjust_admission(&mut self) {
        self.adaptive.adjust(Instant::now(), self.queue.oldest(), self.queue.depths());
    }
}

/// A request for a slot or a job to batch.
pub(super) struct Request {
    pub(super) tenant: TenantId,
    pub(super) weight: u32,
    pub(super) priority: Priority,
    pub(super) cost: f64,
    pub(super) waiter: Waiter,
}
