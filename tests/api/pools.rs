//! Worker pools and workers: registered by operators (API and CLI), visible to tenants as models.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, gatehouse, run, seed};

#[actix_web::test]
async fn operators_register_pools_and_workers_and_tenants_see_the_models() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "models:read");
    let admin = seed::admin_token(&db, &tenant);
    let op = seed::operator_token(&db);
    let app = TestApp::spawn_on(db, |_| {}).await;
    let post = |token: &str, path: &str, body: Value| app.client.post(app.url(path)).bearer_auth(token.to_owned()).json(&body).send();

    let r = post(&admin, "/api/v1/pools", json!({ "name": "qwen", "kind": "llm", "models": ["Qwen/Qwen2.5-7B-Instruct"] })).await.unwrap();
    assert_eq!(r.status(), 403, "tenant admins cannot register pools");
    let r = post(&op, "/api/v1/pools", json!({ "name": "qwen", "kind": "llm", "models": ["Qwen/Qwen2.5-7B-Instruct"] })).await.unwrap();
    assert_eq!(r.status(), 201);
    let r = post(&op, "/api/v1/pools", json!({ "name": "qwen", "kind": "llm", "models": ["x"] })).await.unwrap();
    assert_eq!(r.status(), 409);
    let r = post(&op, "/api/v1/pools", json!({ "name": "Bad Name", "kind": "llm", "models": ["x"] })).await.unwrap();
    assert_eq!(r.status(), 422);
    let r = post(&op, "/api/v1/pools/qwen/workers", json!({ "base_url": "ftp://nope" })).await.unwrap();
    assert_eq!(r.status(), 422);
    let r =
        post(&op, "/api/v1/pools/qwen/workers", json!({ "base_url": "http://127.0.0.1:9100/", "api_key": "upstream-secret", "slots": 4 }))
            .await
            .unwrap();
    assert_eq!(r.status(), 201);
    let worker: Value = r.json().await.unwrap();
    assert_eq!(worker["base_url"], "http://127.0.0.1:9100");
    assert_eq!(worker["has_api_key"], true);
    assert!(!worker.to_string().contains("upstream-secret"));

    let models: Value = app.get_with("/v1/models", &key).await.json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(models["data"][0]["object"], "model");

    let id = worker["id"].as_str().unwrap();
    let r = app.client.post(app.url(&format!("/api/v1/workers/{id}/drain"))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "draining");
    let r = app.client.delete(app.url(&format!("/api/v1/workers/{id}"))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "removed");
    let pools: Value = app.client.get(app.url("/api/v1/pools")).bearer_auth(&op).send().await.unwrap().json().await.unwrap();
    assert_eq!(pools[0]["workers"], json!([]), "removed workers are not listed");
}

