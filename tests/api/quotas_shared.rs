//! Hard quotas across instances: three instances on one database and one Redis serve a tenant
//! with a hard daily token quota, and the database then bills at most the quota plus one
//! request's `max_tokens`. Without Redis (or with Redis down and `redis.on_error = "local"`) each
//! instance checks its own book: one instance alone still holds the quota; `"closed"` answers 503.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb};
use crate::limits::{REDIS_URL, World, chat, post, redis_prefix};

const QUOTA: i64 = 3000;
const MAX_TOKENS: u32 = 50;

/// Tokens the database bills the tenant.
fn billed_tokens(db: &TestDb, tenant: &gatehouse::domain::TenantId) -> i64 {
    use diesel::prelude::*;
    use gatehouse::db::schema::usage_rollups::dsl as r;
    let rows: Vec<(i64, i64)> = r::usage_rollups
        .filter(r::tenant_id.eq(tenant.as_str()))
        .select((r::prompt_tokens, r::completion_tokens))
        .load(&mut db.conn())
        .unwrap();
    rows.iter().map(|(p, c)| p + c).sum()
}

/// Sends `count` chat requests round-robin over `apps`, 10 at a time; returns the statuses and
/// error codes.
async fn drive(apps: &[&TestApp], key: &str, count: usize) -> Vec<(u16, Option<String>)> {
    futures_util::stream::iter(0..count)
        .map(|i| {
            let app = apps[i % apps.len()];
            async move {
                let r = post(app, key, &chat(MAX_TOKENS, false)).await;
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or_default();
                (status, body["error"]["code"].as_str().map(str::to_owned))
            }
        })
        .buffer_unordered(10)
        .collect()
        .await
}

#[actix_web::test]
async fn three_instances_sharing_redis_hold_a_hard_token_quota_to_one_request() {
    let world = World::new();
    world.plan(json!({ "daily_token_quota": QUOTA }));
    let prefix = redis_prefix();
    let with_redis = |c: &mut gatehouse::config::Config| {
        c.redis.url = gatehouse::config::Secret::new(REDIS_URL);
        c.redis.key_prefix = prefix.clone();
        c.auth.issuer = "https://gatehouse.test".into();
    };
    let apps = [
        TestApp::spawn_on(world.db.share(), with_redis).await,
        TestApp::spawn_on(world.db.share(), with_redis).await,
        TestApp::spawn_on(world.db.share(), with_redis).await,
    ];
    let answers = drive(&apps.iter().collect::<Vec<_>>(), &world.key, 300).await;
    let served = answers.iter().filter(|a| a.0 == 200).count();
    let refused = answers.iter().filter(|a| a.0 == 429 && a.1.as_deref() == Some("quota_exceeded")).count();
    assert_eq!(served + refused, 300, "only answers and quota refusals: {answers:?}");
    // Refusals above came while other requests held reservations; one at a time, what those
    // did not use is served until a request's reservation no longer fits (once the last holds
    // are released: releases reach Redis in batches, a few milliseconds after the answers).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut tail = 0;
    while post(&apps[tail % 3], &world.key, &chat(MAX_TOKENS, false)).await.status() == 200 {
        tail += 1;
        assert!(tail < 100, "the quota ends");
    }
    for app in &apps {
        app.state.usage.flush().await;
    }
    let billed = billed_tokens(&world.db, &world.tenant);
    eprintln!("served {served} + {tail}, refused {refused}, billed {billed} tokens of a {QUOTA}-token quota");
    assert!(billed <= QUOTA + i64::from(MAX_TOKENS), "billed {billed}: more than the quota plus one request");
    assert!(billed >= QUOTA - 2 * i64::from(MAX_TOKENS), "the quota was used, not refused early: {billed}");
    // Each instance alone would have served the whole quota: three times it in all.
}

#[actix_web::test]
async fn with_redis_down_an_instance_falls_back_to_its_own_book_or_refuses_when_closed() {
    let world = World::new();
    world.plan(json!({ "daily_token_quota": QUOTA }));
    let dead = |policy: gatehouse::config::RedisFailure| {
        move |c: &mut gatehouse::config::Config| {
            c.redis.url = gatehouse::config::Secret::new("redis://127.0.0.1:1");
            c.redis.timeout_ms = 100;
            c.redis.on_error = policy;
        }
    };
    let closed = TestApp::spawn_on(world.db.share(), dead(gatehouse::config::RedisFailure::Closed)).await;
    let r = post(&closed, &world.key, &chat(MAX_TOKENS, false)).await;
    assert_eq!(r.status(), 503, "the quota cannot be checked across instances");
    assert!(r.headers().get("retry-after").is_some());

    let local = TestApp::spawn_on(world.db.share(), dead(gatehouse::config::RedisFailure::Local)).await;
    let answers = drive(&[&local], &world.key, 100).await;
    assert!(answers.iter().all(|a| a.0 == 200 || a.1.as_deref() == Some("quota_exceeded")), "{answers:?}");
    while post(&local, &world.key, &chat(MAX_TOKENS, false)).await.status() == 200 {}
    local.state.usage.flush().await;
    let billed = billed_tokens(&world.db, &world.tenant);
    let bounds = QUOTA - 2 * i64::from(MAX_TOKENS)..=QUOTA + i64::from(MAX_TOKENS);
    assert!(bounds.contains(&billed), "one instance holds the quota alone: {billed}");
    let metrics = local.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("gatehouse_redis_errors_total"), "{metrics}");
}
