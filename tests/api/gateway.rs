//! The OpenAI-compatible proxy end to end: real HTTP to simulator workers through the real
//! application, streaming relay, usage stripping, validation and the fault cases.

use std::time::Duration;

use gatehouse::service::Actor;
use gatehouse::service::workers::{AddWorkerRequest, CreatePoolRequest};
use gatehouse::simulator::llm::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

use crate::helpers::{TEST_MASTER_KEY, TestApp, TestDb, eventually, seed};

const MODEL: &str = "Qwen/Qwen2.5-7B-Instruct";

pub(crate) fn simulator(tweak: impl FnOnce(&mut SimulatorConfig)) -> (u16, actix_web::dev::ServerHandle) {
    let mut c = SimulatorConfig::llm("127.0.0.1:0");
    c.ttft_ms = 5;
    c.tpot_ms = 1;
    tweak(&mut c);
    let sim = Simulator::start(c).unwrap();
    let handle = sim.server.handle();
    actix_rt::spawn(sim.server);
    (sim.port, handle)
}

/// An app with one pool of the given simulator ports, and an API key with chat scope.
pub(crate) async fn gateway(ports: &[u16], deadline_ms: i32, tweak: impl FnOnce(&mut gatehouse::config::Config)) -> (TestApp, String) {
    gateway_with_queue(ports, deadline_ms, 256, None, tweak).await
}

/// `wait_target_ms`: the pool's adaptive-admission target (None: the default).
async fn gateway_with_queue(
    ports: &[u16],
    deadline_ms: i32,
    per_tenant: i32,
    wait_target_ms: Option<i32>,
    tweak: impl FnOnce(&mut gatehouse::config::Config),
) -> (TestApp, String) {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "chat:completions models:read");
    let master = gatehouse::auth::seal::MasterKey::from_config(&gatehouse::config::Secret::new(TEST_MASTER_KEY)).unwrap();
    let mut conn = db.conn();
    let req = CreatePoolRequest {
        queue_deadline_ms: Some(deadline_ms),
        queue_wait_target_ms: wait_target_ms,
        ..CreatePoolRequest::new("qwen", gatehouse::domain::PoolKind::Llm, vec![MODEL.into()])
    };
    gatehouse::service::workers::create_pool(&mut conn, &req, &Actor::cli()).unwrap();
    diesel::update(gatehouse::db::schema::worker_pools::table)
        .set(gatehouse::db::schema::worker_pools::max_queue_per_tenant.eq(per_tenant))
        .execute(&mut conn)
        .unwrap();
    for port in ports {
        let w = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(4) };
        gatehouse::service::workers::add_worker(&mut conn, &master, "qwen", &w, &Actor::cli()).unwrap();
    }
    (TestApp::spawn_on(db, tweak).await, key)
}

fn chat(stream: bool, include_usage: bool) -> Value {
    let mut b = json!({ "model": MODEL, "messages": [{ "role": "user", "content": "hello there" }], "max_tokens": 50, "stream": stream });
    if include_usage {
        b["stream_options"] = json!({ "include_usage": true });
    }
    b
}

async fn post(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/v1/chat/completions")).bearer_auth(key).json(body).send().await.unwrap()
}

fn data_events(body: &str) -> Vec<String> {
    body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_owned).collect()
}

