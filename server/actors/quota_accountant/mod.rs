//! The `QuotaAccountant`: usage metering and quotas.
//!
//! - **Metering.** Each finished request is folded in memory into rollups per (tenant,
//!   credential, model, minute) and committed as one multi-row upsert per flush interval
//!   (`usage.flush_interval_ms`, 1 s by default), whatever the request rate. With `usage.events`
//!   it also writes one lean row per request. `flush` (graceful shutdown) writes everything
//!   pending. Each request's usage is also appended to a local journal before its answer
//!   completes (`journal`), so a crash loses nothing: a restarted instance writes it, once.
//! - **Quotas.** Per tenant and period (the day and the calendar month in the tenant's time zone):
//!   requests, tokens, audio seconds. Hot counters live in memory: what the database held at the
//!   last reload (`usage.quota_refresh_s`, which brings in other instances' usage), plus what this
//!   instance recorded since, plus what its requests in flight have reserved. A request whose
//!   reservation would pass a hard limit is refused (`429 quota_exceeded`); crossing 80% and 100%
//!   of the soft monthly token quota, or a hard limit, writes an alert to the alert outbox.
//!
//! The `QuotaAccountant` actor owns the timing: it flushes every interval and reloads the book
//! now and then, one at a time. Requests never message it: `QuotaAccountantHandle::record` and
//! `reserve` work on the shared `Ledger` (behind short mutexes), so the admission check never
//! waits for the actor. An actor that dies is started again by its handle (`revive_if_dead`,
//! called by the supervisor's watchdog) on the same ledger, so nothing recorded is lost.

mod book;
mod journal;
mod ledger;
mod shared;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::config::{RedisFailure, UsageConfig};
use crate::db::Db;
use crate::domain::TenantId;
use crate::limits::shared::RedisStore;
use crate::metering::{Amounts, Caps, Period, QuotaError, Quotas, UsageEvent};
pub use book::QuotaHold;
use book::{PeriodBook, lock};
use ledger::{Ledger, load_totals};

/// The actor: flushes the ledger every `flush_interval`, reloads the quota book every
/// `refresh_interval`, one operation at a time.
pub struct QuotaAccountant {
    ledger: Arc<Ledger>,
    db: Db,
    flush_interval: Duration,
    refresh_interval: Duration,
    last_refresh: Instant,
}

impl Actor for QuotaAccountant {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.flush_interval, |act, ctx| {
            let (ledger, db) = (act.ledger.clone(), act.db.clone());
            let refresh = act.last_refresh.elapsed() >= act.refresh_interval;
            if refresh {
                act.last_refresh = Instant::now();
            }
            // `wait`: no other message or tick runs until this flush (and reload) is done.
            ctx.wait(
                async move {
                    ledger.flush(&db).await;
                    if refresh {
                        ledger.refresh(&db).await;
                    }
                }
                .into_actor(act),
            );
        });
    }
}

/// Writes everything recorded so far (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for QuotaAccountant {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let (ledger, db) = (self.ledger.clone(), self.db.clone());
        AtomicResponse::new(Box::pin(async move { ledger.flush(&db).await }.into_actor(self)))
    }
}

/// Test builds only: a message whose handler panics.
#[cfg(feature = "test-hooks")]
#[derive(Message)]
#[rtype(result = "()")]
struct Crash;

#[cfg(feature = "test-hooks")]
impl Handler<Crash> for QuotaAccountant {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!("QuotaAccountant crashed on purpose (test hook)");
    }
}

/// The only way to reach the quota accountant.
#[derive(Clone)]
pub struct QuotaAccountantHandle {
    ledger: Arc<Ledger>,
    db: Db,
    config: UsageConfig,
    addr: Arc<RwLock<Addr<QuotaAccountant>>>,
    arbiter: actix_rt::ArbiterHandle,
    /// Quota counters shared by every instance (with Redis).
    shared: Option<Arc<shared::SharedQuotas>>,
    on_error: RedisFailure,
}

impl QuotaAccountantHandle {
    /// Starts the accountant on the current arbiter, without a journal (usage recorded since the
    /// last flush is lost if the process dies).
    pub fn start(db: Db, config: &UsageConfig) -> QuotaAccountantHandle {
        Self::start_with(Ledger::new(config.events), db, config)
    }

