//! `Gateway`: which pool serves which model, one `InferenceQueue` per pool, and the active
//! health checks. Loaded from PostgreSQL and refreshed in the background, so pools and workers
//! added, drained or removed through the API or CLI apply without a restart. The gateway owns
//! its queues: one that died (a panic in the actor) is started again, with the pool's workers
//! and settings, the next time its pool is asked for or reloaded, and the restart is counted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::actors::inference_queue::{BatchSettings, InferenceQueueHandle, QueueSettings, WindowStats, WorkerSpec, WorkerStatus};
use crate::auth::seal::MasterKey;
use crate::config::GatewayConfig;
use crate::db::{Db, DbError, workers};
use crate::domain::{PoolKind, WorkerState};
use crate::scheduler::QueueLimits;
use crate::tasks::Supervisor;

/// A model's pool as the gateway routes to it (shared: a request takes a reference, not a copy).
#[derive(Clone)]
pub struct PoolRoute {
    pub pool_id: String,
    pub pool_name: String,
    pub queue: InferenceQueueHandle,
    pub workers: Vec<WorkerSpec>,
    pub kind: PoolKind,
    /// LLM pools' request metrics.
    pub metrics: Option<RouteMetrics>,
}

/// The request metrics of one model in one pool, registered once per route rather than looked
/// up (labels allocated and hashed) on every request.
#[derive(Clone)]
pub struct RouteMetrics {
    pub queue_wait: metrics::Histogram,
    pub time_to_first_token: metrics::Histogram,
    /// `gatehouse_request_duration_seconds` for status 200; other statuses are looked up.
    pub duration_ok: metrics::Histogram,
    pub tokens_in: metrics::Counter,
    pub tokens_out: metrics::Counter,
}

impl RouteMetrics {
    fn new(pool: &str, model: &str) -> RouteMetrics {
        let (pool, model) = (pool.to_owned(), model.to_owned());
        RouteMetrics {
            queue_wait: metrics::histogram!("gatehouse_queue_wait_seconds", "pool" => pool.clone()),
            time_to_first_token: metrics::histogram!("gatehouse_time_to_first_token_seconds", "pool" => pool.clone(), "model" => model.clone()),
            duration_ok: metrics::histogram!("gatehouse_request_duration_seconds", "pool" => pool, "model" => model.clone(), "status" => "200"),
            tokens_in: metrics::counter!("gatehouse_tokens_total", "model" => model.clone(), "direction" => "in"),
            tokens_out: metrics::counter!("gatehouse_tokens_total", "model" => model, "direction" => "out"),
        }
    }
}

/// A pool's queue with what it was started from.
struct Pooled {
    queue: InferenceQueueHandle,
    /// Worker specs last applied.
    workers: Vec<WorkerSpec>,
    settings: QueueSettings,
    name: String,
}

pub struct Gateway {
    /// Outbound HTTP for the aligner pools' batch executors.
    http: reqwest::Client,
    /// Where queues and executors run: the arbiter the gateway was made on (the main one), also
    /// when a server thread revives a queue.
    arbiter: actix_rt::ArbiterHandle,
    tasks: Arc<Supervisor>,
    eject_for: Duration,
    eject_after: u32,
    health_timeout: Duration,
    stats_window: Duration,
    /// model name → pool.
    routes: RwLock<HashMap<String, Arc<PoolRoute>>>,
    /// pool id → its queue.
    queues: RwLock<HashMap<String, Pooled>>,
    /// pool id → tenants with a queue-depth gauge, to zero the gauge when they leave.
    gauge_tenants: std::sync::Mutex<HashMap<String, std::collections::HashSet<String>>>,
    /// Every worker's state at the end of the last health round (None before the first).
    health: std::sync::Mutex<Option<Vec<WorkerHealth>>>,
    /// Every pool's recent statistics at the end of the last health round.
    pool_stats: std::sync::Mutex<Vec<PoolStats>>,
}

/// A pool's recent queue waits and outcomes, for the alert rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    pub pool_id: String,
    pub pool: String,
    pub recent: WindowStats,
}

/// A worker as the last health round saw it, for the alert rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHealth {
    pub pool_id: String,
    pub pool: String,
    pub worker: String,
    pub base_url: String,
    pub status: WorkerStatus,
    /// When this instance first saw it down (ejected or half-open), if it is.
    pub down_since: Option<chrono::DateTime<chrono::Utc>>,
}

