//! The Redis store: the counters of every instance in one place, so N instances enforce one
//! limit, not N. An admission is one `EVALSHA` of [`ADMIT`] (check and take every counter
//! atomically, on Redis's clock); reconciles and releases are batched by a background task into
//! one script call per few milliseconds, off the request path. Keys expire on their own, so a
//! crashed instance leaves nothing behind for longer than a window (or a lease).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::{Check, CounterState, Settle, Verdict, WINDOW};
use crate::config::RedisConfig;

/// How long a concurrency lease lives when its instance dies before releasing it.
const LEASE: Duration = Duration::from_secs(600);
/// Settles wait at most this long to share a round trip.
const SETTLE_BATCH_WAIT: Duration = Duration::from_millis(5);
const SETTLE_BATCH_MAX: usize = 500;

/// KEYS: one base key per check. ARGV: id (empty: only measure, take nothing), window ms, lease
/// ms, then per check kind (`w` window, `c` concurrency), limit, amount. Returns {admitted,
/// refused check (1-based) or 0, retry ms, then per check: used, reset ms}.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, window, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS
local used, reset = {}, {}
local refused, retry = 0, 0
for i = 1, n do
  local base = KEYS[i]
  local kind, limit, amount = ARGV[1 + 3 * i], tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i])
  if kind == 'w' then
    local z, h, tk = base .. ':z', base .. ':h', base .. ':t'
    while true do
      local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - window, 'LIMIT', 0, 500)
      if #old == 0 then break end
      local sum = 0
      for _, a in ipairs(redis.call('HMGET', h, unpack(old))) do sum = sum + (tonumber(a) or 0) end
      redis.call('DECRBY', tk, sum)
      redis.call('ZREM', z, unpack(old))
      redis.call('HDEL', h, unpack(old))
      if #old < 500 then break end
    end
    local total = tonumber(redis.call('GET', tk) or '0')
    used[i] = total
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    reset[i] = first[2] and math.max(0, tonumber(first[2]) + window - now) or 0
    if refused == 0 and total + amount > limit then
      refused = i
      retry = window
      if amount <= limit then
        local need, freed, start = total + amount - limit, 0, 0
        while retry == window do
          local batch = redis.call('ZRANGE', z, start, start + 99, 'WITHSCORES')
          if #batch == 0 then break end
          local ids = {}
          for j = 1, #batch, 2 do ids[#ids + 1] = batch[j] end
          local amounts = redis.call('HMGET', h, unpack(ids))
          for j = 1, #ids do
            freed = freed + (tonumber(amounts[j]) or 0)
            if freed >= need then
              retry = math.max(1, tonumber(batch[2 * j]) + window - now)
              break
            end
          end
          start = start + 100
        end
      end
    end
  else
    redis.call('ZREMRANGEBYSCORE', base, '-inf', now)
    local held = redis.call('ZCARD', base)
    used[i] = held
    reset[i] = 0
    if refused == 0 and held + 1 > limit then
      refused = i
      retry = 1000
    end
  end
end
if refused == 0 and id ~= '' then
  for i = 1, n do
    local base = KEYS[i]
    local kind, amount = ARGV[1 + 3 * i], tonumber(ARGV[3 + 3 * i])
    if kind == 'w' then
      redis.call('ZADD', base .. ':z', now, id)
      redis.call('HSET', base .. ':h', id, amount)
      redis.call('INCRBY', base .. ':t', amount)
      for _, suffix in ipairs({':z', ':h', ':t'}) do redis.call('PEXPIRE', base .. suffix, window * 2) end
      if reset[i] == 0 then reset[i] = window end
    else
      redis.call('ZADD', base, now + lease, id)
      redis.call('PEXPIRE', base, lease * 2)
    end
  end
end
local out = {refused == 0 and 1 or 0, refused, retry}
for i = 1, n do
  out[#out + 1] = used[i]
  out[#out + 1] = reset[i]
end
return out
"#;

/// KEYS: base keys. ARGV per key: op (`r` reconcile, `x` release), id, amount.
const SETTLE: &str = r#"
for i = 1, #KEYS do
  local op, id, amount = ARGV[3 * i - 2], ARGV[3 * i - 1], tonumber(ARGV[3 * i])
  if op == 'r' then
    local h = KEYS[i] .. ':h'
    local old = redis.call('HGET', h, id)
    if old then
      redis.call('HSET', h, id, amount)
      redis.call('INCRBY', KEYS[i] .. ':t', amount - tonumber(old))
    end
  else
    redis.call('ZREM', KEYS[i], id)
  end
end
return #KEYS
"#;

pub struct RedisStore {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    last_attempt: Mutex<Option<Instant>>,
    prefix: String,
    timeout: Duration,
    admit: redis::Script,
    settle_tx: mpsc::UnboundedSender<Settle>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis is not connected (reconnecting)")]
    NotConnected,
    #[error("redis answered with an unexpected shape")]
    Shape,
}

/// Counts a failed round trip and logs it (at most every 10 s per process).
pub fn report_error(e: &RedisError) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    metrics::counter!("gatehouse_redis_errors_total").increment(1);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        *last = Some(Instant::now());
        tracing::warn!(error = %e, "rate limiter: redis failed; applying redis.on_error");
    }
}

