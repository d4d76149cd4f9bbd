//! Quota counters shared through Redis, so a hard quota holds across every instance, not per
//! instance.
//!
//! Per tenant and period (keys `{prefix}:quota:{tenant}:{d|m}:{period start}`), a hash of what
//! was used: requests, tokens, audio ms. Per tenant, the holds of requests in flight: a sorted
//! set of hold ids by expiry and a hash of their amounts with running totals. Admission is one
//! script ([`RESERVE`]): drop expired holds (their instance died), check used + held + demand
//! against every cap of both periods, and add a hold, atomically. When a request ends its usage
//! is added to the period counters and its hold removed ([`SETTLE`], batched off the request
//! path, usage before release so the count never dips).
//!
//! A period's counters are seeded from the database the first time they are needed (the script
//! asks for a seed when its key is missing). After Redis failed, the counters miss what was
//! served meanwhile, so each tenant's are seeded again on its next admission. A seed can miss
//! other instances' usage not yet flushed (at most one flush interval of it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::QuotaAccountantHandle;
use crate::domain::TenantId;
use crate::limits::shared::{RedisError, RedisStore, report_error};
use crate::metering::{Amounts, Caps, Period, Quotas};

/// A hold outlives its instance by at most this long (longer than any request may run).
const HOLD_TTL: Duration = Duration::from_secs(20 * 60);
const SETTLE_BATCH_WAIT: Duration = Duration::from_millis(5);
const SETTLE_BATCH_MAX: usize = 500;

/// KEYS: day, month, holds (zset), hold amounts (hash). ARGV: hold id, hold ttl ms, demand (r t
/// a), day caps (r t a, -1 = none), month caps, seed mode (0 none, 1 if missing, 2 overwrite), day
/// seed (r t a), month seed, day ttl ms, month ttl ms. Returns {1} admitted, {2} seed needed, or
/// {0, period (1 day, 2 month), dimension (1 requests, 2 tokens, 3 audio ms), used, cap}.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local periods, hz, hv = {KEYS[1], KEYS[2]}, KEYS[3], KEYS[4]
local totals = {'_r', '_t', '_a'}
local expired = redis.call('ZRANGEBYSCORE', hz, '-inf', now, 'LIMIT', 0, 500)
for _, id in ipairs(expired) do
  local v = redis.call('HGET', hv, id)
  if v then
    local i = 0
    for n in string.gmatch(v, '%-?%d+') do
      i = i + 1
      redis.call('HINCRBY', hv, totals[i], 0 - tonumber(n))
    end
    redis.call('HDEL', hv, id)
  end
end
if #expired > 0 then redis.call('ZREM', hz, unpack(expired)) end
local mode = ARGV[12]
for p, key in ipairs(periods) do
  local missing = redis.call('EXISTS', key) == 0
  if missing and mode == '0' then return {2} end
  if missing or mode == '2' then
    local s = 10 + 3 * p
    redis.call('HSET', key, 'r', ARGV[s], 't', ARGV[s + 1], 'a', ARGV[s + 2])
    redis.call('PEXPIRE', key, ARGV[18 + p])
  end
end
local held = redis.call('HMGET', hv, '_r', '_t', '_a')
for p, key in ipairs(periods) do
  local used = redis.call('HMGET', key, 'r', 't', 'a')
  for d = 1, 3 do
    local cap = tonumber(ARGV[2 + 3 * p + d])
    local total = (tonumber(used[d]) or 0) + (tonumber(held[d]) or 0)
    if cap >= 0 and total + tonumber(ARGV[2 + d]) > cap then return {0, p, d, total, cap} end
  end
