//! The traffic alert rules end to end, each firing and resolving by mail (aiosmtpd): a saturated
//! queue, a worker error spike, and a burst of failed authentications.

use std::time::Duration;

use gatehouse::config::Config;
use gatehouse::service::Actor;
use gatehouse::service::workers::{AddWorkerRequest, CreatePoolRequest};
use gatehouse::simulator::llm::{Simulator, SimulatorConfig};
use serde_json::json;

use crate::helpers::{TEST_MASTER_KEY, TestApp, TestDb, seed};
use crate::smtp::SmtpSink;

const MODEL: &str = "Qwen/Qwen2.5-7B-Instruct";
const WAIT: Duration = Duration::from_secs(30);

/// A database with on-call, a tenant and its key, and one pool of one simulator worker.
fn world(sim: SimulatorConfig, slots: i32) -> (TestDb, String) {
    let sim = Simulator::start(sim).unwrap();
    let port = sim.port;
    actix_rt::spawn(sim.server);
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "chat:completions");
    let scope = gatehouse::service::alerts::RecipientScope::Oncall;
    gatehouse::service::alerts::add_recipient(&mut db.conn(), "oncall@example.com", &scope, &Actor::cli()).unwrap();
    let master = gatehouse::auth::seal::MasterKey::from_config(&gatehouse::config::Secret::new(TEST_MASTER_KEY)).unwrap();
    let mut conn = db.conn();
    let pool = CreatePoolRequest::new("qwen", gatehouse::domain::PoolKind::Llm, vec![MODEL.into()]);
    gatehouse::service::workers::create_pool(&mut conn, &pool, &Actor::cli()).unwrap();
    let worker = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(slots) };
    gatehouse::service::workers::add_worker(&mut conn, &master, "qwen", &worker, &Actor::cli()).unwrap();
    (db, key)
}

/// Fast rules over a two-second window; workers never count as down here.
fn rules(c: &mut Config, sink: &SmtpSink) {
    sink.configure(c);
    c.alerts.window_s = 2;
    c.alerts.worker_down_after_s = 3600;
    c.alerts.digest_after = 100;
}

async fn chat(app: &TestApp, key: &str) -> reqwest::StatusCode {
    let body = json!({ "model": MODEL, "max_tokens": 4, "messages": [{ "role": "user", "content": "hi" }] });
    app.client.post(app.url("/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap().status()
}

fn subjects(sink: &SmtpSink) -> Vec<String> {
    sink.mails().into_iter().map(|m| m.subject).collect()
}

#[actix_web::test]
async fn a_saturated_queue_alerts_and_resolves_once_the_load_is_gone() {
    let sink = SmtpSink::start();
    let mut sim = SimulatorConfig::llm("127.0.0.1:0");
    sim.ttft_ms = 300;
    let (db, key) = world(sim, 1);
    let app = TestApp::spawn_on(db.share(), |c| {
        rules(c, &sink);
        c.alerts.queue_wait_p95_ms = 100;
        c.alerts.saturated_for_s = 0;
    })
    .await;
    // Four requests on one slot: the later ones wait 300 to 900 ms for it.
    let answers = futures_util::future::join_all((0..4).map(|_| chat(&app, &key))).await;
    assert!(answers.iter().all(|s| s.is_success()), "{answers:?}");
    let mails = sink.wait_for(2, WAIT).await;
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert!(subjects.iter().any(|s| s.starts_with("[WARNING] pool qwen is saturated: p95 queue wait")), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.starts_with("[RESOLVED] pool qwen is saturated")), "the window passed without load: {subjects:?}");
}

#[actix_web::test]
async fn a_worker_error_spike_alerts_and_resolves() {
    let sink = SmtpSink::start();
    let mut sim = SimulatorConfig::llm("127.0.0.1:0");
    sim.error_rate = 1.0;
    let (db, key) = world(sim, 8);
    let app = TestApp::spawn_on(db.share(), |c| {
        rules(c, &sink);
        c.alerts.error_min_requests = 2;
        c.alerts.error_rate = 0.5;
        c.gateway.eject_after_failures = 100;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(chat(&app, &key).await, 502);
    }
    let mails = sink.wait_for(2, WAIT).await;
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert!(subjects.contains(&"[WARNING] pool qwen: 100% of requests fail at the worker"), "{subjects:?}");
    assert!(subjects.contains(&"[RESOLVED] pool qwen: 100% of requests fail at the worker"), "{subjects:?}");
}

#[actix_web::test]
async fn a_burst_of_failed_authentications_names_the_source() {
    let sink = SmtpSink::start();
    let (db, _key) = world(SimulatorConfig::llm("127.0.0.1:0"), 1);
    let app = TestApp::spawn_on(db.share(), |c| {
        rules(c, &sink);
        c.alerts.auth_failures = 5;
    })
    .await;
    for _ in 0..5 {
        assert_eq!(chat(&app, "gth_live_not_a_key").await, 401);
    }
    let mails = sink.wait_for(2, WAIT).await;
    let firing = mails
        .iter()
        .find(|m| m.subject == "[WARNING] 5 failed authentications from 127.0.0.1")
        .unwrap_or_else(|| panic!("{:?}", subjects(&sink)));
    assert!(firing.body.contains("credential stuffing"), "{}", firing.body);
    assert!(mails.iter().any(|m| m.subject.starts_with("[RESOLVED] ") && m.subject.contains("from 127.0.0.1")), "{:?}", subjects(&sink));
}