    /// Keeps the quota counters in `redis` (shared by every instance), falling back to this
    /// instance's book when Redis fails and `on_error` is `local`.
    pub fn with_redis(mut self, redis: Option<Arc<RedisStore>>, on_error: RedisFailure) -> QuotaAccountantHandle {
        self.shared = redis.map(shared::SharedQuotas::start);
        self.on_error = on_error;
        self
    }

    /// Starts the accountant with the usage journal in `config.journal_dir` (when
    /// `config.journal` is on): usage left there by a crash is read back and written by the first
    /// flush.
    pub fn start_journaled(db: Db, config: &UsageConfig) -> anyhow::Result<QuotaAccountantHandle> {
        if !config.journal {
            return Ok(Self::start(db, config));
        }
        Ok(Self::start_with(Ledger::journaled(config.events, &config.journal_dir)?, db, config))
    }

    fn start_with(ledger: Ledger, db: Db, config: &UsageConfig) -> QuotaAccountantHandle {
        let ledger = Arc::new(ledger);
        let arbiter = actix_rt::Arbiter::current();
        let addr = spawn_actor(&arbiter, &ledger, &db, config);
        QuotaAccountantHandle {
            ledger,
            db,
            config: config.clone(),
            addr: Arc::new(RwLock::new(addr)),
            arbiter,
            shared: None,
            on_error: RedisFailure::Local,
        }
    }

    /// False once the actor has stopped or died (`revive_if_dead` then starts a new one).
    pub fn is_alive(&self) -> bool {
        self.addr.read().is_ok_and(|a| a.connected())
    }

    /// Test builds only: makes the actor panic, as a bug would.
    #[cfg(feature = "test-hooks")]
    pub fn crash(&self) {
        if let Ok(addr) = self.addr.read() {
            addr.do_send(Crash);
        }
    }

    /// Starts a new actor on the same ledger if the current one died; true when it did.
    pub fn revive_if_dead(&self) -> bool {
        let Ok(mut addr) = self.addr.write() else { return false };
        if addr.connected() {
            return false;
        }
        tracing::error!("the quota accountant died; starting it again");
        *addr = spawn_actor(&self.arbiter, &self.ledger, &self.db, &self.config);
        true
    }

    /// Usage write statements issued so far (one per flush with anything to write).
    pub fn writes(&self) -> u64 {
        self.ledger.writes.load(Ordering::Relaxed)
    }

    /// Never blocks (callable from `Drop`).
    pub fn record(&self, event: UsageEvent) {
        if event.audio_ms > 0 {
            metrics::counter!("gatehouse_audio_seconds_total", "model" => event.model.clone()).increment(event.audio_ms / 1000);
        }
        let time_zone = {
            let mut book = lock(&self.ledger.book);
            let t = book.entry(event.tenant_id.clone()).or_default();
            t.unflushed += event.amounts();
            t.quotas.as_ref().map(|q| q.time_zone)
        };
        if let (Some(shared), Some(tz)) = (&self.shared, time_zone) {
            let keys = shared.keys(&event.tenant_id, Period::Day.start(tz, event.at), Period::Month.start(tz, event.at));
            shared.usage(keys, event.amounts());
        }
        self.ledger.record(event);
    }

    /// Writes everything recorded so far (the actor does it; if it is gone, this call does).
    pub async fn flush(&self) {
        let addr = self.addr.read().map(|a| a.clone()).ok();
        let sent = match addr {
            Some(addr) => addr.send(Flush).await.is_ok(),
            None => false,
        };
        if !sent {
            self.ledger.flush(&self.db).await;
        }
    }

