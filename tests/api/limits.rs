//! Rate limits, quotas, usage and billing exports end to end: real PostgreSQL, real Redis, real
//! HTTP to simulator workers, several Gatehouse instances on one database.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use futures_util::StreamExt;
use gatehouse::service::Actor;
use gatehouse::service::workers::{AddWorkerRequest, CreatePoolRequest};
use gatehouse::simulator::llm::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

use crate::helpers::{TEST_MASTER_KEY, TestApp, TestDb, eventually, gatehouse, run, seed};

pub(crate) const MODEL: &str = "Qwen/Qwen2.5-7B-Instruct";
pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn simulator() -> u16 {
    let mut c = SimulatorConfig::llm("127.0.0.1:0");
    c.ttft_ms = 2;
    c.tpot_ms = 1;
    c.max_concurrent = 256;
    let sim = Simulator::start(c).unwrap();
    actix_rt::spawn(sim.server);
    sim.port
}

/// A database with one tenant, one pool of one simulator (many slots) and an API key.
pub(crate) struct World {
    pub(crate) db: TestDb,
    pub(crate) tenant: gatehouse::domain::TenantId,
    pub(crate) key: String,
    /// The simulator worker's port (its `/metrics` counts the requests it received).
    pub(crate) simulator: u16,
}

impl World {
    pub(crate) fn new() -> World {
        let port = simulator();
        let db = TestDb::new();
        let tenant = seed::tenant(&db, "Acme");
        let key = seed::api_key(&db, &tenant, "chat:completions models:read");
        let master = gatehouse::auth::seal::MasterKey::from_config(&gatehouse::config::Secret::new(TEST_MASTER_KEY)).unwrap();
        let mut conn = db.conn();
        let req = CreatePoolRequest {
            queue_deadline_ms: Some(30_000),
            ..CreatePoolRequest::new("qwen", gatehouse::domain::PoolKind::Llm, vec![MODEL.into()])
        };
        gatehouse::service::workers::create_pool(&mut conn, &req, &Actor::cli()).unwrap();
        diesel::update(gatehouse::db::schema::worker_pools::table)
            .set((
                gatehouse::db::schema::worker_pools::max_queue_per_tenant.eq(5000),
                gatehouse::db::schema::worker_pools::max_queue_total.eq(5000),
            ))
            .execute(&mut conn)
            .unwrap();
        let w = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(256) };
        gatehouse::service::workers::add_worker(&mut conn, &master, "qwen", &w, &Actor::cli()).unwrap();
        World { db, tenant, key, simulator: port }
    }

    fn key_id(&self) -> String {
        self.key.split('_').nth(2).unwrap().to_owned()
    }

    /// Sets the API key's own limits.
    fn limit_key(&self, limits: serde_json::Value) {
        let limits: gatehouse::service::plans::CredentialLimits = serde_json::from_value(limits).unwrap();
        gatehouse::service::limits::set(
            &mut self.db.conn(),
            &self.tenant,
            gatehouse::service::limits::Credential::ApiKey,
            &self.key_id(),
            &limits,
            &Actor::cli(),
        )
        .unwrap();
    }

    /// Puts the tenant on a new plan with these settings.
    pub(crate) fn plan(&self, settings: Value) -> String {
        let mut spec = json!({ "name": format!("plan-{}", gatehouse::domain::random_base62(6)) });
        spec.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
        let spec: gatehouse::service::plans::PlanSpec = serde_json::from_value(spec).unwrap();
        let mut conn = self.db.conn();
        let plan = gatehouse::service::plans::create(&mut conn, &spec, &Actor::cli()).unwrap();
        let req = gatehouse::service::tenants::UpdateTenantRequest { plan: Some(plan.spec.name.clone()), ..Default::default() };
        gatehouse::service::tenants::update(&mut conn, &self.tenant, &req, &Actor::cli()).unwrap();
        plan.spec.name
    }
}

pub(crate) fn chat(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": MODEL, "max_tokens": max_tokens, "stream": stream,
        "stream_options": { "include_usage": true },
        "messages": [{ "role": "user", "content": "count the sheep please" }],
    })
}

pub(crate) async fn post(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/v1/chat/completions")).bearer_auth(key).json(body).send().await.unwrap()
}

/// A management-API call with a JSON body (`PUT` or `PATCH`).
async fn send_json(app: &TestApp, method: reqwest::Method, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.client.request(method, app.url(path)).bearer_auth(token).json(body).send().await.unwrap()
}

pub(crate) fn redis_prefix() -> String {
    format!("gh-test-{}", gatehouse::domain::random_base62(10))
}

