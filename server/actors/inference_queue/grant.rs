//! What the queue hands out: a `Grant` (a worker slot, returned when dropped or finished), and for
//! aligner pools the jobs (`AlignItem`) it packs into a `Batch` with their reply channels.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use tokio::sync::oneshot;

use super::QueueError;
use super::state::Shared;
use crate::domain::AlignedUnit;

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
    pub(super) base: Option<Arc<reqwest::Url>>,
    pub api_key: Option<Arc<str>>,
    pub waited: Duration,
    /// The queue the slot goes back to (None once returned).
    pub(super) queue: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("worker_id", &self.worker_id).field("waited", &self.waited).finish()
    }
}

impl Grant {
    /// The worker's URL for `path` (`/v1/…`): the base URL followed by the path, from the base
    /// parsed once per worker (None if it does not parse; the caller then sends the text).
    pub fn url(&self, path: &str) -> Option<reqwest::Url> {
        self.base.as_ref()?.join(path.trim_start_matches('/')).ok()
    }

    /// Returns the slot, and the request's outcome to the circuit breaker (on this thread: the
    /// next waiting request, if any, is granted by this call).
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(queue) = self.queue.take() {
            queue.release(&self.worker_id, outcome);
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.release(&self.worker_id, Outcome::Abandoned);
        }
    }
}

pub(super) type Reply = oneshot::Sender<Result<Grant, QueueError>>;

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
pub(super) enum Waiter {
    Slot(Reply),
    Batch(BatchEntry),
}

impl Waiter {
    pub(super) fn refuse(self, e: QueueError) {
        match self {
            Waiter::Slot(reply) => drop(reply.send(Err(e))),
            Waiter::Batch(entry) => drop(entry.reply.send(Err(AlignFailure::Queue(e)))),
        }
    }

    pub(super) fn audio_ms(&self) -> u64 {
        match self {
            Waiter::Slot(_) => 0,
            Waiter::Batch(entry) => entry.item.audio_ms,
        }
    }
}

/// One alignment job: checked 16 kHz mono PCM16 WAV audio and its cleaned transcript.
#[derive(Debug, Clone)]
pub struct AlignItem {
    pub model: Arc<str>,
    pub wav: Bytes,
    pub text: String,
    /// The model's language name (`English`).
    pub language: &'static str,
    pub audio_ms: u64,
}

/// What the worker answered for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    Aligned {
        duration_ms: u64,
        items: Vec<AlignedUnit>,
    },
    /// The worker refused this item alone (`invalid_audio`, `alignment_failed`, …).
    Refused {
        code: String,
        message: String,
    },
}

/// A finished item, with how it was served.
#[derive(Debug, Clone)]
pub struct AlignDone {
    pub result: ItemResult,
    pub waited: Duration,
    pub batch_size: usize,
    pub worker_id: String,
}

/// Why an item got no answer from a worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlignFailure {
    #[error("{0}")]
    Queue(QueueError),
    #[error("the aligner worker failed: {0}")]
    Worker(String),
    #[error("the aligner worker did not answer in time")]
    Timeout,
}

pub type AlignReply = Result<AlignDone, AlignFailure>;
