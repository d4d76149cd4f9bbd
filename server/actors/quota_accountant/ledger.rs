//! The ledger the accountant keeps: events recorded by requests and not yet folded (each also in
//! the usage journal, when it is on), the pending per-minute rollups, and the quota book. It
//! outlives any one accountant actor, so an actor that dies and is started again loses nothing
//! that was recorded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, DurationRound, Utc};

use super::book::{Book, lock};
use super::journal::{self, Journal};
use crate::db::Db;
use crate::db::alerts::{self, NewAlert};
use crate::db::usage::{self as usage_db, RollupKey, Totals};
use crate::domain::{Severity, TenantId};
use crate::metering::{Amounts, Period, UsageEvent};

/// Finished requests' events waiting for the next flush, and the journal they are appended to
/// (one lock, so the events taken at a flush are exactly those of the segments it closes).
#[derive(Default)]
pub(super) struct Inbox {
    events: Vec<UsageEvent>,
    journal: Option<Journal>,
}

#[derive(Default)]
pub(super) struct Ledger {
    /// A shared buffer rather than a message per request: recording a request wakes no other
    /// thread.
    inbox: Mutex<Inbox>,
    journal_dir: Option<PathBuf>,
    /// Segments found at start-up, not yet read back.
    unreplayed: Mutex<Vec<journal::Segment>>,
    pub(super) book: Book,
    pending: Mutex<HashMap<RollupKey, Totals>>,
    events: Mutex<Vec<UsageEvent>>,
    pub(super) keep_events: bool,
    pub(super) writes: AtomicU64,
}

impl Ledger {
    pub(super) fn new(keep_events: bool) -> Ledger {
        Ledger { keep_events, ..Ledger::default() }
    }

    /// A ledger journaled in `dir`. The segments already there (a crash's leftovers) are read
    /// back by the first flush that can read the database's mark (`replay`).
    pub(super) fn journaled(keep_events: bool, dir: &Path) -> anyhow::Result<Ledger> {
        use anyhow::Context;
        let (journal, segments) = Journal::open(dir).with_context(|| format!("cannot open the usage journal in {}", dir.display()))?;
        Ok(Ledger {
            keep_events,
            journal_dir: Some(dir.to_owned()),
            inbox: Mutex::new(Inbox { events: Vec::new(), journal: Some(journal) }),
            unreplayed: Mutex::new(segments),
            ..Ledger::default()
        })
    }