impl Gateway {
    /// Must be made on an actix system: queues run on its arbiter.
    /// `stats_window`: how far back each pool's wait and failure statistics look.
    pub fn new(http: reqwest::Client, config: &GatewayConfig, stats_window: Duration, tasks: Arc<Supervisor>) -> Gateway {
        Gateway {
            http,
            arbiter: actix_rt::Arbiter::current(),
            tasks,
            eject_for: Duration::from_millis(config.eject_for_ms),
            eject_after: config.eject_after_failures,
            health_timeout: Duration::from_millis(config.health_timeout_ms),
            stats_window,
            routes: RwLock::default(),
            queues: RwLock::default(),
            gauge_tenants: std::sync::Mutex::default(),
            health: std::sync::Mutex::default(),
            pool_stats: std::sync::Mutex::default(),
        }
    }

    /// The route of `model`, its queue started again first if it died.
    pub fn route(&self, model: &str) -> Option<Arc<PoolRoute>> {
        let route = self.routes.read().ok()?.get(model).cloned()?;
        if route.queue.is_alive() {
            return Some(route);
        }
        self.revive(&route.pool_id);
        self.routes.read().ok()?.get(model).cloned()
    }

    /// Starts a pool's queue (and, for aligner pools, its batch executor) on the gateway's arbiter.
    fn start_queue(&self, name: &str, workers: Vec<WorkerSpec>, settings: QueueSettings) -> InferenceQueueHandle {
        if settings.batch.is_some() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            self.arbiter.spawn(crate::workers::aligner::run_executor(self.http.clone(), name.to_owned(), rx));
            InferenceQueueHandle::start_batching(&self.arbiter, workers, settings, tx)
        } else {
            InferenceQueueHandle::start(&self.arbiter, workers, settings)
        }
    }

    /// Replaces a pool's dead queue with a new one and points its routes at it. Requests that
    /// waited in the dead queue were answered `Closed` (503); new ones go to the new queue.
    fn revive(&self, pool_id: &str) {
        let Ok(mut queues) = self.queues.write() else { return };
        let Some(pooled) = queues.get_mut(pool_id) else { return };
        if pooled.queue.is_alive() {
            return; // another request revived it first
        }
        tracing::error!(pool = %pooled.name, "the pool's queue died; starting it again");
        pooled.queue = self.start_queue(&pooled.name, pooled.workers.clone(), pooled.settings);
        let queue = pooled.queue.clone();
        drop(queues);
        self.tasks.restarted("inference_queue");
        if let Ok(mut routes) = self.routes.write() {
            for route in routes.values_mut().filter(|r| r.pool_id == pool_id) {
                *route = Arc::new(PoolRoute { queue: queue.clone(), ..route.as_ref().clone() });
            }
        }
    }

    /// The model names served by pools of `kind`, sorted.
    pub fn models(&self, kind: PoolKind) -> Vec<String> {
        let Ok(routes) = self.routes.read() else { return Vec::new() };
        let mut models: Vec<String> = routes.iter().filter(|(_, r)| r.kind == kind).map(|(m, _)| m.clone()).collect();
        models.sort();
        models
    }

    pub fn pools(&self) -> Vec<Arc<PoolRoute>> {
        let Ok(routes) = self.routes.read() else { return Vec::new() };
        let mut seen = std::collections::HashSet::new();
        routes.values().filter(|r| seen.insert(r.pool_id.clone())).cloned().collect()
    }

    /// Reloads pools and workers; starts queues for new pools, updates changed worker sets.
    /// Must run on an actix system (queues are actors).
    pub async fn refresh(&self, db: &Db, master: Arc<MasterKey>) -> Result<(), DbError> {
        let loaded = db
            .run(move |conn| {
                let mut out = Vec::new();
                for pool in workers::list_pools(conn)? {
                    let specs = workers::list_workers(conn, &pool.id)?
                        .into_iter()
                        .map(|w| {
                            let api_key = w
                                .api_key_sealed
                                .as_deref()
                                .and_then(|sealed| master.open(sealed, &workers::worker_seal_context(&w.id)).ok())
                                .and_then(|k| String::from_utf8(k).ok());
                            WorkerSpec {
                                id: w.id,
                                base_url: w.base_url,
                                api_key,
                                slots: w.slots.max(1) as u32,
                                draining: w.state == WorkerState::Draining,
                            }
                        })
                        .collect::<Vec<_>>();
                    out.push((pool, specs));
                }
                Ok(out)
            })
            .await?;
        let mut routes = HashMap::new();
        let Ok(mut queues) = self.queues.write() else { return Ok(()) };
        for (pool, specs) in loaded {
            let kind = pool.kind;
            let batch = (kind == PoolKind::Aligner).then(|| BatchSettings {
                max_items: pool.batch_max_items.max(1) as usize,
                max_audio_ms: pool.batch_max_audio_ms.max(1) as u64,
                max_wait: Duration::from_millis(pool.batch_max_wait_ms.max(0) as u64),
            });
            let settings = QueueSettings {
                limits: QueueLimits {
                    max_per_tenant: pool.max_queue_per_tenant.max(1) as usize,
                    max_total: pool.max_queue_total.max(1) as usize,
                },
                deadline: Duration::from_millis(pool.queue_deadline_ms.max(1) as u64),
                eject_for: self.eject_for,
                eject_after: self.eject_after,
                stats_window: self.stats_window,
                wait_target: pool.queue_wait_target_ms.map(|ms| Duration::from_millis(ms.max(1) as u64)),
                batch,
            };
            let queue = match queues.get_mut(&pool.id) {
                Some(pooled) if pooled.queue.is_alive() => {
                    if pooled.workers != specs {
                        pooled.queue.set_workers(specs.clone());
                        pooled.workers = specs.clone();
                    }
                    pooled.settings = settings;
                    pooled.queue.clone()
                }
                existing => {
                    if existing.is_some() {
                        tracing::error!(pool = %pool.name, "the pool's queue died; starting it again");
                        self.tasks.restarted("inference_queue");
                    }
                    let queue = self.start_queue(&pool.name, specs.clone(), settings);
                    queues.insert(
                        pool.id.clone(),
                        Pooled { queue: queue.clone(), workers: specs.clone(), settings, name: pool.name.clone() },
                    );
                    queue
                }
            };
            for model in &pool.models {
                routes.entry(model.clone()).or_insert_with(|| {
                    Arc::new(PoolRoute {
                        pool_id: pool.id.clone(),
                        pool_name: pool.name.clone(),
                        queue: queue.clone(),
                        workers: specs.clone(),
                        kind,
                        metrics: (kind == PoolKind::Llm).then(|| RouteMetrics::new(&pool.name, model)),
                    })
                });
            }
        }
        drop(queues);
        if let Ok(mut current) = self.routes.write() {
            *current = routes;
        }
        Ok(())
    }

    /// One round of active health checks (`GET /health`, else `GET /v1/models`), then the
    /// queue and worker gauges.
    pub async fn check_health(&self, http: &reqwest::Client) {
        let pools = self.pools();
        // Every worker at once: a dead one costs the round its timeout, not a timeout each.
        let probes = pools.iter().flat_map(|pool| pool.workers.iter().map(move |worker| (pool, worker))).map(|(pool, worker)| async move {
            let healthy = probe(http, worker, self.health_timeout).await;
            pool.queue.report_health(worker.id.clone(), healthy);
            if healthy && pool.kind == PoolKind::Llm {
                pool.queue.report_load(worker.id.clone(), scrape_load(http, worker, self.health_timeout).await);
            }
        });
        futures_util::future::join_all(probes).await;
        let previous = self.worker_health().unwrap_or_default();
        let mut health = Vec::new();
        let mut stats = Vec::new();
        for pool in pools {
            let status = pool.queue.status().await;
            stats.push(PoolStats { pool_id: pool.pool_id.clone(), pool: pool.pool_name.clone(), recent: status.recent });
            for (worker, state, _) in &status.workers {
                let down = matches!(state, WorkerStatus::Ejected | WorkerStatus::HalfOpen);
                let was = previous.iter().find(|h| &h.worker == worker).and_then(|h| h.down_since);
                health.push(WorkerHealth {
                    pool_id: pool.pool_id.clone(),
                    pool: pool.pool_name.clone(),
                    worker: worker.clone(),
                    base_url: pool.workers.iter().find(|w| &w.id == worker).map(|w| w.base_url.clone()).unwrap_or_default(),
                    status: *state,
                    down_since: down.then(|| was.unwrap_or_else(chrono::Utc::now)),
                });
            }
            let mut seen = self.gauge_tenants.lock().map(|mut m| m.remove(&pool.pool_id).unwrap_or_default()).unwrap_or_default();
            let mut now = std::collections::HashSet::new();
            for (tenant, depth) in &status.waiting_by_tenant {
                metrics::gauge!("gatehouse_queue_depth", "pool" => pool.pool_name.clone(), "tenant" => tenant.clone()).set(*depth as f64);
                seen.remove(tenant);
                now.insert(tenant.clone());
            }
            for gone in seen {
                metrics::gauge!("gatehouse_queue_depth", "pool" => pool.pool_name.clone(), "tenant" => gone).set(0.0);
            }
            if let Ok(mut m) = self.gauge_tenants.lock() {
                m.insert(pool.pool_id.clone(), now);
            }
            let adaptive = &status.adaptive;
            metrics::gauge!("gatehouse_queue_saturated", "pool" => pool.pool_name.clone()).set(f64::from(u8::from(adaptive.saturated)));
            metrics::gauge!("gatehouse_queue_tenants_held", "pool" => pool.pool_name.clone()).set(adaptive.limits.len() as f64);
            for (worker, state, outstanding) in status.workers {
                for s in WorkerStatus::ALL {
                    let up = if s == state { 1.0 } else { 0.0 };
                    metrics::gauge!("gatehouse_worker_up", "pool" => pool.pool_name.clone(), "worker" => worker.clone(), "state" => s.as_str())
                        .set(up);
                }
                metrics::gauge!("gatehouse_worker_outstanding", "pool" => pool.pool_name.clone(), "worker" => worker.clone())
                    .set(f64::from(outstanding));
            }
        }
        if let Ok(mut h) = self.health.lock() {
            *h = Some(health);
        }
        if let Ok(mut s) = self.pool_stats.lock() {
            *s = stats;
        }
    }

    /// Every pool's recent statistics as the last health round saw them.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        self.pool_stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every worker as the last health round saw it; None until a round has run.
    pub fn worker_health(&self) -> Option<Vec<WorkerHealth>> {
        self.health.lock().ok()?.clone()
    }
}