end
redis.call('ZADD', hz, now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', hv, ARGV[1], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
for d = 1, 3 do redis.call('HINCRBY', hv, totals[d], ARGV[2 + d]) end
redis.call('PEXPIRE', hz, tonumber(ARGV[2]) * 2)
redis.call('PEXPIRE', hv, tonumber(ARGV[2]) * 2)
return {1}
"#;

/// Per operation two KEYS and four ARGV: `u` (usage: day, month; r t a) adds to the counters
/// that exist, `x` (release: holds, hold amounts; id) removes a hold.
const SETTLE: &str = r#"
local totals = {'_r', '_t', '_a'}
for i = 1, #KEYS / 2 do
  local k1, k2, op = KEYS[2 * i - 1], KEYS[2 * i], ARGV[4 * i - 3]
  if op == 'u' then
    for _, key in ipairs({k1, k2}) do
      if redis.call('EXISTS', key) == 1 then
        redis.call('HINCRBY', key, 'r', ARGV[4 * i - 2])
        redis.call('HINCRBY', key, 't', ARGV[4 * i - 1])
        redis.call('HINCRBY', key, 'a', ARGV[4 * i])
      end
    end
  else
    local id = ARGV[4 * i - 2]
    local v = redis.call('HGET', k2, id)
    if v then
      local j = 0
      for n in string.gmatch(v, '%-?%d+') do
        j = j + 1
        redis.call('HINCRBY', k2, totals[j], 0 - tonumber(n))
      end
      redis.call('HDEL', k2, id)
    end
    redis.call('ZREM', k1, id)
  end
end
return 1
"#;

/// One tenant's period keys, as of a reservation.
#[derive(Debug, Clone)]
pub(super) struct PeriodKeys {
    day: String,
    month: String,
}

enum Op {
    Usage { keys: PeriodKeys, amounts: Amounts },
    Release { tenant: TenantId, id: String },
}

/// What Redis answered to a reservation.
pub(super) enum Reserved {
    /// Held under this id until released.
    Held(String),
    /// The request would pass a cap: (period, which cap, used).
    Refused(Period, &'static str, i64),
}

pub(super) struct SharedQuotas {
    store: Arc<RedisStore>,
    reserve: redis::Script,
    ops: mpsc::UnboundedSender<Op>,
    /// Bumped at every failure: counters may miss usage from before it.
    failures: AtomicU64,
    /// Per tenant, the failure count when its counters were last known whole.
    whole_since: Mutex<HashMap<TenantId, u64>>,
}

impl SharedQuotas {
    /// The shared counters, with their settle loop started on the current arbiter.
    pub(super) fn start(store: Arc<RedisStore>) -> Arc<SharedQuotas> {
        let (ops, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(SharedQuotas {
            store,
            reserve: redis::Script::new(RESERVE),
            ops,
            failures: AtomicU64::new(0),
            whole_since: Mutex::new(HashMap::new()),
        });
        actix_rt::spawn(settle_loop(Arc::downgrade(&shared), rx));
        shared
    }

    pub(super) fn keys(&self, tenant: &TenantId, day: DateTime<Utc>, month: DateTime<Utc>) -> PeriodKeys {
        PeriodKeys {
            day: self.store.key("quota", format_args!("{tenant}:d:{}", day.timestamp())),
            month: self.store.key("quota", format_args!("{tenant}:m:{}", month.timestamp())),
        }
    }

    fn hold_keys(&self, tenant: &TenantId) -> (String, String) {
        (self.store.key("quota", format_args!("{tenant}:holds")), self.store.key("quota", format_args!("{tenant}:hold-amounts")))
    }

    /// Whether the tenant's counters must be seeded again before use (Redis failed since they
    /// were last known whole).
    pub(super) fn needs_reseed(&self, tenant: &TenantId) -> bool {
        let failures = self.failures.load(Ordering::SeqCst);
        failures > 0 && self.whole_since.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).is_none_or(|seen| *seen < failures)
    }

    /// One reservation attempt. `seed`: the periods' usage to start from (day, month), with
    /// `overwrite` to replace counters that exist. None when Redis asks for a seed.
    pub(super) async fn reserve(
        &self,
        tenant: &TenantId,
        keys: &PeriodKeys,
        caps: (&Caps, &Caps),
        demand: Amounts,
        seed: Option<((Amounts, Amounts), bool)>,
        ttls: (Duration, Duration),
    ) -> Result<Option<Reserved>, RedisError> {
        let failures = self.failures.load(Ordering::SeqCst);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (holds, amounts) = self.hold_keys(tenant);
        let mut invocation = self.reserve.prepare_invoke();
        invocation.key(&keys.day).key(&keys.month).key(holds).key(amounts);
        invocation.arg(&id).arg(HOLD_TTL.as_millis() as u64).arg(demand.requests).arg(demand.tokens).arg(demand.audio_ms);
        for c in [caps.0, caps.1] {
            let cap = |v: Option<i64>| v.unwrap_or(-1);
            invocation.arg(cap(c.requests)).arg(cap(c.tokens)).arg(cap(c.audio_seconds.map(|s| s * 1000)));
        }
        let ((day, month), mode) = match seed {
            None => ((Amounts::default(), Amounts::default()), 0),
            Some((seed, overwrite)) => (seed, if overwrite { 2 } else { 1 }),
        };
        invocation.arg(mode);
        for a in [day, month] {
            invocation.arg(a.requests).arg(a.tokens).arg(a.audio_ms);
        }
        invocation.arg(ttls.0.as_millis() as u64).arg(ttls.1.as_millis() as u64);
        let reply: Vec<i64> = self.store.run_script(&invocation).await.inspect_err(|e| self.failed(e))?;
        let answer = match reply.as_slice() {
            [1] => Some(Reserved::Held(id)),
            [2] => None,
            [0, p, d, used, _cap] => {
                let period = if *p == 1 { Period::Day } else { Period::Month };
                let what = match d {
                    1 => "requests",
                    2 => "tokens",
                    _ => "audio_ms",
                };
                Some(Reserved::Refused(period, what, *used))
            }
            _ => return Err(RedisError::Shape),
        };
        if answer.is_some() {
            self.whole_since.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.clone(), failures);
        }
        Ok(answer)
    }

    /// Adds a finished request's usage to the tenant's period counters (batched).
    pub(super) fn usage(&self, keys: PeriodKeys, amounts: Amounts) {
        let _ = self.ops.send(Op::Usage { keys, amounts });
    }

    /// Removes a hold (batched, after the request's usage).
    pub(super) fn release(&self, tenant: TenantId, id: String) {
        let _ = self.ops.send(Op::Release { tenant, id });
    }

    fn failed(&self, e: &RedisError) {
        report_error(e);
        self.failures.fetch_add(1, Ordering::SeqCst);
    }
}

/// Applies usage and releases in batches: one script call for what arrived within a few
/// milliseconds. A failed batch is lost to Redis (the database still has the usage), so the
/// counters are seeded again.
async fn settle_loop(shared: std::sync::Weak<SharedQuotas>, mut rx: mpsc::UnboundedReceiver<Op>) {
    let script = redis::Script::new(SETTLE);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + SETTLE_BATCH_WAIT;
        while batch.len() < SETTLE_BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(op)) => batch.push(op),
                _ => break,
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        let mut invocation = script.prepare_invoke();
        for op in batch {
            match op {
                Op::Usage { keys, amounts } => {
                    invocation.key(keys.day).key(keys.month);
                    invocation.arg("u").arg(amounts.requests).arg(amounts.tokens).arg(amounts.audio_ms);
                }
                Op::Release { tenant, id } => {
                    let (holds, amounts) = shared.hold_keys(&tenant);
                    invocation.key(holds).key(amounts).arg("x").arg(id).arg(0).arg(0);
                }
            }
        }
        let result: Result<i64, RedisError> = shared.store.run_script(&invocation).await;
        if let Err(e) = result {
            shared.failed(&e);
        }
    }
}