#[actix_web::test]
async fn three_instances_sharing_redis_admit_exactly_the_limit() {
    let world = World::new();
    const LIMIT: usize = 100;
    world.limit_key(json!({ "requests_per_minute": LIMIT }));
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
    assert!(apps.iter().all(|a| a.state.admission.limiter().is_shared()));
    // 1,050 requests, round-robin over the three instances, 30 at a time.
    let statuses: Vec<u16> = futures_util::stream::iter(0..1050)
        .map(|i| {
            let app = &apps[i % 3];
            let key = world.key.clone();
            async move { app.get_with("/v1/models", &key).await.status().as_u16() }
        })
        .buffer_unordered(30)
        .collect()
        .await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(admitted + limited, 1050, "only 200 and 429 expected: {statuses:?}");
    let tolerance = LIMIT * 2 / 100;
    assert!(admitted.abs_diff(LIMIT) <= tolerance, "admitted {admitted} of 1050 across 3 instances; limit {LIMIT}/min");
    // Without Redis, each instance would have admitted LIMIT: 3× the limit.
}

#[actix_web::test]
async fn parallel_streams_overshoot_the_token_limit_by_at_most_one_request() {
    let world = World::new();
    const TPM: u64 = 2000;
    const MAX_TOKENS: u32 = 100;
    world.limit_key(json!({ "tokens_per_minute": TPM }));
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let body = chat(MAX_TOKENS, true);
    let results: Vec<(u16, u64)> = futures_util::future::join_all((0..60).map(|_| async {
        let resp = post(&app, &world.key, &body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let used = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["usage"]["total_tokens"].as_u64())
            .sum::<u64>();
        (status, used)
    }))
    .await;
    let admitted: Vec<_> = results.iter().filter(|(s, _)| *s == 200).collect();
    let consumed: u64 = admitted.iter().map(|(_, u)| u).sum();
    assert!(!admitted.is_empty() && admitted.len() < 60, "{results:?}");
    assert!(results.iter().all(|(s, _)| *s == 200 || *s == 429), "{results:?}");
    assert!(consumed <= TPM + u64::from(MAX_TOKENS), "admitted {} streams using {consumed} tokens against {TPM}/min", admitted.len());
}

#[actix_web::test]
async fn responses_carry_rate_limit_headers_and_429s_retry_after() {
    let world = World::new();
    world.plan(json!({ "requests_per_minute": 3, "tokens_per_minute": 100000 }));
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let ok = post(&app, &world.key, &chat(10, false)).await;
    assert_eq!(ok.status(), 200);
    let h = |r: &reqwest::Response, n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h(&ok, "x-ratelimit-limit-requests").as_deref(), Some("3"));
    assert_eq!(h(&ok, "x-ratelimit-remaining-requests").as_deref(), Some("2"));
    assert_eq!(h(&ok, "x-ratelimit-limit-tokens").as_deref(), Some("100000"));
    assert!(h(&ok, "x-ratelimit-reset-requests").is_some());
    assert_eq!(h(&ok, "ratelimit-policy").as_deref(), Some("\"requests\";q=3;w=60, \"tokens\";q=100000;w=60"));
    assert!(h(&ok, "ratelimit").unwrap().starts_with("\"requests\";r=2;t="));
    post(&app, &world.key, &chat(10, false)).await;
    post(&app, &world.key, &chat(10, false)).await;
    let limited = post(&app, &world.key, &chat(10, false)).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = h(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=120).contains(&retry), "retry-after {retry}");
    assert_eq!(h(&limited, "x-ratelimit-remaining-requests").as_deref(), Some("0"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[actix_web::test]
async fn a_limit_change_applies_without_restart() {
    let world = World::new();
    let plan = world.plan(json!({}));
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let operator = seed::operator_token(&app.db);
    for _ in 0..3 {
        assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
    }
    // Contradictory and negative values are refused, naming the field.
    let bad = send_json(
        &app,
        reqwest::Method::PUT,
        &format!("/api/v1/plans/{plan}"),
        &operator,
        &json!({ "name": plan, "requests_per_minute": -1 }),
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("requests_per_minute"));
    let bad = send_json(
        &app,
        reqwest::Method::PUT,
        &format!("/api/v1/plans/{plan}"),
        &operator,
        &json!({ "name": plan, "monthly_token_quota": 10, "monthly_token_soft_quota": 20 }),
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("monthly_token_soft_quota"));
    let ok = send_json(
        &app,
        reqwest::Method::PUT,
        &format!("/api/v1/plans/{plan}"),
        &operator,
        &json!({ "name": plan, "requests_per_minute": 3 }),
    )
    .await;
    assert_eq!(ok.status(), 200);
    // This instance dropped its cached plan at once (others within 5 s). Unlimited requests were
    // not counted, so of four more, exactly one passes the new limit of 3 per minute.
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..4).map(|_| async { post(&app, &world.key, &chat(5, false)).await.status().as_u16() })).await;
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
}