#[test]
fn the_cli_mirrors_pool_and_worker_management() {
    let db = TestDb::new();
    let cli = |args: &[&str]| run(gatehouse().args(args).env("DATABASE_URL", &db.url).env("WORKER_KEY", "k"));
    let (code, out, err) = cli(&["pool", "add", "--name", "demo", "--model", "Qwen/Qwen2.5-7B-Instruct", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["name"], "demo");
    let (code, out, err) =
        cli(&["worker", "add", "--pool", "demo", "--url", "http://127.0.0.1:9101", "--api-key-env", "WORKER_KEY", "--json"]);
    assert_eq!(code, 0, "{err}");
    let worker: Value = serde_json::from_str(&out).unwrap();
    let id = worker["id"].as_str().unwrap();
    let (code, out, _) = cli(&["worker", "drain", id, "--json"]);
    assert_eq!((code, serde_json::from_str::<Value>(&out).unwrap()["state"].clone()), (0, json!("draining")));
    let (code, out, _) = cli(&["pool", "list", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()[0]["workers"][0]["id"], id);
    assert_eq!(cli(&["worker", "add", "--pool", "nope", "--url", "http://x:1", "--json"]).0, 1);
    assert_eq!(cli(&["worker", "remove", "wkr_short"]).0, 1);
    assert_eq!(cli(&["pool", "add", "--name", "x", "--kind", "tpu", "--model", "m"]).0, 2);
}

fn declared(url: &str, slots: i32) -> gatehouse::config::PoolDeclaration {
    gatehouse::config::PoolDeclaration {
        name: "declared".into(),
        kind: gatehouse::domain::PoolKind::Llm,
        models: vec!["Qwen/Qwen2.5-7B-Instruct".into()],
        queue_deadline_ms: Some(5_000),
        queue_wait_target_ms: None,
        batch_max_items: None,
        batch_max_audio_ms: None,
        batch_max_wait_ms: None,
        workers: vec![gatehouse::config::WorkerDeclaration { url: url.into(), slots: Some(slots), api_key_env: None }],
    }
}

#[actix_web::test]
async fn pools_declared_in_the_config_file_are_applied_at_start_and_owned_by_the_file() {
    let (port, _sim) = {
        let sim = gatehouse::simulator::llm::Simulator::start(gatehouse::simulator::llm::SimulatorConfig::llm("127.0.0.1:0")).unwrap();
        let handle = sim.server.handle();
        actix_rt::spawn(sim.server);
        (sim.port, handle)
    };
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "chat:completions");
    let op = seed::operator_token(&db);
    let url = format!("http://127.0.0.1:{port}");
    let decl = declared(&url, 4);
    let mut app = TestApp::spawn_on(db, move |c| c.pools = vec![decl]).await;

    // Served at once, with no API call.
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({ "model": "Qwen/Qwen2.5-7B-Instruct", "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pools: Value = app.client.get(app.url("/api/v1/pools")).bearer_auth(&op).send().await.unwrap().json().await.unwrap();
    assert_eq!(pools[0]["name"], "declared");
    assert_eq!(pools[0]["workers"][0]["slots"], 4);
    let worker_id = pools[0]["workers"][0]["id"].as_str().unwrap().to_owned();

    // The file owns its workers: the API refuses to add or remove them, draining is allowed.
    let r = app
        .client
        .post(app.url("/api/v1/pools/declared/workers"))
        .bearer_auth(&op)
        .json(&json!({ "base_url": "http://127.0.0.1:1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app.client.delete(app.url(&format!("/api/v1/workers/{worker_id}"))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 409);

    // A changed file applies at the next start: new slots, a second worker; the same worker id.
    app.stop().await.unwrap();
    let (decl, second) = (declared(&url, 8), format!("http://127.0.0.1:{}", port + 1));
    let mut two = decl.clone();
    two.workers.push(gatehouse::config::WorkerDeclaration { url: second.clone(), slots: None, api_key_env: None });
    let mut app = TestApp::spawn_on(app.db.share(), move |c| c.pools = vec![two]).await;
    let pools: Value = app.client.get(app.url("/api/v1/pools")).bearer_auth(&op).send().await.unwrap().json().await.unwrap();
    let workers = pools[0]["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers[0]["id"], worker_id.as_str());
    assert_eq!(workers[0]["slots"], 8);
    assert_eq!(workers[1]["base_url"], second.as_str());

    // A worker the file no longer lists is removed; a pool it no longer declares is deleted.
    app.stop().await.unwrap();
    let app2 = TestApp::spawn_on(app.db.share(), move |c| c.pools = vec![decl]).await;
    let pools: Value = app2.client.get(app2.url("/api/v1/pools")).bearer_auth(&op).send().await.unwrap().json().await.unwrap();
    assert_eq!(pools[0]["workers"].as_array().unwrap().len(), 1);
    let mut app2 = app2;
    app2.stop().await.unwrap();
    let app3 = TestApp::spawn_on(app2.db.share(), |_| {}).await;
    let pools: Value = app3.client.get(app3.url("/api/v1/pools")).bearer_auth(&op).send().await.unwrap().json().await.unwrap();
    assert_eq!(pools, json!([]));
}

#[actix_web::test]
async fn a_declaration_that_cannot_apply_stops_the_start() {
    let db = TestDb::new();
    let mut bad = declared("http://127.0.0.1:9", 4);
    bad.workers[0].api_key_env = Some("GATEHOUSE_TEST_UNSET_WORKER_KEY".into());
    let mut config = crate::helpers::test_config(&db.url);
    config.pools = vec![bad];
    let err = gatehouse::startup::Application::build(config).await.err().expect("start-up refused");
    assert!(err.to_string().contains("GATEHOUSE_TEST_UNSET_WORKER_KEY"), "{err}");
}