/// Why the shared counters gave no answer.
pub(super) enum Failure {
    Redis(RedisError),
    /// The seed could not be read.
    Database(String),
}

impl QuotaAccountantHandle {
    /// Reserves through the shared counters: the hold id, or the refused period and why.
    pub(super) async fn reserve_shared(
        &self,
        shared: &SharedQuotas,
        tenant: &TenantId,
        quotas: &Quotas,
        demand: Amounts,
        (day, month): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> Result<Result<String, (Period, String)>, Failure> {
        let keys = shared.keys(tenant, day, month);
        // The counters outlive their period by a day or two, then expire.
        let ttl =
            |start: DateTime<Utc>, days: i64| (start + chrono::Duration::days(days) - now).to_std().unwrap_or(Duration::from_secs(3600));
        let ttls = (ttl(day, 2), ttl(month, 33));
        let mut seed = if shared.needs_reseed(tenant) { Some((self.seed(tenant, day, month).await?, true)) } else { None };
        for _ in 0..2 {
            match shared.reserve(tenant, &keys, (&quotas.daily, &quotas.monthly), demand, seed, ttls).await.map_err(Failure::Redis)? {
                Some(Reserved::Held(id)) => return Ok(Ok(id)),
                Some(Reserved::Refused(period, what, used)) => {
                    let caps = if period == Period::Day { &quotas.daily } else { &quotas.monthly };
                    let used = match what {
                        "requests" => Amounts { requests: used, ..Amounts::default() },
                        "tokens" => Amounts { tokens: used, ..Amounts::default() },
                        _ => Amounts { audio_ms: used, ..Amounts::default() },
                    };
                    let only = |dim: &str, v: i64| if what == dim { v } else { 0 };
                    let demand = Amounts {
                        requests: only("requests", demand.requests),
                        tokens: only("tokens", demand.tokens),
                        audio_ms: only("audio_ms", demand.audio_ms),
                    };
                    let message = super::refusal(period, caps, used, demand).unwrap_or_else(|| format!("{} quota", period.as_str()));
                    return Ok(Err((period, message)));
                }
                None => seed = Some((self.seed(tenant, day, month).await?, false)),
            }
        }
        Err(Failure::Redis(RedisError::Shape))
    }

    /// Where a tenant's counters start: the database's totals plus what this instance recorded
    /// and has not written yet.
    async fn seed(&self, tenant: &TenantId, day: DateTime<Utc>, month: DateTime<Utc>) -> Result<(Amounts, Amounts), Failure> {
        let (mut d, mut m) =
            super::ledger::load_totals(&self.db, tenant, day, month).await.map_err(|e| Failure::Database(e.to_string()))?;
        let unflushed = super::book::lock(&self.ledger.book).get(tenant).map(|t| t.unflushed).unwrap_or_default();
        d += unflushed;
        m += unflushed;
        Ok((d, m))
    }
}
