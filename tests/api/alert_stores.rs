//! Alerts about the stores Gatehouse depends on and its upkeep: Redis failing (mailed at once,
//! resolved when it answers), PostgreSQL unreachable (mailed once it is back, since the outbox
//! lives there), and failed signing-key maintenance.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatehouse::config::{Config, RedisFailure, Secret};
use gatehouse::service::Actor;
use gatehouse::service::alerts::{RecipientScope, add_recipient};
use serde_json::json;

use crate::helpers::{TestApp, TestDb, eventually, shared_tempdir};
use crate::limits::{World, chat, post};
use crate::smtp::{SmtpSink, free_port};

const WAIT: Duration = Duration::from_secs(30);

fn mail_to(c: &mut Config, sink: &SmtpSink) {
    sink.configure(c);
    c.alerts.store_down_after_s = 0;
}

struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn redis_failing_alerts_and_resolves_when_it_answers() {
    let sink = SmtpSink::start();
    let world = World::new();
    world.plan(json!({ "requests_per_minute": 1000 }));
    add_recipient(&mut world.db.conn(), "oncall@example.com", &RecipientScope::Oncall, &Actor::cli()).unwrap();
    let port = free_port();
    let app = TestApp::spawn_on(world.db.share(), |c| {
        mail_to(c, &sink);
        c.redis.url = Secret::new(format!("redis://127.0.0.1:{port}"));
        c.redis.on_error = RedisFailure::Local;
    })
    .await;
    // Nothing listens: admissions fall back to local limits, and Redis counts as down.
    assert_eq!(post(&app, &world.key, &chat(4, false)).await.status(), 200);
    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(mails[0].subject, "[CRITICAL] Redis is unreachable: rate limits are not shared");

    let _redis = RedisServer(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (ops/test.sh installs it)"),
    );
    // Once a request's admission goes through Redis again, the alert resolves.
    let resolved = eventually(WAIT, || async {
        post(&app, &world.key, &chat(4, false)).await;
        sink.mails().iter().any(|m| m.subject == "[RESOLVED] Redis is unreachable: rate limits are not shared")
    })
    .await;
    assert!(resolved, "{:#?}", sink.mails());
}

#[actix_web::test]
async fn a_postgresql_outage_is_mailed_once_the_database_is_back() {
    let sink = SmtpSink::start();
    let dir = shared_tempdir();
    let mut cluster = gatehouse::dev::cluster::PrivateCluster::new(dir.path()).unwrap();
    cluster.ensure_initialized().unwrap();
    cluster.start().unwrap();
    cluster.create_database_if_missing("app").unwrap();
    let url = cluster.url("app");
    let mut conn: diesel::PgConnection = diesel::Connection::establish(&url).unwrap();
    gatehouse::db::migrations::run_pending(&mut conn).unwrap();
    let app = TestApp::spawn_on(TestDb::external(url), |c| {
        mail_to(c, &sink);
        c.database.checkout_timeout_ms = 300;
    })
    .await;
    // After start-up, which creates the audit partitions the recipient's audit event goes to.
    add_recipient(&mut conn, "oncall@example.com", &RecipientScope::Oncall, &Actor::cli()).unwrap();
    drop(conn);
    // Once the rules have something to evaluate, take the database away for a while.
    assert!(eventually(WAIT, || async { app.state.gateway.worker_health().is_some() }).await);
    cluster.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the outage the mail reports
    cluster.start().unwrap();
    let mails = sink.wait_for(1, WAIT).await;
    assert!(mails[0].subject.starts_with("[RESOLVED] PostgreSQL was unreachable for about"), "{mails:#?}");
}

#[actix_web::test]
async fn failed_signing_key_maintenance_alerts_on_call() {
    use diesel::RunQueryDsl;
    let sink = SmtpSink::start();
    let db = TestDb::new();
    add_recipient(&mut db.conn(), "oncall@example.com", &RecipientScope::Oncall, &Actor::cli()).unwrap();
    // Start-up's maintenance round cannot rotate keys without their table.
    diesel::sql_query("ALTER TABLE signing_keys RENAME TO signing_keys_gone").execute(&mut db.conn()).unwrap();
    let _app = TestApp::spawn_on(db.share(), |c| mail_to(c, &sink)).await;
    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(mails[0].subject, "[CRITICAL] signing-key rotation or partition maintenance failed");
    diesel::sql_query("ALTER TABLE signing_keys_gone RENAME TO signing_keys").execute(&mut db.conn()).unwrap();
}