#[actix_web::test]
async fn chat_completions_are_forwarded_with_usage() {
    let (port, _s) = simulator(|_| {});
    let (app, key) = gateway(&[port], 5000, |_| {}).await;
    let r = post(&app, &key, &chat(false, false)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].as_str().unwrap().starts_with("(simulated)"));
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let r = app
        .client
        .post(app.url("/v1/completions"))
        .bearer_auth(&key)
        .json(&json!({ "model": MODEL, "prompt": "Once", "max_tokens": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["usage"]["completion_tokens"], 3);
}

#[actix_web::test]
async fn streams_are_relayed_and_usage_appears_only_when_asked() {
    let (port, _s) = simulator(|_| {});
    let (app, key) = gateway(&[port], 5000, |_| {}).await;
    for asked in [false, true] {
        let r = post(&app, &key, &chat(true, asked)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let events = data_events(&r.text().await.unwrap());
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        let with_usage = chunks.iter().filter(|c| c.get("usage").is_some_and(Value::is_object)).count();
        if asked {
            assert_eq!(with_usage, 1, "the client asked for the usage chunk");
        } else {
            assert_eq!(with_usage, 0, "the usage chunk Gatehouse asked for is stripped");
            assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage fields at all");
        }
    }
}

#[actix_web::test]
async fn a_client_disconnect_cancels_the_upstream_request_and_frees_the_slot() {
    let (port, _s) = simulator(|c| {
        c.tpot_ms = 200;
        c.max_concurrent = 1;
    });
    let (app, key) = gateway(&[port], 5000, |_| {}).await;
    let mut body = chat(true, false);
    body["max_tokens"] = json!(60);
    let mut r = post(&app, &key, &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some(), "the first chunk arrives before the answer is complete");
    drop(r);
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let freed = eventually(Duration::from_secs(5), || async {
        reqwest::get(&metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("vllm:num_requests_running{model_name=\"Qwen/Qwen2.5-7B-Instruct\"} 0")
    })
    .await;
    assert!(freed, "the worker stopped generating for the departed client");
    let mut short = chat(false, false);
    short["max_tokens"] = json!(2);
    assert_eq!(post(&app, &key, &short).await.status(), 200, "the slot is free for the next request");
}

#[actix_web::test]
async fn a_client_that_leaves_a_quiet_stream_is_noticed_by_the_keep_alive_and_frees_the_slot() {
    // The first token comes at once, the next after a minute: the stream is quiet in between.
    let (port, _s) = simulator(|c| {
        c.tpot_ms = 60_000;
    });
    let (app, key) = gateway(&[port], 5000, |c| c.gateway.stream_heartbeat_ms = 100).await;
    let mut r = post(&app, &key, &chat(true, false)).await;
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    while !seen.contains(": keep-alive\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk()).await.expect("a chunk within 5 s").unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.starts_with("data: "), "the first event came before the comment: {seen}");
    let queue = app.state.gateway.route("Qwen/Qwen2.5-7B-Instruct").unwrap().queue.clone();
    assert_eq!(queue.status().await.workers[0].2, 1, "the stream holds its worker slot");
    drop(r);
    // Gatehouse's side: the relay is dropped and the slot returned within a few heartbeats (the
    // simulator, an actix-web server too, notices only at its next token, a minute away).
    let freed = eventually(Duration::from_secs(5), || async { queue.status().await.workers[0].2 == 0 }).await;
    assert!(freed, "the departed client was noticed while no token flowed: {:?}", queue.status().await.workers);
}

#[actix_web::test]
async fn plan_caps_on_max_tokens_and_prompt_size_apply() {
    let (port, _s) = simulator(|_| {});
    let (app, key) = gateway(&[port], 5000, |_| {}).await;
    diesel::update(gatehouse::db::schema::plans::table)
        .set((
            gatehouse::db::schema::plans::max_tokens_cap.eq(Some(100)),
            gatehouse::db::schema::plans::default_max_tokens.eq(Some(50)),
            gatehouse::db::schema::plans::max_prompt_chars.eq(Some(50)),
        ))
        .execute(&mut app.db.conn())
        .unwrap();
    // (No request ran yet, so no plan is cached; a change applies within the 5 s cache otherwise.)
    let mut body = chat(false, false);
    body["max_tokens"] = json!(101);
    let r = post(&app, &key, &body).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "max_tokens");
    let mut body = chat(false, false);
    body["messages"][0]["content"] = json!("x".repeat(51));
    assert_eq!(post(&app, &key, &body).await.status(), 422);
    let mut body = chat(false, false);
    body.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(post(&app, &key, &body).await.status(), 200, "absent max_tokens takes the plan default");
    // A small `max_completion_tokens` beside a large `max_tokens` does not pass the cap, on either
    // endpoint (legacy completions workers read only `max_tokens`).
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let body = json!({ "model": MODEL, "prompt": "Once", "messages": [{ "role": "user", "content": "hi" }],
                           "max_completion_tokens": 8, "max_tokens": 5000 });
        let r = app.client.post(app.url(path)).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "max_tokens", "{path}");
    }
}

#[actix_web::test]
async fn invalid_requests_are_refused_before_queueing() {
    let (port, _s) = simulator(|_| {});
    let (app, key) = gateway(&[port], 5000, |c| c.server.max_body_bytes = 4096).await;
    let send = |body: String| {
        app.client.post(app.url("/v1/chat/completions")).bearer_auth(&key).header("content-type", "application/json").body(body).send()
    };
    let r = send("{not json".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_json");
    let r = send(json!({ "model": "nope", "messages": [{ "role": "user", "content": "x" }] }).to_string()).await.unwrap();
    assert_eq!(r.status(), 404);
    let r = send(json!({ "model": MODEL }).to_string()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "messages");
    let r = send(json!({ "model": MODEL, "messages": [{ "role": "user", "content": "x".repeat(10_000) }] }).to_string()).await.unwrap();
    assert_eq!(r.status(), 413);
    let r = send(json!({ "model": MODEL, "messages": [{ "role": "user", "content": "x" }], "max_tokens": -1 }).to_string()).await.unwrap();
    assert_eq!(r.status(), 400);
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_simulator_requests_total 0"), "nothing invalid reached the worker: {metrics}");
}

#[actix_web::test]
async fn a_worker_dying_mid_stream_ends_the_stream_with_an_error_event() {
    let (port, _s) = simulator(|c| c.die_after_tokens = Some(3));
    let (app, key) = gateway(&[port], 5000, |_| {}).await;
    let r = post(&app, &key, &chat(true, false)).await;
    assert_eq!(r.status(), 200);
    let events = data_events(&r.text().await.unwrap());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
    // The request is metered (as an error) with what was seen.
    app.state.usage.flush().await;
    use gatehouse::db::schema::usage_rollups as u;
    let (requests, errors): (i64, i64) = u::table.select((u::requests, u::errors)).first(&mut app.db.conn()).unwrap();
    assert_eq!((requests, errors), (1, 1));
}

#[actix_web::test]
async fn all_workers_down_answers_503_then_traffic_recovers() {
    // A port nothing listens on: connect errors, then the breaker ejects the worker.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Health checks every 100 ms: the recovery below waits for one to find the worker back.
    let (app, key) = gateway(&[dead], 300, |c| c.gateway.refresh_interval_ms = 100).await;
    let r = post(&app, &key, &chat(false, false)).await;
    assert!(r.status() == 502 || r.status() == 503, "{}", r.status());
    let recovered = {
        let listener_port = dead;
        let mut c = SimulatorConfig::llm(&format!("127.0.0.1:{listener_port}"));
        c.ttft_ms = 5;
        let sim = Simulator::start(c).unwrap();
        actix_rt::spawn(sim.server);
        eventually(Duration::from_secs(20), || async { post(&app, &key, &chat(false, false)).await.status() == 200 }).await
    };
    assert!(recovered, "traffic recovers when the worker returns, without a restart");
}

#[actix_web::test]
async fn a_full_queue_answers_429_queue_full() {
    let (port, _s) = simulator(|c| {
        c.ttft_ms = 1500;
        c.max_concurrent = 64;
    });
    // 4 slots and room for 1 waiting request per tenant: of 6 concurrent requests one is refused.
    let (app, key) = gateway_with_queue(&[port], 10_000, 1, None, |_| {}).await;
    let mut inflight = Vec::new();
    for _ in 0..6 {
        let (client, url, key) = (app.client.clone(), app.url("/v1/chat/completions"), key.clone());
        inflight.push(actix_rt::spawn(async move {
            let r = client.post(url).bearer_auth(key).json(&chat(false, false)).send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            let code = r.json::<Value>().await.ok().and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            (status, retry, code)
        }));
    }
    let results: Vec<(u16, bool, Option<String>)> =
        futures_util::future::join_all(inflight).await.into_iter().map(Result::unwrap).collect();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(refused.len(), 1, "{results:?}");
    assert!(refused[0].1, "429 carries Retry-After");
    assert_eq!(refused[0].2.as_deref(), Some("queue_full"));
    assert_eq!(results.iter().filter(|r| r.0 == 200).count(), 5);
}

#[actix_web::test]
async fn a_saturated_pool_refuses_a_flooding_tenant_at_once_and_still_queues_another() {
    let (port, _s) = simulator(|c| {
        c.ttft_ms = 1500;
        c.max_concurrent = 64;
    });
    // 4 slots, a 100 ms target: 10 requests fill the slots and leave 6 waiting past the target.
    let (app, key) = gateway_with_queue(&[port], 30_000, 256, Some(100), |_| {}).await;
    let send = |key: String| {
        let (client, url) = (app.client.clone(), app.url("/v1/chat/completions"));
        actix_rt::spawn(async move {
            let r = client.post(url).bearer_auth(key).json(&chat(false, false)).send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let code = r.json::<Value>().await.ok().and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            (status, retry, code)
        })
    };
    let first: Vec<_> = (0..10).map(|_| send(key.clone())).collect();
    let saturated = eventually(Duration::from_secs(10), || async {
        let queue = app.state.gateway.route(MODEL).unwrap().queue.status().await;
        queue.adaptive.saturated && !queue.adaptive.limits.is_empty()
    })
    .await;
    assert!(saturated, "the pool is saturated and the tenant held back");
    let (status, retry, code) = send(key.clone()).await.unwrap();
    assert_eq!((status, code.as_deref()), (429, Some("pool_saturated")), "refused at once, not after the deadline");
    assert_eq!(retry.as_deref(), Some("1"));
    // Another tenant, under its share, still queues and is served.
    let tenant = seed::tenant(&app.db, "Other");
    let other = send(seed::api_key(&app.db, &tenant, "chat:completions"));
    let results = futures_util::future::join_all(first).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap().0 == 200), "the requests admitted before are served: {results:?}");
    assert_eq!(other.await.unwrap().0, 200);
}

