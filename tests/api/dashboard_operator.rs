//! Operator pages: tenants (search, create with validation, change plan, disable), plans, pools
//! and workers (drain, remove), signing keys (rotate), usage and audit across tenants.

use diesel::prelude::*;
use gatehouse::db::schema::{signing_keys, tenants, workers};
use gatehouse::service::Actor;
use gatehouse::service::workers::{AddWorkerRequest, CreatePoolRequest};

use crate::dashboard_support::operator_session;
use crate::helpers::{TEST_MASTER_KEY, TestApp, seed};

#[actix_rt::test]
async fn every_operator_page_renders() {
    let app = TestApp::spawn().await;
    let browser = operator_session(&app).await;
    for page in ["/admin/tenants", "/admin/plans", "/admin/pools", "/admin/signing-keys", "/admin/usage", "/admin/audit", "/admin/settings"]
    {
        let answer = browser.get(page).await;
        assert_eq!(answer.status, 200, "{page}: {}", answer.body);
        assert!(answer.body.contains("aria-current=\"page\""), "{page}");
    }
    assert!(browser.get("/admin/pools").await.body.contains("No worker pools"));
}

#[actix_rt::test]
async fn operators_search_create_replan_and_disable_tenants() {
    let app = TestApp::spawn().await;
    let browser = operator_session(&app).await;
    seed::tenant(&app.db, "Initech");
    let empty_name = browser.submit("/admin/tenants", "/admin/tenants", &[("name", " "), ("slug", "kept-slug")]).await;
    assert_eq!(empty_name.status, 422);
    assert!(empty_name.body.contains(r#"value="kept-slug""#));
    assert!(empty_name.body.contains(r#"<span class="error">"#));
    let created = browser.submit("/admin/tenants", "/admin/tenants", &[("name", "Globex"), ("plan", "default")]).await;
    assert_eq!(created.status, 303, "{}", created.body);
    let id: String = tenants::table.filter(tenants::slug.eq("globex")).select(tenants::id).first(&mut app.db.conn()).unwrap();
    assert_eq!(created.location(), format!("/admin/t/{id}"));
    let search = browser.get("/admin/tenants?q=glob").await;
    assert!(search.body.contains("Globex") && !search.body.contains("Initech"));
    assert!(browser.get("/admin/tenants?q=zzz").await.body.contains("No tenant matches"));

    let plan: gatehouse::service::plans::PlanSpec = serde_json::from_str(r#"{"name":"gold"}"#).unwrap();
    gatehouse::service::plans::create(&mut app.db.conn(), &plan, &Actor::cli()).unwrap();
    let replanned = browser.submit("/admin/tenants", &format!("/admin/tenants/{id}/plan"), &[("plan", "gold")]).await;
    assert_eq!(replanned.status, 303);
    assert!(browser.get("/admin/tenants").await.body.contains("is now on plan gold"));
    let bad_plan = browser.submit("/admin/tenants", &format!("/admin/tenants/{id}/plan"), &[("plan", "no-such-plan")]).await;
    assert_eq!(bad_plan.status, 303);

    let disabled = browser.submit("/admin/tenants", &format!("/admin/tenants/{id}/disable"), &[]).await;
    assert_eq!(disabled.status, 303);
    let status: String = tenants::table.find(&id).select(tenants::status).first(&mut app.db.conn()).unwrap();
    assert_eq!(status, "disabled");
    assert_eq!(browser.get("/admin/tenants/ten_0000000000000000000000/disable").await.status, 404);
}

#[actix_rt::test]
async fn operators_see_workers_and_drain_and_remove_them() {
    let app = TestApp::spawn().await;
    let master = gatehouse::auth::seal::MasterKey::from_config(&gatehouse::config::Secret::new(TEST_MASTER_KEY)).unwrap();
    let mut conn = app.db.conn();
    let pool = CreatePoolRequest::new("qwen", gatehouse::domain::PoolKind::Llm, vec!["qwen-small".into()]);
    gatehouse::service::workers::create_pool(&mut conn, &pool, &Actor::cli()).unwrap();
    let mut ids = Vec::new();
    for port in [9, 10] {
        let worker = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(2) };
        ids.push(gatehouse::service::workers::add_worker(&mut conn, &master, "qwen", &worker, &Actor::cli()).unwrap().id);
    }
    let browser = operator_session(&app).await;
    let pools = browser.get("/admin/pools").await;
    assert!(pools.body.contains("qwen") && pools.body.contains(&ids[0]) && pools.body.contains("In flight"));
    let drained = browser.submit("/admin/pools", &format!("/admin/workers/{}/drain", ids[0]), &[]).await;
    assert_eq!(drained.status, 303);
    let removed = browser.submit("/admin/pools", &format!("/admin/workers/{}/remove", ids[1]), &[]).await;
    assert_eq!(removed.status, 303);
    let states: Vec<(String, String)> = workers::table.select((workers::id, workers::state)).order(workers::id).load(&mut conn).unwrap();
    for (id, state) in states {
        let expected = if id == ids[0] { "draining" } else { "removed" };
        assert_eq!(state, expected, "{id}");
    }
}

#[actix_rt::test]
async fn operators_rotate_signing_keys_and_see_usage_and_audit_across_tenants() {
    let app = TestApp::spawn().await;
    let browser = operator_session(&app).await;
    let before: i64 = signing_keys::table.count().get_result(&mut app.db.conn()).unwrap();
    let keys = browser.get("/admin/signing-keys").await;
    assert!(keys.body.contains("active"));
    let rotated = browser.submit("/admin/signing-keys", "/admin/signing-keys/rotate", &[]).await;
    assert_eq!(rotated.status, 303);
    let after: i64 = signing_keys::table.count().get_result(&mut app.db.conn()).unwrap();
    assert!(after > before);
    assert!(browser.get("/admin/signing-keys").await.body.contains("Rotated: now signing with"));

    let one = seed::tenant(&app.db, "One");
    let two = seed::tenant(&app.db, "Two");
    seed::api_key(&app.db, &one, "models:read");
    seed::api_key(&app.db, &two, "models:read");
    let audit = browser.get("/admin/audit?action=api_key.").await;
    assert!(audit.body.contains(one.as_str()) && audit.body.contains(two.as_str()));
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let export = browser.get(&format!("/admin/usage/export?period={month}&format=csv")).await;
    assert_eq!(export.status, 200);
    assert!(export.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
}

#[actix_rt::test]
async fn plans_are_created_and_edited_with_the_apis_validation_messages() {
    let app = TestApp::spawn().await;
    let browser = operator_session(&app).await;
    let negative =
        browser.submit("/admin/plans", "/admin/plans", &[("name", "silver"), ("requests_per_minute", "-5"), ("queue_weight", "2")]).await;
    assert_eq!(negative.status, 422);
    assert!(negative.body.contains(r#"<span class="error">must be positive (got -5); omit it for unlimited</span>"#), "{}", negative.body);
    assert!(negative.body.contains(r#"value="silver""#) && negative.body.contains(r#"value="-5""#), "input kept");
    let not_a_number =
        browser.submit("/admin/plans", "/admin/plans", &[("name", "silver"), ("tokens_per_minute", "lots"), ("queue_weight", "1")]).await;
    assert_eq!(not_a_number.status, 422);
    assert!(not_a_number.body.contains("must be a whole number"));

    let created = browser
        .submit(
            "/admin/plans",
            "/admin/plans",
            &[
                ("name", "silver"),
                ("requests_per_minute", "600"),
                ("queue_weight", "2"),
                ("allowed_models", "*"),
                ("entitlements", "models:read"),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    assert!(browser.get("/admin/plans").await.body.contains("Plan “silver” saved."));
    let duplicate = browser
        .submit(
            "/admin/plans",
            "/admin/plans",
            &[("name", "silver"), ("queue_weight", "1"), ("allowed_models", "*"), ("entitlements", "models:read")],
        )
        .await;
    assert_eq!(duplicate.status, 409);
    assert!(duplicate.body.contains("already exists"));

    let edit = browser.get("/admin/plans/silver").await;
    assert_eq!(edit.status, 200);
    assert!(edit.body.contains(r#"value="600""#), "the form shows the plan's settings");
    let saved = browser
        .submit(
            "/admin/plans/silver",
            "/admin/plans/silver",
            &[
                ("name", "silver"),
                ("requests_per_minute", "1200"),
                ("queue_weight", "3"),
                ("allowed_models", "*"),
                ("entitlements", "models:read"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let plan = gatehouse::db::plans::find_by_name(&mut app.db.conn(), "silver").unwrap();
    assert_eq!((plan.requests_per_minute, plan.queue_weight), (Some(1200), 3));
    assert_eq!(browser.get("/admin/plans/no-such-plan").await.status, 404);
}

#[actix_rt::test]
async fn the_pools_page_shows_each_workers_health_in_flight_requests_and_vllm_load() {
    let (port, _simulator) = crate::gateway::simulator(|_| {});
    let (app, key) = crate::gateway::gateway(&[port], 5000, |_| {}).await;
    let browser = operator_session(&app).await;
    let before = browser.get("/admin/pools").await;
    assert!(before.body.contains("vLLM load"));
    // One health round (the loop's work, run now) reads the simulator's vLLM gauges.
    app.state.gateway.check_health(&app.state.upstream).await;
    let after = browser.get("/admin/pools").await;
    assert!(after.body.contains("<td>healthy</td>"), "{}", after.body);
    assert!(
        after.body.contains(r#"<td class="num">0</td><td class="num">0</td>"#),
        "nothing in flight, the worker reports no load: {}",
        after.body
    );
    assert_eq!(app.get_with("/v1/models", &key).await.status(), 200);
}
