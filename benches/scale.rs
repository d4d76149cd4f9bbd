//! Gatehouse's per-tenant and per-credential state at scale: 10,000 tenants with 10 API keys
//! each (100,000 keys), in a scratch database (`support::ScratchDb`). Prints, does not
//! assert. Run with `cargo bench --bench scale` (SCALE_TENANTS and SCALE_KEYS_PER_TENANT
//! change the sizes); the figures go in docs/performance.md.
//!
//! 1. The caches alone: every key authenticated and its tenant's policy and its own limits
//!    loaded, with cache lifetimes of an hour so all of them stay: the process's RSS before and
//!    after (bytes per key), the time per lookup cold (from PostgreSQL) and warm at full caches,
//!    and warm with a single key for comparison.
//! 2. The whole `/v1` path: an in-process Gatehouse with its default settings in front of the
//!    built-in simulator, one chat completion per key (32 at a time): RSS before, after, and
//!    after every cache lifetime has passed (70 s), so what per-key state stays is visible.
//!
//! The allocator is mimalloc, as in the `gatehouse` binary. Client, simulator and server share
//! the process and its two cores here, so the request rates are not gateway figures.

#![allow(clippy::expect_used)] // benchmark set-up: a failure stops the run, saying which step failed

use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection};
use futures_util::StreamExt;
use gatehouse::admission::PolicyStore;
use gatehouse::auth::service::AuthService;
use gatehouse::config::{Config, Secret};
use gatehouse::db::Db;
use gatehouse::domain::TenantId;
use gatehouse::service::api_keys::CreateApiKeyRequest;
use gatehouse::service::tenants::CreateTenantRequest;
use gatehouse::service::workers::{AddWorkerRequest, CreatePoolRequest};
use gatehouse::service::{Actor, api_keys, tenants, workers};
use gatehouse::simulator::llm::{Simulator, SimulatorConfig};

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MODEL: &str = "Qwen/Qwen2.5-7B-Instruct";

fn size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Resident memory of this process, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux only)");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb / 1024.0
}

fn config(url: &str) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.database.url = Secret::new(url);
    c.auth.master_key = Secret::new(gatehouse::auth::seal::MasterKey::generate_encoded());
    c.auth.pepper = Secret::new("scale-pepper-scale-pepper-scale-pepper-01");
    c.auth.issuer = "https://gatehouse.example".into();
    c.usage.journal_dir = std::env::temp_dir().join(format!("gatehouse-scale-journal-{}", std::process::id()));
    c.alignment.jobs_dir = std::env::temp_dir().join(format!("gatehouse-scale-jobs-{}", std::process::id()));
    c
}

/// `tenants` tenants on the default plan with `per_tenant` chat keys each; returns the keys.
fn seed(conn: &mut PgConnection, config: &Config, tenants: usize, per_tenant: usize) -> Vec<String> {
    let pepper = gatehouse::auth::secrets::Pepper::new(&config.auth.pepper);
    let mut keys = Vec::with_capacity(tenants * per_tenant);
    for chunk in 0..tenants.div_ceil(1000) {
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            for t in chunk * 1000..((chunk + 1) * 1000).min(tenants) {
                let req = CreateTenantRequest { name: format!("Tenant {t:05}"), slug: None, time_zone: None, plan: None };
                let tenant = TenantId::parse(&tenants::create(conn, &req, &Actor::cli()).expect("create a tenant").id).expect("tenant id");
                for k in 0..per_tenant {
                    let req = CreateApiKeyRequest {
                        name: format!("key {k}"),
                        scopes: vec!["chat:completions".into()],
                        environment: None,
                        expires_in_days: None,
                        ip_allowlist: Vec::new(),
                    };
                    keys.push(api_keys::create(conn, &pepper, &tenant, &req, &Actor::cli()).expect("create an API key").key);
                }
            }
            Ok(())
        })
        .expect("seed the tenants and keys");
    }
    keys
}

