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