/// The worker's running + waiting requests from its Prometheus `/metrics` (vLLM), or None when
/// it exposes no such reading.
async fn scrape_load(http: &reqwest::Client, worker: &WorkerSpec, timeout: Duration) -> Option<u32> {
    let mut req = http.get(format!("{}/metrics", worker.base_url)).timeout(timeout);
    if let Some(key) = &worker.api_key {
        req = req.bearer_auth(key);
    }
    let response = req.send().await.ok().filter(|r| r.status().is_success())?;
    parse_vllm_load(&response.text().await.ok()?)
}

/// Sums `vllm:num_requests_running` and `vllm:num_requests_waiting` over their label sets
/// (Prometheus text format); None when neither is present.
pub fn parse_vllm_load(text: &str) -> Option<u32> {
    let mut total = 0.0;
    let mut found = false;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, rest) = match line.find('{') {
            Some(open) => (&line[..open], line.rfind('}').map_or("", |close| &line[close + 1..])),
            None => line.split_once(char::is_whitespace).unwrap_or((line, "")),
        };
        if name != "vllm:num_requests_running" && name != "vllm:num_requests_waiting" {
            continue;
        }
        if let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()) {
            total += value.max(0.0);
            found = true;
        }
    }
    found.then(|| total.round().min(f64::from(u32::MAX)) as u32)
}

async fn probe(http: &reqwest::Client, worker: &WorkerSpec, timeout: Duration) -> bool {
    for path in ["/health", "/v1/models"] {
        let mut req = http.get(format!("{}{path}", worker.base_url)).timeout(timeout);
        if let Some(key) = &worker.api_key {
            req = req.bearer_auth(key);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => continue,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::parse_vllm_load;

    #[test]
    fn vllm_load_sums_running_and_waiting_over_label_sets() {
        let text = "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n\
                    # TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 3.0\n\
                    vllm:num_requests_running{engine=\"1\",model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 2.0\n\
                    vllm:num_requests_waiting{model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 4 1700000000000\n\
                    vllm:num_requests_swapped 9\n\
                    vllm:gpu_cache_usage_perc 0.5\n";
        assert_eq!(parse_vllm_load(text), Some(9));
        assert_eq!(parse_vllm_load("vllm:num_requests_waiting 0\n"), Some(0));
        assert_eq!(parse_vllm_load("process_cpu_seconds_total 12\n"), None);
        assert_eq!(parse_vllm_load("vllm:num_requests_running NaN\n"), None);
    }
}