#[actix_web::test]
async fn the_hard_quota_refuses_with_quota_exceeded_and_writes_an_alert() {
    let world = World::new();
    world.plan(json!({ "daily_request_quota": 2, "monthly_token_quota": 1000000, "monthly_token_soft_quota": 10 }));
    let app = TestApp::spawn_on(world.db.share(), |c| c.usage.flush_interval_ms = 50).await;
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
    let refused = post(&app, &world.key, &chat(5, false)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers().get("x-should-retry").unwrap(), "false");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("daily request quota of 2"));
    app.state.usage.flush().await;
    let kinds: Vec<String> = gatehouse::db::schema::alert_outbox::table
        .select(gatehouse::db::schema::alert_outbox::dedup_key)
        .load(&mut world.db.conn())
        .unwrap();
    assert!(kinds.iter().any(|k| k.contains(":daily:requests:") && k.ends_with(":100")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.contains(":monthly:tokens_soft:") && k.ends_with(":80")), "{kinds:?}");
    // A restart reads the quota back from the database: still refused.
    let again = TestApp::spawn_on(world.db.share(), |_| {}).await;
    assert_eq!(post(&again, &world.key, &chat(5, false)).await.status(), 429);
}

#[actix_web::test]
async fn redis_down_never_gives_a_500() {
    let world = World::new();
    world.limit_key(json!({ "requests_per_minute": 1000 }));
    let dead = |policy: gatehouse::config::RedisFailure| {
        move |c: &mut gatehouse::config::Config| {
            c.redis.url = gatehouse::config::Secret::new("redis://127.0.0.1:1");
            c.redis.timeout_ms = 100;
            c.redis.on_error = policy;
        }
    };
    let open = TestApp::spawn_on(world.db.share(), dead(gatehouse::config::RedisFailure::Local)).await;
    assert_eq!(open.get_with("/v1/models", &world.key).await.status(), 200);
    let closed = TestApp::spawn_on(world.db.share(), dead(gatehouse::config::RedisFailure::Closed)).await;
    let r = closed.get_with("/v1/models", &world.key).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let metrics = open.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("gatehouse_redis_errors_total"), "{metrics}");
}

#[actix_web::test]
async fn prompt_deny_patterns_refuse_before_queueing() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let admin = seed::admin_token(&app.db, &world.tenant);
    let set = send_json(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/tenants/{}", world.tenant),
        &admin,
        &json!({ "prompt_deny_patterns": ["secret\\s+project", "(unclosed"] }),
    )
    .await;
    assert_eq!(set.status(), 422, "an invalid pattern is refused");
    let set = send_json(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/tenants/{}", world.tenant),
        &admin,
        &json!({ "prompt_deny_patterns": ["secret\\s+project"] }),
    )
    .await;
    assert_eq!(set.status(), 200);
    // A tenant admin may not change the plan.
    let plan =
        send_json(&app, reqwest::Method::PATCH, &format!("/api/v1/tenants/{}", world.tenant), &admin, &json!({ "plan": "default" })).await;
    assert_eq!(plan.status(), 403);
    let mut body = chat(5, false);
    body["messages"][0]["content"] = json!("tell me about the SECRET   Project");
    let refused = post(&app, &world.key, &body).await;
    assert_eq!(refused.status(), 400);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "prompt_denied");
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
}

/// Sum of the rollups per (credential, model), straight from the database.
fn rollup_totals(db: &TestDb) -> HashMap<(String, String), (i64, i64, i64)> {
    use gatehouse::db::schema::usage_rollups as r;
    let rows: Vec<(String, String, i64, i64, i64)> =
        r::table.select((r::credential_id, r::model, r::requests, r::prompt_tokens, r::completion_tokens)).load(&mut db.conn()).unwrap();
    let mut out: HashMap<(String, String), (i64, i64, i64)> = HashMap::new();
    for (c, m, req, p, comp) in rows {
        let e = out.entry((c, m)).or_default();
        e.0 += req;
        e.1 += p;
        e.2 += comp;
    }
    out
}