    /// Reserves `demand` against the tenant's quotas, or refuses. The hold gives the reservation
    /// back when dropped (after the request's usage was recorded).
    pub async fn reserve(&self, tenant: &TenantId, quotas: &Quotas, demand: Amounts) -> Result<Option<QuotaHold>, QuotaError> {
        if quotas.is_unlimited() {
            return Ok(None);
        }
        let now = Utc::now();
        let day = Period::Day.start(quotas.time_zone, now);
        let month = Period::Month.start(quotas.time_zone, now);
        self.load_book(tenant, day, month).await?;
        lock(&self.ledger.book).entry(tenant.clone()).or_default().quotas = Some(quotas.clone());
        if let Some(shared) = &self.shared {
            match self.reserve_shared(shared, tenant, quotas, demand, (day, month), now).await {
                Ok(Ok(id)) => {
                    lock(&self.ledger.book).entry(tenant.clone()).or_default().inflight += demand;
                    let shared = Some((shared.clone(), id));
                    return Ok(Some(QuotaHold { book: self.ledger.book.clone(), tenant: tenant.clone(), demand, shared }));
                }
                Ok(Err((period, message))) => return Err(exceeded(period, message)),
                Err(shared::Failure::Database(e)) => return Err(QuotaError::Unavailable(e)),
                Err(shared::Failure::Redis(e)) if self.on_error == RedisFailure::Closed => {
                    return Err(QuotaError::Unavailable(e.to_string()));
                }
                // `redis.on_error = "local"`: this instance's book decides, as without Redis.
                Err(shared::Failure::Redis(_)) => {}
            }
        }
        let mut book = lock(&self.ledger.book);
        let t = book.entry(tenant.clone()).or_default();
        for (period, caps) in [(Period::Day, &quotas.daily), (Period::Month, &quotas.monthly)] {
            if let Some(message) = refusal(period, caps, t.used(period), demand) {
                return Err(exceeded(period, message));
            }
        }
        t.inflight += demand;
        Ok(Some(QuotaHold { book: self.ledger.book.clone(), tenant: tenant.clone(), demand, shared: None }))
    }

    /// Makes sure the book holds the tenant's committed usage for these periods.
    async fn load_book(&self, tenant: &TenantId, day: DateTime<Utc>, month: DateTime<Utc>) -> Result<(), QuotaError> {
        let current = {
            let book = lock(&self.ledger.book);
            book.get(tenant).is_some_and(|t| t.loaded && t.day.start == Some(day) && t.month.start == Some(month))
        };
        if current {
            return Ok(());
        }
        let (d, m) = load_totals(&self.db, tenant, day, month).await.map_err(|e| QuotaError::Unavailable(e.to_string()))?;
        let mut book = lock(&self.ledger.book);
        let t = book.entry(tenant.clone()).or_default();
        if !(t.loaded && t.day.start == Some(day) && t.month.start == Some(month)) {
            t.loaded = true;
            t.day = PeriodBook { start: Some(day), committed: d };
            t.month = PeriodBook { start: Some(month), committed: m };
            // `unflushed` (recorded, not yet in the database) stays as it is. A flush that
            // commits while this load runs can be missed for one reload interval.
        }
        Ok(())
    }

    /// Usage so far in the period (for tests and the API).
    pub fn used(&self, tenant: &TenantId, period: Period) -> Option<Amounts> {
        lock(&self.ledger.book).get(tenant).filter(|t| t.loaded).map(|t| t.used(period))
    }
}

/// Why `demand` would pass one of the period's caps given what is `used`, if it would.
fn refusal(period: Period, caps: &Caps, used: Amounts, demand: Amounts) -> Option<String> {
    let over = |cap: Option<i64>, used: i64, want: i64| cap.filter(|c| used + want > *c);
    if let Some(c) = over(caps.requests, used.requests, demand.requests) {
        Some(format!("{} request quota of {c}", period.as_str()))
    } else if let Some(c) = over(caps.tokens, used.tokens, demand.tokens) {
        let left = (c - used.tokens).max(0);
        Some(format!("{} token quota of {c} ({left} left; this request reserves {})", period.as_str(), demand.tokens))
    } else {
        over(caps.audio_seconds.map(|s| s * 1000), used.audio_ms, demand.audio_ms)
            .map(|_| format!("{} audio quota of {} s", period.as_str(), caps.audio_seconds.unwrap_or_default()))
    }
}

fn exceeded(period: Period, what: String) -> QuotaError {
    metrics::counter!("gatehouse_quota_exceeded_total", "period" => period.as_str()).increment(1);
    QuotaError::Exceeded(format!("quota exceeded: this request would pass the tenant's {what}"))
}

fn spawn_actor(arbiter: &actix_rt::ArbiterHandle, ledger: &Arc<Ledger>, db: &Db, config: &UsageConfig) -> Addr<QuotaAccountant> {
    let actor = QuotaAccountant {
        ledger: ledger.clone(),
        db: db.clone(),
        flush_interval: Duration::from_millis(config.flush_interval_ms),
        refresh_interval: Duration::from_secs(config.quota_refresh_s),
        last_refresh: Instant::now(),
    };
    QuotaAccountant::start_in_arbiter(arbiter, move |_| actor)
}