use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};

#[actix_web::test]
async fn metrics_describe_queues_workers_latency_and_tokens() {
    let (port, _s) = simulator(|_| {});
    let (app, key) = gateway(&[port], 5000, |_| {}).await;
    assert_eq!(post(&app, &key, &chat(false, false)).await.status(), 200);
    assert_eq!(post(&app, &key, &chat(true, false)).await.status(), 200);
    let ok = eventually(Duration::from_secs(10), || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        [
            "gatehouse_queue_wait_seconds_bucket",
            "gatehouse_request_duration_seconds_bucket",
            "gatehouse_time_to_first_token_seconds",
            "gatehouse_tokens_total",
            "gatehouse_worker_up",
        ]
        .iter()
        .all(|m| text.contains(m))
    })
    .await;
    assert!(ok, "{}", app.get("/metrics").await.text().await.unwrap());
    let r = app.get("/metrics").await;
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
}

#[actix_web::test]
async fn usage_is_rolled_up_per_minute_and_flushed_on_graceful_shutdown() {
    use gatehouse::db::schema::usage_rollups as u;
    let (port, _s) = simulator(|_| {});
    let (mut app, key) = gateway(&[port], 5000, |_| {}).await;
    let mut completion_tokens = 0;
    for _ in 0..3 {
        let body: Value = post(&app, &key, &chat(false, false)).await.json().await.unwrap();
        completion_tokens += body["usage"]["completion_tokens"].as_i64().unwrap();
    }
    let r = post(&app, &key, &chat(true, true)).await;
    let events = data_events(&r.text().await.unwrap());
    let usage: Value = events.iter().filter_map(|e| serde_json::from_str::<Value>(e).ok()).find(|c| c["usage"].is_object()).unwrap();
    completion_tokens += usage["usage"]["completion_tokens"].as_i64().unwrap();
    // Shut down gracefully right away: pending usage is written, not lost.
    app.stop().await.unwrap();
    let rows: Vec<(String, i64, i64, i64)> =
        u::table.select((u::model, u::requests, u::prompt_tokens, u::completion_tokens)).load(&mut app.db.conn()).unwrap();
    let requests: i64 = rows.iter().map(|r| r.1).sum();
    let completion: i64 = rows.iter().map(|r| r.3).sum();
    assert_eq!(requests, 4, "{rows:?}");
    assert_eq!(completion, completion_tokens, "to the token");
    assert!(rows.iter().all(|r| r.0 == MODEL && r.2 > 0));
}

