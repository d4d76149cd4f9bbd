//! The `QuotaAccountant`: usage metering and quotas.
//!
//! - **Metering.** Each finished request is folded in memory into rollups per (tenant,
//!   credential, model, minute) and committed as one multi-row upsert per flush interval
//!   (`usage.flush_interval_ms`, 1 s by default), whatever the request rate. With `usage.events`
//!   it also writes one lean row per request. `flush` (graceful shutdown) writes everything
//!   pending; a crash loses at most one interval.
//! - **Quotas.** Per tenant and period (the day and the calendar month in the tenant's time zone):
//!   requests, tokens, audio seconds. Hot counters live in memory: what the database held at the
//!   last reload (`usage.quota_refresh_s`, which brings in other instances' usage), plus what this
//!   instance recorded since, plus what its requests in flight have reserved. A request whose
//!   reservation would pass a hard limit is refused (`429 quota_exceeded`); crossing 80% and 100%
//!   of the soft monthly token quota, or a hard limit, writes an alert to the alert outbox.
//!
//! The accountant is a task owning the pending rollups, reached through this handle; the quota
//! book is shared behind a mutex so the admission check never waits for the task.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, DurationRound, NaiveDate, TimeZone, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel::upsert::excluded;
use tokio::sync::{mpsc, oneshot};

use crate::config::UsageConfig;
use crate::db::Db;
use crate::db::schema::{alert_outbox, usage_events, usage_rollups};

/// One finished request.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub tenant_id: String,
    pub credential_id: String,
    pub model: String,
    pub at: DateTime<Utc>,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub audio_ms: u64,
    pub queue_wait_ms: u64,
    pub latency_ms: u64,
}

impl UsageEvent {
    fn amounts(&self) -> Amounts {
        Amounts { requests: 1, tokens: (self.prompt_tokens + self.completion_tokens) as i64, audio_ms: self.audio_ms as i64 }
    }
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

/// What counts against a quota.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub requests: i64,
    pub tokens: i64,
    pub audio_ms: i64,
}

impl std::ops::AddAssign for Amounts {
    fn add_assign(&mut self, o: Amounts) {
        self.requests += o.requests;
        self.tokens += o.tokens;
        self.audio_ms += o.audio_ms;
    }
}

impl std::ops::SubAssign for Amounts {
    fn sub_assign(&mut self, o: Amounts) {
        self.requests -= o.requests;
        self.tokens -= o.tokens;
        self.audio_ms -= o.audio_ms;
    }
}

impl std::ops::Add for Amounts {
    type Output = Amounts;
    fn add(mut self, o: Amounts) -> Amounts {
        self += o;
        self
    }
}

/// Hard caps for one period; `None` = unlimited.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub requests: Option<i64>,
    pub tokens: Option<i64>,
    pub audio_seconds: Option<i64>,
}

impl Caps {
    fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none() && self.audio_seconds.is_none()
    }
}

/// A tenant's quotas, from its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    pub time_zone: chrono_tz::Tz,
    pub daily: Caps,
    pub monthly: Caps,
    pub monthly_token_soft: Option<i64>,
}

impl Quotas {
    pub fn is_unlimited(&self) -> bool {
        self.daily.is_unlimited() && self.monthly.is_unlimited() && self.monthly_token_soft.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// Start of the period containing `now`, in `tz`, as an instant.
    pub fn start(self, tz: chrono_tz::Tz, now: DateTime<Utc>) -> DateTime<Utc> {
        let local = now.with_timezone(&tz).date_naive();
        let first = match self {
            Period::Day => local,
            Period::Month => NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local),
        };
        local_midnight(tz, first)
    }
}

