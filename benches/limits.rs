//! The rate limiter on the request path: the in-memory store's admission check (target ≤ 5 µs)
//! with a full minute's window behind it, and, when Redis answers on 127.0.0.1:6379, the shared
//! store's admission with the number of Redis commands per admission read from
//! `INFO commandstats` (target: one round trip). Run with `cargo bench --bench limits`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // benchmark set-up: a failure should stop the run loudly

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::limits::local::LocalStore;
use gatehouse::limits::shared::RedisStore;
use gatehouse::limits::{Demand, Limits, Subject, Verdict};

mod support;

fn subject() -> Subject {
    // A tenant limit and a credential override on requests and tokens: four counters per request.
    let limits = Limits { requests_per_minute: Some(u64::MAX / 4), tokens_per_minute: Some(u64::MAX / 4), ..Limits::default() };
    Subject {
        tenant_id: gatehouse::domain::TenantId::from_trusted("ten_bench".to_owned()),
        credential_id: "key_bench".into(),
        tenant: limits,
        credential: limits,
    }
}

fn local(c: &mut Criterion) {
    let checks = subject().checks(Demand { tokens: 300, audio_seconds: 0 });
    c.bench_function("limiter/local admit (4 counters, 10k entries in window)", |b| {
        b.iter_custom(|iters| {
            let store = LocalStore::new();
            for i in 0..10_000 {
                store.admit(&format!("warm{i}"), &checks);
            }
            let ids: Vec<String> = (0..iters).map(|i| format!("{i:032x}")).collect();
            let start = Instant::now();
            for id in &ids {
                black_box(store.admit(id, black_box(&checks)));
            }
            start.elapsed()
        })
    });
}

/// 10,000 tenants with request and token limits, all active within the minute: 20,000 live
/// windows in the store while each admission is for one tenant of them.
fn local_many_tenants(c: &mut Criterion) {
    let limits = Limits { requests_per_minute: Some(u64::MAX / 4), tokens_per_minute: Some(u64::MAX / 4), ..Limits::default() };
    let checks: Vec<Vec<_>> = (0..10_000)
        .map(|t| {
            let s = Subject {
                tenant_id: gatehouse::domain::TenantId::from_trusted(format!("ten_bench{t:05}")),
                credential_id: format!("key_bench{t:05}"),
                tenant: limits,
                credential: Limits::default(),
            };
            s.checks(Demand { tokens: 300, audio_seconds: 0 })
        })
        .collect();
    c.bench_function("limiter/local admit (2 counters, 10k tenants' 20k windows live)", |b| {
        b.iter_custom(|iters| {
            let store = LocalStore::new();
            for (i, tenant) in checks.iter().enumerate() {
                store.admit(&format!("warm{i}"), tenant);
            }
            let ids: Vec<String> = (0..iters).map(|i| format!("{i:032x}")).collect();
            let start = Instant::now();
            for (i, id) in ids.iter().enumerate() {
                black_box(store.admit(id, black_box(&checks[i % checks.len()])));
            }
            start.elapsed()
        })
    });
}

/// Calls of the commands a client sends for a script (`EVALSHA`, and `EVAL` after a cache
/// miss): the round trips. Commands run inside a script are listed by INFO too, but cost none.
fn redis_script_calls(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

fn shared(c: &mut Criterion) {
    let url = "redis://127.0.0.1:6379";
    let Ok(mut probe) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        eprintln!("limiter/redis: no Redis on 127.0.0.1:6379; skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut config = gatehouse::config::RedisConfig::default();
    config.url = gatehouse::config::Secret::new(url);
    config.key_prefix = format!("gh-bench-{}", std::process::id());
    let (store, _settler) = rt.block_on(RedisStore::connect(&config)).unwrap();
    let checks = subject().checks(Demand { tokens: 300, audio_seconds: 0 });

    // Round trips per admission, with the settle task idle (admissions here hold no concurrency
    // slot and are never reconciled).
    let n = 2000;
    let before = redis_script_calls(&mut probe);
    rt.block_on(async {
        for i in 0..n {
            assert!(matches!(store.admit(&format!("probe{i}"), &checks).await.unwrap(), Verdict::Admitted { .. }));
        }
    });
    let after = redis_script_calls(&mut probe);
    let per = (after - before) as f64 / f64::from(n);
    eprintln!("limiter/redis: {per:.3} script calls (round trips) per admission ({n} admissions)");

    c.bench_function("limiter/redis admit (4 counters, one EVALSHA)", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = &store;
            let checks = &checks;
            async move {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(store.admit(&format!("b{i}"), checks).await.unwrap());
                }
                start.elapsed()
            }
        })
    });
    let _: () = redis::cmd("EVAL")
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg(0)
        .arg(format!("{}:*", config.key_prefix))
        .query(&mut probe)
        .unwrap();
}

/// The QuotaAccountant under 5,000 finished requests a second for 10 s (50 tenants × 4 keys ×
/// 2 models): how many usage write statements reach PostgreSQL. Printed, not timed by criterion.
fn usage_writes(_: &mut Criterion) {
    let Some(scratch) = support::ScratchDb::create("usage") else { return };
    let url = scratch.url.clone();
    let config = gatehouse::config::Config::default();
    // The accountant is an actor: it starts on the current actix arbiter.
    let (writes, requests, rows) = actix_rt::System::new().block_on(async {
        let db = gatehouse::db::Db::new(&url, &config.database);
        let accountant = gatehouse::actors::quota_accountant::QuotaAccountantHandle::start(db, &config.usage);
        let start = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while start.elapsed() < Duration::from_secs(10) {
            tick.tick().await;
            for _ in 0..50 {
                let i = sent;
                accountant.record(gatehouse::metering::UsageEvent {
                    tenant_id: gatehouse::domain::TenantId::from_trusted(format!("ten_bench{:02}", i % 50)),
                    credential_id: format!("key{}", i % 4),
                    model: if i % 2 == 0 { "a".into() } else { "b".into() },
                    at: chrono::Utc::now(),
                    status: 200,
                    prompt_tokens: 20,
                    completion_tokens: 80,
                    audio_ms: 0,
                    queue_wait_ms: 1,
                    latency_ms: 30,
                });
                sent += 1;
            }
        }
        accountant.flush().await;
        let rows: i64 = {
            use diesel::prelude::*;
            let mut c = scratch.connect();
            diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT coalesce(sum(requests), 0)::bigint FROM usage_rollups)"))
                .get_result(&mut c)
                .unwrap()
        };
        (accountant.writes(), sent, rows)
    });
    eprintln!(
        "usage writes: {requests} requests in 10 s ({} /s) -> {writes} usage write statements ({:.2} per second); {rows} requests in the rollups",
        requests / 10,
        writes as f64 / 10.0
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = local, local_many_tenants, shared, usage_writes
}
criterion_main!(benches);
