//! One queue per worker pool: the pool's workers (slots, outstanding work, health and
//! circuit-breaker state) and a `FairQueue` of waiting requests across tenants; a worker slot
//! goes to the next request by fair share. The state (`state::Core`) sits behind the pool's
//! mutex, and requests take and return slots on their own threads: a pool with a free slot and
//! nobody waiting grants at once, with no message and no thread switch, and fair order only
//! matters once requests wait. The `InferenceQueue` actor owns the clock: deadlines, batch waits
//! and adaptive admission. Nothing here touches request or response bodies: the handler streams
//! the bytes itself and returns the slot by dropping (or finishing) its `Grant`. Reached only
//! through `InferenceQueueHandle`.
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
mod state;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::scheduler::QueueLimits;
pub use adaptive::AdaptiveStatus;
pub use grant::{AlignDone, AlignFailure, AlignItem, AlignReply, Batch, BatchEntry, Grant, ItemResult, Outcome};
pub use handle::{InferenceQueueHandle, QueueStatus};
pub use pool::{Health, WorkerSpec, WorkerStatus};
use state::Shared;
use state::WakeAt;
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

/// The pool's actor: it owns the queue's clock (deadlines, batch waits, adaptive admission)
/// and nothing else; requests reach the shared `Core` directly.
pub struct InferenceQueue {
    shared: Arc<Shared>,
}

impl InferenceQueue {
    /// Dispatches (for expired deadlines and held batches) and schedules the batch wake-up the
    /// dispatch asks for.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let wake = self.shared.lock().dispatch(&self.shared);
        self.wake(wake, ctx);
    }

    fn wake(&mut self, at: WakeAt, ctx: &mut Context<Self>) {
        let Some(at) = at else { return };
        ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.shared.lock().wake_at = None;
            act.tick(ctx);
        });
    }
}

impl Actor for InferenceQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        if self.shared.lock().settings.wait_target.is_some() {
            ctx.run_interval(adaptive::CONTROL_PERIOD, |act, _| act.shared.lock().adjust_admission());
        }
    }
}

impl Drop for InferenceQueue {
    /// Stopped or died (a panic in a handler): the waiting requests are answered `Closed`, and
    /// so is every later one that still holds this queue's handle.
    fn drop(&mut self) {
        self.shared.lock().close();
    }
}

/// Asks the actor to dispatch at an instant (a batch held to fill).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Wake(pub(super) Instant);

impl Handler<Wake> for InferenceQueue {
    type Result = ();

    fn handle(&mut self, msg: Wake, ctx: &mut Self::Context) {
        self.wake(Some(msg.0), ctx);
    }
}
