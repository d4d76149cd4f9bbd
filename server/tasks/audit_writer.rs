//! `AuditLog`: the asynchronous audit writer for events raised on request paths (authentication
//! failures, token revocations). Handlers hand events over without touching the database; a
//! background task writes them in batches (one multi-row INSERT per batch). `shutdown` drains
//! everything still queued, so graceful shutdown loses nothing. Credential changes made through
//! the management API are audited in their own transaction instead (see `service`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::db::audit::{self, AuditEvent};
use crate::tasks::Supervisor;

const QUEUE: usize = 10_000;
const BATCH: usize = 500;

enum Command {
    Record(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Command>,
}

impl AuditLog {
    /// Starts the writer under the supervisor; a writer that died is started again on the same
    /// queue, so queued events wait rather than vanish.
    pub fn start(db: Db, tasks: &Arc<Supervisor>) -> AuditLog {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        tasks.spawn("audit_writer", move || writer(db.clone(), rx.clone()));
        AuditLog { tx }
    }

    /// Queues an event; waits only when the queue is full (back-pressure rather than loss).
    pub async fn record(&self, event: AuditEvent) {
        if self.tx.send(Command::Record(Box::new(event))).await.is_err() {
            tracing::error!("audit writer has stopped; event not recorded");
        }
    }

    /// Writes everything queued so far; returns when it is in the database (or given up).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn writer(db: Db, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Command>>>) {
    let mut rx = rx.lock().await;
    let mut batch: Vec<AuditEvent> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut acks = Vec::new();
        let push = |cmd: Command, batch: &mut Vec<AuditEvent>, acks: &mut Vec<oneshot::Sender<()>>| match cmd {
            Command::Record(e) => batch.push(*e),
            Command::Flush(ack) => acks.push(ack),
        };
        push(first, &mut batch, &mut acks);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(cmd) => push(cmd, &mut batch, &mut acks),
                Err(_) => break,
            }
        }
        write_with_retry(&db, &mut batch).await;
        for ack in acks {
            let _ = ack.send(());
        }
    }
    write_with_retry(&db, &mut batch).await;
}

/// Retries a failed batch a few times (the database may be restarting); events are dropped only
/// after that, and the drop is logged with the count.
async fn write_with_retry(db: &Db, batch: &mut Vec<AuditEvent>) {
    if batch.is_empty() {
        return;
    }
    let events = std::mem::take(batch);
    let count = events.len();
    let events = std::sync::Arc::new(events);
    for attempt in 0..5u32 {
        let to_write = events.clone();
        match db.run(move |conn| Ok(audit::insert_many(conn, &to_write)?)).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(attempt, events = count, error = %e, "audit batch not written; retrying");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        }
    }
    tracing::error!(events = count, "audit events lost after retries");
}
