//! The database going away and coming back, with a private cluster the test can stop: readiness
//! and database-backed calls answer 503 while it is gone and recover without a restart; start-up
//! waits for a database that comes up late.

use std::time::Duration;

use actix_web::ResponseError;
use diesel::RunQueryDsl;
use gatehouse::db::DbError;
use gatehouse::dev::cluster::PrivateCluster;
use gatehouse::error::ApiError;

use crate::helpers::{TestApp, TestDb, eventually, init_test_logging, shared_tempdir, test_config};

/// A migrated database in a fresh private cluster. The TestDb value only carries the URL: the
/// cluster is thrown away with its folder.
fn private_cluster() -> (tempfile::TempDir, PrivateCluster, String) {
    let dir = shared_tempdir();
    let mut cluster = PrivateCluster::new(dir.path()).expect("PostgreSQL binaries are installed (ops/test.sh installs them)");
    cluster.ensure_initialized().unwrap();
    cluster.start().unwrap();
    cluster.create_database_if_missing("app").unwrap();
    let url = cluster.url("app");
    let mut conn = diesel::Connection::establish(&url).unwrap();
    gatehouse::db::migrations::run_pending(&mut conn).unwrap();
    (dir, cluster, url)
}

async fn select_one(app: &TestApp) -> Result<i32, DbError> {
    app.state.db.run(|conn| Ok(diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1")).get_result::<i32>(conn)?)).await
}

#[actix_web::test]
async fn readiness_follows_the_database_going_away_and_coming_back() {
    let (_dir, mut cluster, url) = private_cluster();
    let db = TestDb::external(url);
    let app = TestApp::spawn_on(db, |c| c.database.checkout_timeout_ms = 500).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(select_one(&app).await.unwrap(), 1);

    cluster.stop().unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "unreachable");
    assert_eq!(app.get("/healthz").await.status(), 200, "liveness does not depend on the database");
    let err = select_one(&app).await.unwrap_err();
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert_eq!(ApiError::from(err).status_code(), 503);

    cluster.start().unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async { app.get("/readyz").await.status() == 200 }).await,
        "readiness recovers without a restart"
    );
    assert_eq!(select_one(&app).await.unwrap(), 1);
}

#[actix_web::test]
async fn start_up_waits_for_a_database_that_comes_up_late() {
    init_test_logging();
    let (_dir, mut cluster, url) = private_cluster();
    cluster.stop().unwrap();
    // Late means after start-up has been turned away: a stand-in on the server's socket takes
    // start-up's first connection and drops it, and only then does the database start.
    let socket = cluster.socket_dir().join(format!(".s.PGSQL.{}", gatehouse::dev::cluster::PORT));
    let stand_in = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let starter = std::thread::spawn(move || {
        drop(stand_in.accept().expect("start-up tried the database"));
        drop(stand_in);
        std::fs::remove_file(&socket).unwrap();
        cluster.start().unwrap();
        cluster
    });
    let mut config = test_config(&url);
    config.database.startup_timeout_s = 60;
    let app = gatehouse::startup::Application::build(config).await.expect("start-up retried until the database came up");
    let _cluster = starter.join().unwrap();
    let port = app.port();
    let handle = app.handle();
    let server = actix_rt::spawn(app.run_until_stopped());
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    handle.stop(true).await;
    server.await.unwrap().unwrap();
}

/// Sends `signal` to the cluster's postmaster and every backend it started.
fn signal_cluster(cluster: &PrivateCluster, signal: &str) {
    let pid = std::fs::read_to_string(cluster.pgdata().join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_owned();
    std::process::Command::new("pkill").args([signal, "-P", &pid]).status().unwrap();
    assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
}

#[actix_web::test]
async fn readiness_answers_promptly_while_the_database_is_frozen() {
    let (_dir, cluster, url) = private_cluster();
    let app = TestApp::spawn_on(TestDb::external(url), |c| c.database.checkout_timeout_ms = 500).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    signal_cluster(&cluster, "-STOP");
    // A bound, not a measurement: a readiness probe that hangs fails here instead of answering.
    let probe = app.client.get(app.url("/readyz")).timeout(Duration::from_secs(5)).send().await;
    signal_cluster(&cluster, "-CONT");
    let r = probe.expect("readiness answers while the database is frozen");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_ne!(body["checks"]["database"], "ok", "{body}");

    assert!(
        eventually(Duration::from_secs(30), || async { app.get("/readyz").await.status() == 200 }).await,
        "readiness recovers when the database thaws"
    );
}