/// The instant a local date begins (the earliest, across a DST fold; the first valid time across
/// a gap).
pub fn local_midnight(tz: chrono_tz::Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Why a quota reservation was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaError {
    /// The request would pass a hard quota.
    Exceeded(String),
    /// The tenant's usage could not be read (database unavailable).
    Unavailable(String),
}

#[derive(Debug, Default)]
struct PeriodBook {
    start: Option<DateTime<Utc>>,
    /// Usage in the database at the last reload, plus what this instance flushed since.
    committed: Amounts,
}

#[derive(Debug, Default)]
struct TenantBook {
    loaded: bool,
    day: PeriodBook,
    month: PeriodBook,
    /// Recorded here, not yet written.
    unflushed: Amounts,
    /// Reserved by requests in flight.
    inflight: Amounts,
    quotas: Option<Quotas>,
    /// (period, start, threshold) alerts already written.
    alerted: HashSet<(String, DateTime<Utc>)>,
}

impl TenantBook {
    fn used(&self, period: Period) -> Amounts {
        let p = match period {
            Period::Day => &self.day,
            Period::Month => &self.month,
        };
        p.committed + self.unflushed + self.inflight
    }
}

type Book = Arc<Mutex<HashMap<String, TenantBook>>>;

fn lock(book: &Book) -> std::sync::MutexGuard<'_, HashMap<String, TenantBook>> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

type Key = (DateTime<Utc>, String, String, String);

enum Command {
    Flush(oneshot::Sender<()>),
}

/// Finished requests' events, waiting for the accountant's next tick. A shared buffer rather
/// than a message each: recording a request wakes no other thread.
type Inbox = Arc<Mutex<Vec<UsageEvent>>>;

#[derive(Clone)]
pub struct QuotaAccountant {
    tx: mpsc::UnboundedSender<Command>,
    inbox: Inbox,
    book: Book,
    db: Db,
    writes: Arc<AtomicU64>,
}

impl QuotaAccountant {
    pub fn start(db: Db, config: &UsageConfig) -> QuotaAccountant {
        let (tx, rx) = mpsc::unbounded_channel();
        let book: Book = Arc::default();
        let inbox: Inbox = Arc::default();
        let writes = Arc::new(AtomicU64::new(0));
        let task = Task {
            inbox: inbox.clone(),
            writes: writes.clone(),
            db: db.clone(),
            book: book.clone(),
            pending: HashMap::new(),
            events: Vec::new(),
            keep_events: config.events,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            refresh_interval: Duration::from_secs(config.quota_refresh_s),
            last_refresh: Instant::now(),
        };
        tokio::spawn(task.run(rx));
        QuotaAccountant { tx, inbox, book, db, writes }
    }

    /// Usage write statements issued so far (one per flush with anything to write).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Never blocks (callable from `Drop`).
    pub fn record(&self, event: UsageEvent) {
        if self.tx.is_closed() {
            tracing::error!("usage accountant has stopped; usage not recorded");
            return;
        }
        lock(&self.book).entry(event.tenant_id.clone()).or_default().unflushed += event.amounts();
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }

    /// Writes everything recorded so far.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Reserves `demand` against the tenant's quotas, or refuses. The hold gives the reservation
    /// back when dropped (after the request's usage was recorded).
    pub async fn reserve(&self, tenant: &str, quotas: &Quotas, demand: Amounts) -> Result<Option<QuotaHold>, QuotaError> {
        if quotas.is_unlimited() {
            return Ok(None);
        }
        let now = Utc::now();
        let day = Period::Day.start(quotas.time_zone, now);
        let month = Period::Month.start(quotas.time_zone, now);
        let current = {
            let book = lock(&self.book);
            book.get(tenant).is_some_and(|t| t.loaded && t.day.start == Some(day) && t.month.start == Some(month))
        };
        if !current {
            let (d, m) =
                load_period_totals(&self.db, tenant.to_owned(), day, month).await.map_err(|e| QuotaError::Unavailable(e.to_string()))?;
            let mut book = lock(&self.book);
            let t = book.entry(tenant.to_owned()).or_default();
            if !(t.loaded && t.day.start == Some(day) && t.month.start == Some(month)) {
                t.loaded = true;
                t.day = PeriodBook { start: Some(day), committed: d };
                t.month = PeriodBook { start: Some(month), committed: m };
                // `unflushed` (recorded, not yet in the database) stays as it is. A flush that
                // commits while this load runs can be missed for one reload interval.
            }
        }
        let mut book = lock(&self.book);
        let t = book.entry(tenant.to_owned()).or_default();
        t.quotas = Some(quotas.clone());
        for (period, caps) in [(Period::Day, &quotas.daily), (Period::Month, &quotas.monthly)] {
            let used = t.used(period);
            let over = |cap: Option<i64>, used: i64, want: i64| cap.filter(|c| used + want > *c);
            let what = if let Some(c) = over(caps.requests, used.requests, demand.requests) {
                Some(format!("{} request quota of {c}", period.as_str()))
            } else if let Some(c) = over(caps.tokens, used.tokens, demand.tokens) {
                let left = (c - used.tokens).max(0);
                Some(format!("{} token quota of {c} ({left} left; this request reserves {})", period.as_str(), demand.tokens))
            } else {
                over(caps.audio_seconds.map(|s| s * 1000), used.audio_ms, demand.audio_ms)
                    .map(|_| format!("{} audio quota of {} s", period.as_str(), caps.audio_seconds.unwrap_or_default()))
            };
            if let Some(what) = what {
                metrics::counter!("gatehouse_quota_exceeded_total", "period" => period.as_str()).increment(1);
                return Err(QuotaError::Exceeded(format!("quota exceeded: this request would pass the tenant's {what}")));
            }
        }
        t.inflight += demand;
        Ok(Some(QuotaHold { book: self.book.clone(), tenant: tenant.to_owned(), demand }))
    }

    /// Usage so far in the period (for tests and the API).
    pub fn used(&self, tenant: &str, period: Period) -> Option<Amounts> {
        lock(&self.book).get(tenant).filter(|t| t.loaded).map(|t| t.used(period))
    }
}

/// A request's quota reservation; released on drop.
#[derive(Debug)]
pub struct QuotaHold {
    book: Book,
    tenant: String,
    demand: Amounts,
}

impl Drop for QuotaHold {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.book).get_mut(&self.tenant) {
            t.inflight -= self.demand;
        }
    }
}