    /// Reads back the segments found at start-up that the database has not applied, ahead of
    /// anything recorded since, and removes those it has. False while the mark cannot be read
    /// (no flush until then: writing without the replay could not be marked correctly).
    async fn replay(&self, db: &Db) -> bool {
        let segments = std::mem::take(&mut *self.unreplayed.lock().unwrap_or_else(|p| p.into_inner()));
        let (Some(dir), false) = (&self.journal_dir, segments.is_empty()) else { return true };
        let Some(id) = lock_inbox(&self.inbox).journal.as_ref().map(|j| j.id().to_owned()) else { return true };
        let applied = match db.run(move |conn| Ok(usage_db::journal_mark(conn, &id)?)).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::warn!(error = %e, "usage journal mark not readable yet; usage write postponed");
                *self.unreplayed.lock().unwrap_or_else(|p| p.into_inner()) = segments;
                return false;
            }
        };
        let mut events = Vec::new();
        for segment in segments.iter().filter(|s| s.number as i64 > applied) {
            match journal::read_segment(&segment.path) {
                Ok(found) => events.extend(found),
                Err(e) => {
                    let kept = segment.path.with_extension("unreadable");
                    tracing::error!(error = %e, path = %segment.path.display(), kept = %kept.display(), "usage journal segment unreadable; kept aside, not billed");
                    let _ = std::fs::rename(&segment.path, &kept);
                }
            }
        }
        journal::remove_through(dir, applied.max(0) as u64);
        if !events.is_empty() {
            tracing::warn!(requests = events.len(), "usage of requests served before a crash read back from the journal");
            let mut book = lock(&self.book);
            for e in &events {
                book.entry(e.tenant_id.clone()).or_default().unflushed += e.amounts();
            }
        }
        let mut inbox = lock_inbox(&self.inbox);
        events.append(&mut inbox.events);
        inbox.events = events;
        true
    }

    /// Takes one finished request's usage: into the journal (before the answer completes),
    /// then into the inbox.
    pub(super) fn record(&self, event: UsageEvent) {
        let mut inbox = lock_inbox(&self.inbox);
        if let Some(journal) = inbox.journal.as_mut() {
            journal.append(&event);
        }
        inbox.events.push(event);
    }

    /// Folds one event into the pending rollups (and the per-request rows, when kept).
    fn add(&self, pending: &mut HashMap<RollupKey, Totals>, events: &mut Vec<UsageEvent>, e: UsageEvent) {
        let minute = e.at.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(e.at);
        *pending.entry((minute, e.tenant_id.clone(), e.credential_id.clone(), e.model.clone())).or_default() += Totals {
            requests: 1,
            errors: i64::from(e.status >= 400),
            prompt_tokens: e.prompt_tokens as i64,
            completion_tokens: e.completion_tokens as i64,
            audio_ms: e.audio_ms as i64,
            queue_wait_ms_sum: e.queue_wait_ms as i64,
            latency_ms_sum: e.latency_ms as i64,
        };
        if self.keep_events {
            events.push(e);
        }
    }

    /// One multi-row upsert for everything pending (kept for the next interval if it fails),
    /// then the flushed amounts move from `unflushed` to `committed` in the quota book.
    pub(super) async fn flush(&self, db: &Db) {
        if !self.replay(db).await {
            return;
        }
        let nothing_pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
        let (arrived, closed) = {
            let mut inbox = lock_inbox(&self.inbox);
            if inbox.events.is_empty() && nothing_pending {
                return;
            }
            let closed = match inbox.journal.as_mut().map(Journal::rotate) {
                None => None,
                Some(Ok((segment, file))) => Some((segment, file)),
                Some(Err(e)) => {
                    // Without a closed segment to mark, writing would bill these again after a
                    // crash: keep them for the next interval.
                    metrics::counter!("gatehouse_usage_journal_errors_total").increment(1);
                    tracing::error!(error = %e, "usage journal segment not rotated; usage write postponed");
                    return;
                }
            };
            (std::mem::take(&mut inbox.events), closed)
        };
        let mark = match (closed, &self.journal_dir) {
            (Some((segment, file)), Some(_)) => {
                // The closed segment reaches the disk before its usage is written.
                let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
                if !matches!(synced, Ok(Ok(()))) {
                    tracing::warn!("usage journal segment {segment} not synced");
                }
                let id = lock_inbox(&self.inbox).journal.as_ref().map(|j| j.id().to_owned());
                id.map(|id| (id, segment))
            }
            _ => None,
        };
        let (batch, events) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            arrived.into_iter().for_each(|e| self.add(&mut pending, &mut events, e));
            if pending.is_empty() {
                return;
            }
            (pending.drain().collect::<Vec<(RollupKey, Totals)>>(), std::mem::take(&mut *events))
        };
        let (rows, kept, applied) = (batch.clone(), events.clone(), mark.clone());
        let result = db
            .run(move |conn| Ok(usage_db::write_rollups(conn, &rows, &kept, applied.as_ref().map(|(id, n)| (id.as_str(), *n as i64)))?))
            .await;
        match result {
            Ok(()) => {
                if let (Some((_, segment)), Some(dir)) = (&mark, &self.journal_dir) {
                    journal::remove_through(dir, *segment);
                }
                self.writes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("gatehouse_usage_writes_total").increment(1);
                let mut flushed: HashMap<&TenantId, Amounts> = HashMap::new();
                for ((_, tenant, _, _), t) in &batch {
                    *flushed.entry(tenant).or_default() +=
                        Amounts { requests: t.requests, tokens: t.prompt_tokens + t.completion_tokens, audio_ms: t.audio_ms };
                }
                {
                    let mut book = lock(&self.book);
                    for (tenant, amounts) in flushed {
                        if let Some(t) = book.get_mut(tenant) {
                            t.unflushed -= amounts;
                            t.day.committed += amounts;
                            t.month.committed += amounts;
                        }
                    }
                }
                self.alerts(db).await;
            }
            Err(e) => {
                metrics::counter!("gatehouse_usage_write_failures_total").increment(1);
                tracing::warn!(error = %e, rows = batch.len(), "usage not written; will retry");
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (k, t) in batch {
                    *pending.entry(k).or_default() += t;
                }
                let mut kept = self.events.lock().unwrap_or_else(|p| p.into_inner());
                let newer = std::mem::replace(&mut *kept, events);
                kept.extend(newer);
            }
        }
    }

    /// Reloads each tracked tenant's committed totals from the database (other instances'
    /// usage); called right after a flush, so nothing is both unflushed and in the database.
    pub(super) async fn refresh(&self, db: &Db) {
        let tenants: Vec<(TenantId, DateTime<Utc>, DateTime<Utc>)> =
            lock(&self.book).iter().filter_map(|(id, t)| Some((id.clone(), t.day.start?, t.month.start?))).collect();
        for (tenant, day, month) in tenants {
            if let Ok((d, m)) = load_totals(db, &tenant, day, month).await {
                let mut book = lock(&self.book);
                if let Some(t) = book.get_mut(&tenant).filter(|t| t.day.start == Some(day) && t.month.start == Some(month)) {
                    t.day.committed = d;
                    t.month.committed = m;
                }
            }
        }
    }

    /// Alert-outbox rows for thresholds crossed: 80% and 100% of the soft monthly token quota,
    /// and 100% of each hard quota. The outbox's unique dedup key makes this idempotent across
    /// instances.
    async fn alerts(&self, db: &Db) {
        let mut rows = Vec::new();
        {
            let mut book = lock(&self.book);
            for (tenant, t) in book.iter_mut() {
                let Some(q) = t.quotas.clone() else { continue };
                let mut thresholds: Vec<(Period, &str, i64, i64, u32)> = Vec::new();
                let (day, month) = (t.used(Period::Day), t.used(Period::Month));
                if let Some(soft) = q.monthly_token_soft {
                    thresholds.push((Period::Month, "tokens_soft", month.tokens, soft, 80));
                    thresholds.push((Period::Month, "tokens_soft", month.tokens, soft, 100));
                }
                for (period, caps, used) in [(Period::Day, q.daily, day), (Period::Month, q.monthly, month)] {
                    if let Some(c) = caps.requests {
                        thresholds.push((period, "requests", used.requests, c, 100));
                    }
                    if let Some(c) = caps.tokens {
                        thresholds.push((period, "tokens", used.tokens, c, 100));
                    }
                    if let Some(c) = caps.audio_seconds {
                        thresholds.push((period, "audio_seconds", used.audio_ms / 1000, c, 100));
                    }
                }
                for (period, metric, used, limit, percent) in thresholds {
                    let Some(start) = (match period {
                        Period::Day => t.day.start,
                        Period::Month => t.month.start,
                    }) else {
                        continue;
                    };
                    if used * 100 < limit * i64::from(percent) {
                        continue;
                    }
                    let dedup = format!("quota:{tenant}:{}:{metric}:{}:{percent}", period.as_str(), start.format("%Y-%m-%d"));
                    if t.alerted.insert((dedup.clone(), start)) {
                        let payload = serde_json::json!({
                            "tenant_id": tenant, "period": period.as_str(), "period_start": start, "metric": metric,
                            "used": used, "limit": limit, "percent": percent,
                        });
                        rows.push((tenant.clone(), dedup, payload));
                    }
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let result = db
            .run(move |conn| {
                use diesel::Connection;
                conn.transaction(|conn| {
                    for (tenant, dedup_key, payload) in &rows {
                        let alert =
                            NewAlert { tenant: Some(tenant), kind: "quota_threshold", dedup_key, severity: Severity::Warning, payload };
                        alerts::enqueue(conn, &alert)?;
                    }
                    Ok::<(), diesel::result::Error>(())
                })?;
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "quota alerts not written");
        }
    }
}

fn lock_inbox(inbox: &Mutex<Inbox>) -> std::sync::MutexGuard<'_, Inbox> {
    inbox.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tenant's committed usage since `day` and since `month`.
pub(super) async fn load_totals(
    db: &Db,
    tenant: &TenantId,
    day: DateTime<Utc>,
    month: DateTime<Utc>,
) -> Result<(Amounts, Amounts), crate::db::DbError> {
    let tenant = tenant.clone();
    db.run(move |conn| Ok(usage_db::period_totals(conn, &tenant, day, month)?)).await
}