impl RedisStore {
    /// Opens the client; an unreachable Redis at start-up is not fatal (the failure policy
    /// applies until it answers).
    /// The settler returned beside the store must be run (under the supervisor).
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<(RedisStore, Settler)> {
        let client = redis::Client::open(config.url.expose())?;
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let store = RedisStore {
            client,
            conn: Mutex::new(None),
            last_attempt: Mutex::new(None),
            prefix: config.key_prefix.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            admit: redis::Script::new(ADMIT),
            settle_tx,
        };
        match store.connection().await {
            Ok(_) => tracing::info!("rate limiter: counters shared through redis"),
            Err(e) => tracing::warn!(error = %e, "rate limiter: redis unreachable at start-up; applying redis.on_error until it answers"),
        }
        let settler = Settler {
            client: store.client.clone(),
            timeout: store.timeout,
            prefix: store.prefix.clone(),
            rx: Arc::new(tokio::sync::Mutex::new(settle_rx)),
        };
        Ok((store, settler))
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return Err(RedisError::NotConnected);
            }
            *last = Some(Instant::now());
        }
        let c = connect(&self.client, self.timeout).await?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Runs a pipeline of other counters that instances sum through this Redis (the edge's
    /// per-address counts): keys under `{prefix}:{namespace}:`, the same timeout as admissions.
    pub async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, RedisError> {
        let mut conn = self.connection().await?;
        Ok(tokio::time::timeout(self.timeout, pipe.query_async(&mut conn)).await.map_err(|_| RedisError::Timeout(self.timeout))??)
    }

    /// Runs another module's script (the quota counters) over this store's connection, within
    /// the same timeout.
    pub async fn run_script<T: redis::FromRedisValue>(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<T, RedisError> {
        let mut conn = self.connection().await?;
        Ok(tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))??)
    }

    /// A key of `namespace` under this deployment's prefix.
    pub fn key(&self, namespace: &str, rest: impl std::fmt::Display) -> String {
        format!("{}:{namespace}:{rest}", self.prefix)
    }

    /// The counters' state for `checks`, taking nothing.
    pub async fn peek(&self, checks: &[Check]) -> Result<Vec<CounterState>, RedisError> {
        Ok(self.invoke("", checks).await?.1)
    }

    pub async fn admit(&self, id: &str, checks: &[Check]) -> Result<Verdict, RedisError> {
        let (reply, mut states) = self.invoke(id, checks).await?;
        if reply[0] == 1 {
            for (s, c) in states.iter_mut().zip(checks) {
                s.remaining = s.remaining.saturating_sub(c.amount);
            }
            Ok(Verdict::Admitted { states })
        } else {
            let check = (reply[1].max(1) - 1) as usize;
            Ok(Verdict::Refused { check: check.min(checks.len() - 1), retry_after: Duration::from_millis(reply[2].max(1) as u64), states })
        }
    }

    /// One run of the admission script: its raw reply and each counter's state before taking.
    async fn invoke(&self, id: &str, checks: &[Check]) -> Result<(Vec<i64>, Vec<CounterState>), RedisError> {
        let mut conn = self.connection().await?;
        let mut invocation = self.admit.prepare_invoke();
        invocation.arg(id).arg(WINDOW.as_millis() as u64).arg(LEASE.as_millis() as u64);
        for c in checks {
            invocation.key(format!("{}:rl:{}", self.prefix, c.key));
            invocation.arg(if c.dim.is_window() { "w" } else { "c" }).arg(c.limit).arg(c.amount);
        }
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))??;
        if reply.len() != 3 + 2 * checks.len() {
            return Err(RedisError::Shape);
        }
        let states: Vec<CounterState> = checks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let used = reply[3 + 2 * i].max(0) as u64;
                let reset = Duration::from_millis(reply[4 + 2 * i].max(0) as u64);
                CounterState { dim: c.dim, limit: c.limit, remaining: c.limit.saturating_sub(used), reset }
            })
            .collect();
        Ok((reply, states))
    }

    pub fn settle(&self, ops: Vec<Settle>) {
        for op in ops {
            let _ = self.settle_tx.send(op);
        }
    }
}

async fn connect(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager, RedisError> {
    let config = redis::aio::ConnectionManagerConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
    tokio::time::timeout(timeout * 4, ConnectionManager::new_with_config(client.clone(), config))
        .await
        .map_err(|_| RedisError::Timeout(timeout))?
        .map_err(RedisError::from)
}

/// Applies reconciles and releases in batches: one script call for everything that arrived
/// within a few milliseconds.
/// Its receiver outlives one run of the loop: a settler that died is started again on the same
/// queue.
#[derive(Clone)]
pub struct Settler {
    client: redis::Client,
    timeout: Duration,
    prefix: String,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Settle>>>,
}

impl Settler {
    pub async fn run(self) {
        let mut rx = self.rx.lock().await;
        let script = redis::Script::new(SETTLE);
        let mut conn: Option<ConnectionManager> = None;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + SETTLE_BATCH_WAIT;
            while batch.len() < SETTLE_BATCH_MAX {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(op)) => batch.push(op),
                    _ => break,
                }
            }
            let mut invocation = script.prepare_invoke();
            for op in &batch {
                match op {
                    Settle::Reconcile { key, id, amount } => {
                        invocation.key(format!("{}:rl:{key}", self.prefix)).arg("r").arg(id).arg(*amount);
                    }
                    Settle::Release { key, id } => {
                        invocation.key(format!("{}:rl:{key}", self.prefix)).arg("x").arg(id).arg(0);
                    }
                }
            }
            if conn.is_none() {
                conn = connect(&self.client, self.timeout).await.inspect_err(report_error).ok();
            }
            let Some(c) = conn.as_mut() else { continue };
            let result: Result<Result<i64, redis::RedisError>, _> = tokio::time::timeout(self.timeout, invocation.invoke_async(c)).await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => report_error(&RedisError::Redis(e)),
                Err(_) => report_error(&RedisError::Timeout(self.timeout)),
            }
        }
    }
}
