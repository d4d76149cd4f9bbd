//! `UsageSink`: per-request usage folded in memory into rollups per (tenant, credential, model,
//! minute) and written as one multi-row upsert per flush interval (1 s), whatever the request
//! rate — no per-request database write on the inference path. `flush` (called on graceful
//! shutdown) writes everything pending; a crash loses at most one interval. The quota issue's
//! `QuotaAccountant` takes this over and adds limits on top.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::db::schema::usage_rollups;

pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// One finished request.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub tenant_id: String,
    pub credential_id: String,
    pub model: String,
    pub at: DateTime<Utc>,
    pub error: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub audio_ms: u64,
    pub queue_wait_ms: u64,
    pub latency_ms: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    audio_ms: i64,
    queue_wait_ms_sum: i64,
    latency_ms_sum: i64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.audio_ms += o.audio_ms;
        self.queue_wait_ms_sum += o.queue_wait_ms_sum;
        self.latency_ms_sum += o.latency_ms_sum;
    }
}

type Key = (DateTime<Utc>, String, String, String);

enum Command {
    Record(UsageEvent),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::UnboundedSender<Command>,
}

impl UsageSink {
    pub fn start(db: Db) -> UsageSink {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, rx));
        UsageSink { tx }
    }

    /// Never blocks (callable from `Drop`).
    pub fn record(&self, event: UsageEvent) {
        if self.tx.send(Command::Record(event)).is_err() {
            tracing::error!("usage sink has stopped; usage not recorded");
        }
    }

    /// Writes everything recorded so far.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

async fn run(db: Db, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut pending: HashMap<Key, Totals> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Record(e)) => add(&mut pending, e),
                Some(Command::Flush(ack)) => {
                    while let Ok(Command::Record(e)) = rx.try_recv() {
                        add(&mut pending, e);
                    }
                    write(&db, &mut pending).await;
                    let _ = ack.send(());
                }
                None => {
                    write(&db, &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => write(&db, &mut pending).await,
        }
    }
}

fn add(pending: &mut HashMap<Key, Totals>, e: UsageEvent) {
    let minute = e.at.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(e.at);
    *pending.entry((minute, e.tenant_id, e.credential_id, e.model)).or_default() += Totals {
        requests: 1,
        errors: i64::from(e.error),
        prompt_tokens: e.prompt_tokens as i64,
        completion_tokens: e.completion_tokens as i64,
        audio_ms: e.audio_ms as i64,
        queue_wait_ms_sum: e.queue_wait_ms as i64,
        latency_ms_sum: e.latency_ms as i64,
    };
}

/// One multi-row upsert for everything pending; kept for the next interval if it fails.
async fn write(db: &Db, pending: &mut HashMap<Key, Totals>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<(Key, Totals)> = pending.drain().collect();
    let rows = batch.clone();
    let result = db
        .run(move |conn| {
            let values: Vec<_> = rows
                .iter()
                .map(|((minute, tenant, credential, model), t)| {
                    (
                        usage_rollups::minute.eq(*minute),
                        usage_rollups::tenant_id.eq(tenant),
                        usage_rollups::credential_id.eq(credential),
                        usage_rollups::model.eq(model),
                        usage_rollups::requests.eq(t.requests),
                        usage_rollups::errors.eq(t.errors),
                        usage_rollups::prompt_tokens.eq(t.prompt_tokens),
                        usage_rollups::completion_tokens.eq(t.completion_tokens),
                        usage_rollups::audio_ms.eq(t.audio_ms),
                        usage_rollups::queue_wait_ms_sum.eq(t.queue_wait_ms_sum),
                        usage_rollups::latency_ms_sum.eq(t.latency_ms_sum),
                    )
                })
                .collect();
            diesel::insert_into(usage_rollups::table)
                .values(values)
                .on_conflict((usage_rollups::minute, usage_rollups::tenant_id, usage_rollups::credential_id, usage_rollups::model))
                .do_update()
                .set((
                    usage_rollups::requests.eq(usage_rollups::requests + excluded(usage_rollups::requests)),
                    usage_rollups::errors.eq(usage_rollups::errors + excluded(usage_rollups::errors)),
                    usage_rollups::prompt_tokens.eq(usage_rollups::prompt_tokens + excluded(usage_rollups::prompt_tokens)),
                    usage_rollups::completion_tokens.eq(usage_rollups::completion_tokens + excluded(usage_rollups::completion_tokens)),
                    usage_rollups::audio_ms.eq(usage_rollups::audio_ms + excluded(usage_rollups::audio_ms)),
                    usage_rollups::queue_wait_ms_sum.eq(usage_rollups::queue_wait_ms_sum + excluded(usage_rollups::queue_wait_ms_sum)),
                    usage_rollups::latency_ms_sum.eq(usage_rollups::latency_ms_sum + excluded(usage_rollups::latency_ms_sum)),
                ))
                .execute(conn)?;
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, rows = batch.len(), "usage not written; will retry");
        for (k, t) in batch {
            *pending.entry(k).or_default() += t;
        }
    }
}