#[derive(QueryableByName)]
struct PeriodTotals {
    #[diesel(sql_type = BigInt)]
    day_requests: i64,
    #[diesel(sql_type = BigInt)]
    day_tokens: i64,
    #[diesel(sql_type = BigInt)]
    day_audio_ms: i64,
    #[diesel(sql_type = BigInt)]
    month_requests: i64,
    #[diesel(sql_type = BigInt)]
    month_tokens: i64,
    #[diesel(sql_type = BigInt)]
    month_audio_ms: i64,
}

/// The tenant's committed usage since `day` and since `month`.
async fn load_period_totals(
    db: &Db,
    tenant: String,
    day: DateTime<Utc>,
    month: DateTime<Utc>,
) -> Result<(Amounts, Amounts), crate::db::DbError> {
    db.run(move |conn| {
        let since = day.min(month);
        let row: PeriodTotals = diesel::sql_query(
            "SELECT coalesce(sum(requests) FILTER (WHERE minute >= $2), 0)::bigint AS day_requests,
                    coalesce(sum(prompt_tokens + completion_tokens) FILTER (WHERE minute >= $2), 0)::bigint AS day_tokens,
                    coalesce(sum(audio_ms) FILTER (WHERE minute >= $2), 0)::bigint AS day_audio_ms,
                    coalesce(sum(requests) FILTER (WHERE minute >= $3), 0)::bigint AS month_requests,
                    coalesce(sum(prompt_tokens + completion_tokens) FILTER (WHERE minute >= $3), 0)::bigint AS month_tokens,
                    coalesce(sum(audio_ms) FILTER (WHERE minute >= $3), 0)::bigint AS month_audio_ms
             FROM usage_rollups WHERE tenant_id = $1 AND minute >= $4",
        )
        .bind::<Text, _>(&tenant)
        .bind::<Timestamptz, _>(day)
        .bind::<Timestamptz, _>(month)
        .bind::<Timestamptz, _>(since)
        .get_result(conn)?;
        Ok((
            Amounts { requests: row.day_requests, tokens: row.day_tokens, audio_ms: row.day_audio_ms },
            Amounts { requests: row.month_requests, tokens: row.month_tokens, audio_ms: row.month_audio_ms },
        ))
    })
    .await
}