/// Runs `step` on every item, 32 at a time; returns microseconds per item.
async fn per_item<'a, F: Future<Output = ()>>(items: impl ExactSizeIterator<Item = &'a str>, step: impl Fn(&'a str) -> F) -> f64 {
    let started = Instant::now();
    let n = items.len();
    futures_util::stream::iter(items).map(step).buffer_unordered(32).collect::<Vec<()>>().await;
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Part 1: the credential and policy caches filled with every key, kept for an hour.
async fn caches(url: &str, config: &Config, keys: &[String]) {
    let mut config = config.clone();
    config.auth.cache_ttl_ms = 3_600_000;
    let db = Db::new(url, &config.database);
    let auth = AuthService::new(&config).expect("auth service");
    let rules = gatehouse::domain::prompt_rules::Catalogue::embedded().expect("embedded prompt rule packs");
    let policies = PolicyStore::new(db.clone(), Duration::from_secs(3600), rules);
    let lookup = |key: &str| {
        let (auth, db, policies) = (&auth, &db, &policies);
        let key = key.to_owned();
        async move {
            let principal = auth.authenticate_api_key(db, &key, None).await.expect("a seeded key authenticates");
            let policy = policies.tenant_policy(&principal.tenant_id).await.expect("tenant policy");
            policies.subject(&principal, &policy).await.expect("key limits");
        }
    };
    let before = rss_mb();
    let cold = per_item(keys.iter().map(String::as_str), &lookup).await;
    // The last-used writes the first pass queued finish before the next reading.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let filled = rss_mb();
    let warm = per_item(keys.iter().map(String::as_str), &lookup).await;
    let one = per_item(std::iter::repeat_n(keys[0].as_str(), keys.len()), &lookup).await;
    drop((auth, policies));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dropped = rss_mb();
    eprintln!(
        "caches: {} keys: RSS {before:.0} -> {filled:.0} MB ({:.2} KB per key with its tenant's policy), {dropped:.0} MB with the caches dropped; lookup (auth + policy + limits) cold {cold:.1} us, warm at full caches {warm:.2} us, warm with one key {one:.2} us (32 concurrent, both cores shared)",
        keys.len(),
        (filled - before) * 1024.0 / keys.len() as f64,
    );
}

/// Part 2: one chat completion per key through an in-process Gatehouse with default settings.
async fn whole_path(url: &str, config: &Config, keys: &[String], simulator: u16) {
    let mut conn = PgConnection::establish(url).expect("connect to the scratch database");
    let master = gatehouse::auth::seal::MasterKey::from_config(&config.auth.master_key).expect("master key");
    let mut pool = CreatePoolRequest::new("qwen", gatehouse::domain::PoolKind::Llm, vec![MODEL.into()]);
    pool.queue_deadline_ms = Some(30_000);
    workers::create_pool(&mut conn, &pool, &Actor::cli()).expect("create the pool");
    let worker = AddWorkerRequest { base_url: format!("http://127.0.0.1:{simulator}"), api_key: None, slots: Some(256) };
    workers::add_worker(&mut conn, &master, "qwen", &worker, &Actor::cli()).expect("add the simulator as worker");
    let app = gatehouse::startup::Application::build(config.clone()).await.expect("Gatehouse starts");
    let base = format!("http://127.0.0.1:{}/v1/chat/completions", app.port());
    let handle = app.handle();
    let server = actix_rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "model": MODEL, "max_tokens": 1, "messages": [{ "role": "user", "content": "hi" }] });
    let send = |key: String| {
        let (client, base, body) = (&client, &base, &body);
        async move { client.post(base).bearer_auth(key).json(body).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    send(keys[0].clone()).await;
    let before = rss_mb();
    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(keys.iter().cloned()).map(send).buffer_unordered(32).collect().await;
    let secs = started.elapsed().as_secs_f64();
    let after = rss_mb();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    // Every cache lifetime (credentials 4 s, policies 5 s, last-used marks 60 s) passes.
    tokio::time::sleep(Duration::from_secs(70)).await;
    send(keys[0].clone()).await;
    let settled = rss_mb();
    eprintln!(
        "whole path: {} requests, one per key ({ok} answered 200) in {secs:.1} s ({:.0}/s): RSS {before:.0} -> {after:.0} MB ({:.2} KB per key), {settled:.0} MB after 70 s idle",
        keys.len(),
        keys.len() as f64 / secs,
        (after - before) * 1024.0 / keys.len() as f64,
    );
    handle.stop(true).await;
    let _ = server.await;
}

/// One part in a process of its own (so neither part's memory shows in the other's readings),
/// on the database and keys the parent seeded.
fn part(name: &str) {
    let url = std::env::var("SCALE_DATABASE_URL").expect("SCALE_DATABASE_URL (set by the parent process)");
    let keys: Vec<String> = std::fs::read_to_string(std::env::var("SCALE_KEYS_FILE").expect("SCALE_KEYS_FILE (set by the parent process)"))
        .expect("the keys file")
        .lines()
        .map(str::to_owned)
        .collect();
    let config = config(&url);
    actix_rt::System::new().block_on(async move {
        if name == "caches" {
            return caches(&url, &config, &keys).await;
        }
        let mut sim = SimulatorConfig::llm("127.0.0.1:0");
        sim.ttft_ms = 0;
        sim.tpot_ms = 0;
        sim.max_concurrent = 256;
        let sim = Simulator::start(sim).expect("simulator starts");
        actix_rt::spawn(sim.server);
        whole_path(&url, &config, &keys, sim.port).await;
    });
}

fn main() {
    openssl_sys::init();
    gatehouse::startup::tls::install_crypto_provider();
    if let Ok(name) = std::env::var("SCALE_PART") {
        return part(&name);
    }
    let (tenant_count, per_tenant) = (size("SCALE_TENANTS", 10_000), size("SCALE_KEYS_PER_TENANT", 10));
    let Some(scratch) = support::ScratchDb::create("scale") else { return };
    let url = scratch.url.clone();
    let config = config(&url);
    let mut conn = scratch.connect();
    let started = Instant::now();
    let keys = seed(&mut conn, &config, tenant_count, per_tenant);
    drop(conn);
    eprintln!("seeded {tenant_count} tenants and {} API keys in {:.0} s", keys.len(), started.elapsed().as_secs_f64());
    let keys_file = tempfile::NamedTempFile::new().expect("a temporary file for the keys");
    std::fs::write(keys_file.path(), keys.join("\n")).expect("write the keys file");
    for part in ["caches", "path"] {
        let status = std::process::Command::new(std::env::current_exe().expect("this bench's path"))
            .env("SCALE_PART", part)
            .env("SCALE_DATABASE_URL", &url)
            .env("SCALE_KEYS_FILE", keys_file.path())
            .status()
            .expect("run a part in its own process");
        assert!(status.success(), "the {part} part failed: {status}");
    }
}