async fn simulator_requests(port: u16) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("gatehouse_simulator_requests_total ")).unwrap().trim().parse().unwrap()
}

#[actix_web::test]
async fn the_worker_whose_vllm_metrics_report_less_load_gets_the_requests() {
    // Worker A is busy with requests from outside this gateway; its vLLM gauges say so.
    let (busy, _a) = simulator(|c| c.tpot_ms = 1_000);
    let (idle, _b) = simulator(|_| {});
    let (app, key) = gateway(&[busy, idle], 5000, |_| {}).await;
    let outside = reqwest::Client::new();
    let mut held = Vec::new();
    for _ in 0..6 {
        let req = outside.post(format!("http://127.0.0.1:{busy}/v1/chat/completions")).json(&chat(false, false)).send();
        held.push(actix_rt::spawn(req));
    }
    // Once the busy worker's gauges show the six, one health round (the loop's work, run now
    // rather than at its next tick) reads them.
    let busy_metrics = format!("http://127.0.0.1:{busy}/metrics");
    let loaded = eventually(Duration::from_secs(10), || async {
        let text = reqwest::get(&busy_metrics).await.unwrap().text().await.unwrap();
        gatehouse::workers::gateway::parse_vllm_load(&text) == Some(6)
    })
    .await;
    assert!(loaded, "the outside requests reached the busy worker");
    app.state.gateway.check_health(&app.state.upstream).await;
    for _ in 0..8 {
        assert_eq!(post(&app, &key, &chat(false, false)).await.status(), 200);
    }
    assert_eq!(simulator_requests(idle).await, 8, "every request went to the worker that reported no load");
    assert_eq!(simulator_requests(busy).await, 6, "only the outside requests reached the busy worker");
    held.into_iter().for_each(|h| h.abort());
}