struct Task {
    inbox: Inbox,
    writes: Arc<AtomicU64>,
    db: Db,
    book: Book,
    pending: HashMap<Key, Totals>,
    events: Vec<UsageEvent>,
    keep_events: bool,
    flush_interval: Duration,
    refresh_interval: Duration,
    last_refresh: Instant,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Flush(ack)) => {
                        self.flush().await;
                        let _ = ack.send(());
                    }
                    None => {
                        self.flush().await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    self.flush().await;
                    if self.last_refresh.elapsed() >= self.refresh_interval {
                        self.last_refresh = Instant::now();
                        self.refresh().await;
                    }
                }
            }
        }
    }

    fn add(&mut self, e: UsageEvent) {
        let minute = e.at.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(e.at);
        *self.pending.entry((minute, e.tenant_id.clone(), e.credential_id.clone(), e.model.clone())).or_default() += Totals {
            requests: 1,
            errors: i64::from(e.status >= 400),
            prompt_tokens: e.prompt_tokens as i64,
            completion_tokens: e.completion_tokens as i64,
            audio_ms: e.audio_ms as i64,
            queue_wait_ms_sum: e.queue_wait_ms as i64,
            latency_ms_sum: e.latency_ms as i64,
        };
        if self.keep_events {
            self.events.push(e);
        }
    }

    /// One multi-row upsert for everything pending (kept for the next interval if it fails),
    /// then the flushed amounts move from `unflushed` to `committed` in the quota book.
    async fn flush(&mut self) {
        let events = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        events.into_iter().for_each(|e| self.add(e));
        if self.pending.is_empty() {
            return;
        }
        let batch: Vec<(Key, Totals)> = self.pending.drain().collect();
        let events = std::mem::take(&mut self.events);
        let rows = batch.clone();
        let result = self.db.run(move |conn| write(conn, &rows, &events).map_err(Into::into)).await;
        match result {
            Ok(()) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("gatehouse_usage_writes_total").increment(1);
                let mut flushed: HashMap<&str, Amounts> = HashMap::new();
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
                self.alerts().await;
            }
            Err(e) => {
                metrics::counter!("gatehouse_usage_write_failures_total").increment(1);
                tracing::warn!(error = %e, rows = batch.len(), "usage not written; will retry");
                for (k, t) in batch {
                    *self.pending.entry(k).or_default() += t;
                }
            }
        }
    }

    /// Reloads each tracked tenant's committed totals from the database (other instances'
    /// usage); called right after a flush, so nothing is both unflushed and in the database.
    async fn refresh(&mut self) {
        let tenants: Vec<(String, DateTime<Utc>, DateTime<Utc>)> =
            lock(&self.book).iter().filter_map(|(id, t)| Some((id.clone(), t.day.start?, t.month.start?))).collect();
        for (tenant, day, month) in tenants {
            if let Ok((d, m)) = load_period_totals(&self.db, tenant.clone(), day, month).await {
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
    async fn alerts(&mut self) {
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
        let result = self
            .db
            .run(move |conn| {
                let values: Vec<_> = rows
                    .iter()
                    .map(|(tenant, dedup, payload)| {
                        (
                            alert_outbox::tenant_id.eq(Some(tenant)),
                            alert_outbox::kind.eq("quota_threshold"),
                            alert_outbox::dedup_key.eq(dedup),
                            alert_outbox::payload.eq(payload),
                        )
                    })
                    .collect();
                diesel::insert_into(alert_outbox::table).values(values).on_conflict(alert_outbox::dedup_key).do_nothing().execute(conn)?;
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "quota alerts not written");
        }
    }
}

fn write(conn: &mut PgConnection, rows: &[(Key, Totals)], events: &[UsageEvent]) -> QueryResult<()> {
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
    conn.transaction(|conn| {
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
        // Per-request rows, when enabled; chunked under PostgreSQL's 65,535 bind parameters.
        for chunk in events.chunks(5000) {
            let values: Vec<_> = chunk
                .iter()
                .map(|e| {
                    let clamp = |v: u64| v.min(i32::MAX as u64) as i32;
                    (
                        usage_events::occurred_at.eq(e.at),
                        usage_events::id.eq(uuid::Uuid::now_v7()),
                        usage_events::tenant_id.eq(&e.tenant_id),
                        usage_events::credential_id.eq(&e.credential_id),
                        usage_events::model.eq(&e.model),
                        usage_events::status.eq(e.status as i16),
                        usage_events::prompt_tokens.eq(clamp(e.prompt_tokens)),
                        usage_events::completion_tokens.eq(clamp(e.completion_tokens)),
                        usage_events::audio_ms.eq(clamp(e.audio_ms)),
                        usage_events::queue_wait_ms.eq(clamp(e.queue_wait_ms)),
                        usage_events::latency_ms.eq(clamp(e.latency_ms)),
                    )
                })
                .collect();
            diesel::insert_into(usage_events::table).values(values).execute(conn)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_tenant_time_zone() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 23, 30, 0).unwrap();
        // 23:30 UTC on the 30th is already 1 December in Tokyo.
        let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(Period::Month.start(tokyo, now), Utc.with_ymd_and_hms(2026, 11, 30, 15, 0, 0).unwrap());
        assert_eq!(Period::Day.start(tokyo, now), Utc.with_ymd_and_hms(2026, 11, 30, 15, 0, 0).unwrap());
        let utc = chrono_tz::UTC;
        assert_eq!(Period::Month.start(utc, now), Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        assert_eq!(Period::Day.start(ny, now), Utc.with_ymd_and_hms(2026, 11, 30, 5, 0, 0).unwrap());
    }
}
