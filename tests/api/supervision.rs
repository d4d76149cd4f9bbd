//! Background work has an owner: a queue actor that dies is replaced and its pool serves the
//! next request, and the restart is counted and visible.

use std::time::Duration;

use diesel::RunQueryDsl;

use crate::helpers::{TestApp, eventually};
use crate::limits::{MODEL, World, chat, post};

#[actix_web::test]
async fn a_queue_actor_that_panics_is_replaced_and_its_pool_serves_the_next_request() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);

    let route = app.state.gateway.route(MODEL).unwrap();
    route.queue.crash();
    assert!(eventually(Duration::from_secs(10), || async { !route.queue.is_alive() }).await, "the queue actor died");

    let after = post(&app, &world.key, &chat(5, false)).await;
    assert_eq!(after.status(), 200, "{}", after.text().await.unwrap());
    assert!(app.state.gateway.route(MODEL).unwrap().queue.is_alive());
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("gatehouse_task_restarts_total{task=\"inference_queue\"}")), "restart counted");
}

#[actix_web::test]
async fn a_quota_accountant_that_panics_is_started_again_and_loses_nothing_recorded() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |c| c.usage.flush_interval_ms = 50).await;
    app.state.usage.crash();
    assert!(eventually(Duration::from_secs(10), || async { !app.state.usage.is_alive() }).await, "the accountant died");
    // Recorded while no actor runs: kept in the ledger for the next one.
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
    let written = || async {
        let sum = diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT coalesce(sum(requests), 0)::bigint FROM usage_rollups)");
        let requests: i64 = diesel::select(sum).get_result(&mut world.db.conn()).unwrap();
        requests == 1
    };
    assert!(eventually(Duration::from_secs(10), written).await, "the watchdog started a new accountant, which wrote the usage");
    assert!(app.state.usage.is_alive());
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("gatehouse_task_restarts_total{task=\"quota_accountant\"}")), "restart counted");
}