#[actix_web::test]
async fn the_export_reconciles_with_the_database_to_the_token() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    for i in 0..25 {
        let r = post(&app, &world.key, &chat(5 + i, i % 2 == 0)).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap(); // a stream's usage is recorded when it ends
    }
    app.state.usage.flush().await;
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    let admin = seed::admin_token(&app.db, &world.tenant);
    let resp = app.get_with(&format!("/api/v1/tenants/{}/usage/export?period={period}&format=csv", world.tenant), &admin).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/csv; charset=utf-8");
    let csv_text = resp.text().await.unwrap();
    let mut lines = csv_text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "tenant_id,credential_id,model,period_start,requests,prompt_tokens,completion_tokens,audio_seconds,errors"
    );
    let mut from_export: HashMap<(String, String), (i64, i64, i64)> = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], world.tenant.as_str());
        let e = from_export.entry((f[1].to_owned(), f[2].to_owned())).or_default();
        e.0 += f[4].parse::<i64>().unwrap();
        e.1 += f[5].parse::<i64>().unwrap();
        e.2 += f[6].parse::<i64>().unwrap();
    }
    assert_eq!(from_export, rollup_totals(&world.db));
    assert_eq!(from_export.values().map(|v| v.0).sum::<i64>(), 25);

    // The CLI writes the same bytes.
    let (code, stdout, stderr) = run(gatehouse().env("DATABASE_URL", &world.db.url).args([
        "export",
        "usage",
        "--tenant",
        world.tenant.as_str(),
        "--period",
        &period,
        "--format",
        "csv",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, csv_text);

    // NDJSON, and the grouped JSON view agree.
    let nd = app.get_with(&format!("/api/v1/tenants/{}/usage/export?period={period}&format=ndjson", world.tenant), &admin).await;
    let nd_requests: i64 =
        nd.text().await.unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["requests"].as_i64().unwrap()).sum();
    assert_eq!(nd_requests, 25);
    let grouped: Value =
        app.get_with(&format!("/api/v1/tenants/{}/usage?group_by=model", world.tenant), &admin).await.json().await.unwrap();
    assert_eq!(grouped["data"][0]["key"], MODEL);
    assert_eq!(grouped["data"][0]["requests"], 25);
}

#[actix_web::test]
async fn usage_and_limits_are_confined_to_the_tenant() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let other = seed::tenant(&app.db, "Other");
    let other_admin = seed::admin_token(&app.db, &other);
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    for path in
        [format!("/api/v1/tenants/{}/usage", world.tenant), format!("/api/v1/tenants/{}/usage/export?period={period}", world.tenant)]
    {
        assert_eq!(app.get_with(&path, &other_admin).await.status(), 404, "{path}");
    }
    assert_eq!(app.get_with(&format!("/api/v1/usage/export?period={period}"), &other_admin).await.status(), 403);
    let r = send_json(
        &app,
        reqwest::Method::PUT,
        &format!("/api/v1/tenants/{}/api-keys/{}/limits", world.tenant, world.key_id()),
        &other_admin,
        &json!({ "requests_per_minute": 1 }),
    )
    .await;
    assert_eq!(r.status(), 404);
    // Nor through its own tenant id: the key is not its.
    let r = send_json(
        &app,
        reqwest::Method::PUT,
        &format!("/api/v1/tenants/{}/api-keys/{}/limits", other, world.key_id()),
        &other_admin,
        &json!({ "requests_per_minute": 1 }),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
}

#[actix_web::test]
async fn graceful_shutdown_mid_load_keeps_every_completed_request() {
    let world = World::new();
    let mut app = TestApp::spawn_on(world.db.share(), |c| c.usage.flush_interval_ms = 5000).await;
    let client = app.client.clone();
    let url = app.url("/v1/chat/completions");
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = tokio::spawn({
        let key = world.key.clone();
        let progress = progress.clone();
        async move {
            let mut completed = 0u64;
            let mut tokens = 0u64;
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                let batch =
                    futures_util::future::join_all((0..8).map(|_| client.post(&url).bearer_auth(&key).json(&chat(8, false)).send())).await;
                let mut any = false;
                for r in batch.into_iter().flatten() {
                    if r.status() == 200 {
                        if let Ok(v) = r.json::<Value>().await {
                            completed += 1;
                            tokens += v["usage"]["total_tokens"].as_u64().unwrap();
                            any = true;
                            progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                if !any && completed > 0 {
                    break;
                }
            }
            (completed, tokens)
        }
    });
    // Stop mid-load: after a few rounds of the eight have completed.
    let under_way = eventually(Duration::from_secs(10), || async { progress.load(std::sync::atomic::Ordering::Relaxed) >= 16 }).await;
    assert!(under_way, "the load got going");
    app.stop().await.unwrap();
    let (completed, tokens) = load.await.unwrap();
    assert!(completed > 0);
    let totals = rollup_totals(&world.db);
    let (requests, prompt, completion) = totals.values().fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
    // Every completed request is in the database (requests cut off by the stop may add rows).
    assert!(requests as u64 >= completed, "{requests} rows for {completed} completed requests");
    assert!((prompt + completion) as u64 >= tokens);
}
