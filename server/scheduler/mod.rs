//! Scheduling core for the GPU job queue: `FairQueue`, a per-tenant weighted fair queue with
//! priority classes, bounds and deadlines. Pure data structure, no I/O and no actix: the
//! `InferenceQueue` actor owns one per pool and drives it with the clock.

pub mod fair_queue;

pub use fair_queue::{Admission, FairQueue, Priority, QueueLimits, Queued};
