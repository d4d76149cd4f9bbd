//! Alerts by email against a real SMTP server (aiosmtpd, see `smtp.rs`): a dead worker mails
//! on-call and resolves when it returns; SMTP down then up delivers every alert once; two
//! instances mail each alert once; a tenant's recipient never gets another tenant's alert; a
//! burst arrives as a digest; STARTTLS with a private CA; the CLI and the API manage recipients.

use std::time::Duration;

use gatehouse::config::Config;
use gatehouse::db::alerts::{self, NewAlert};
use gatehouse::domain::{Severity, TenantId};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, eventually, gatehouse, run, seed};
use crate::smtp::{SmtpSink, free_port, mail_to};

const WAIT: Duration = Duration::from_secs(20);

/// Fast alert timings against `smtp_url`.
fn fast(c: &mut Config, smtp_url: &str) {
    mail_to(c, smtp_url);
    c.alerts.worker_down_after_s = 1;
    c.gateway.health_timeout_ms = 200;
    c.gateway.eject_after_failures = 1;
    c.gateway.eject_for_ms = 60_000;
}

fn add_recipient(db: &TestDb, email: &str, tenant: Option<&TenantId>) {
    let scope = match tenant {
        Some(t) => gatehouse::service::alerts::RecipientScope::Tenant(t.clone()),
        None => gatehouse::service::alerts::RecipientScope::Oncall,
    };
    gatehouse::service::alerts::add_recipient(&mut db.conn(), email, &scope, &gatehouse::service::Actor::cli()).unwrap();
}

/// A quota alert row, as the quota accountant writes them.
fn quota_alert(db: &TestDb, tenant: &TenantId, n: usize) {
    let payload = json!({ "tenant_id": tenant, "period": "monthly", "metric": "tokens", "used": 100 + n, "limit": 100, "percent": 100 });
    let key = format!("quota:{tenant}:test:{n}");
    let alert = NewAlert { tenant: Some(tenant), kind: "quota_threshold", dedup_key: &key, severity: Severity::Warning, payload: &payload };
    assert!(alerts::enqueue(&mut db.conn(), &alert).unwrap());
}

fn platform_alert(db: &TestDb, n: usize) {
    let payload = json!({ "state": "firing", "summary": format!("platform event {n}"), "hint": "look" });
    let key = format!("platform:test:{n}");
    let alert = NewAlert { tenant: None, kind: "worker_down", dedup_key: &key, severity: Severity::Warning, payload: &payload };
    assert!(alerts::enqueue(&mut db.conn(), &alert).unwrap());
}

fn unsent(db: &TestDb) -> i64 {
    alerts::pending_count(&mut db.conn()).unwrap()
}

#[actix_web::test]
async fn a_dead_worker_mails_on_call_and_a_resolved_mail_follows_when_it_returns() {
    let sink = SmtpSink::start();
    let db = TestDb::new();
    let _app = TestApp::spawn_on(db.share(), |c| fast(c, &sink.url())).await;
    // Recipients and the dead worker through the CLI, as an operator would.
    let (code, out, err) = run(gatehouse().env("DATABASE_URL", &db.url).args([
        "alerts",
        "recipient",
        "add",
        "--oncall",
        "--email",
        "oncall@example.com",
        "--json",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["tenant_id"], Value::Null);
    let port = free_port();
    let cli = |args: &[&str]| run(gatehouse().env("DATABASE_URL", &db.url).args(args));
    assert_eq!(cli(&["pool", "add", "--name", "qwen", "--model", "Qwen/Qwen2.5-7B-Instruct"]).0, 0);
    let (code, _, err) = cli(&["worker", "add", "--pool", "qwen", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(code, 0, "{err}");

    let mails = sink.wait_for(2, WAIT).await;
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert!(subjects.iter().any(|s| s.starts_with("[WARNING] worker wkr_") && s.ends_with("in pool qwen is down")), "{subjects:?}");
    assert!(subjects.contains(&"[CRITICAL] pool qwen has no healthy worker"), "{subjects:?}");
    assert!(mails.iter().all(|m| m.to.contains("oncall@example.com")));
    assert!(mails[0].body.contains("What to check first"), "{}", mails[0].body);

    // The worker comes back: one resolved mail per condition, and nothing fires twice.
    let mut c = gatehouse::simulator::llm::SimulatorConfig::llm(&format!("127.0.0.1:{port}"));
    c.ttft_ms = 0;
    let sim = gatehouse::simulator::llm::Simulator::start(c).unwrap();
    actix_rt::spawn(sim.server);
    let mails = sink.wait_for(4, WAIT).await;
    let resolved: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).filter(|s| s.starts_with("[RESOLVED]")).collect();
    assert_eq!(resolved.len(), 2, "{mails:#?}");
    assert_eq!(mails.len(), 4, "no repeats within the repeat interval: {mails:#?}");
}

#[actix_web::test]
async fn smtp_down_then_up_delivers_every_alert_exactly_once() {
    let port = free_port();
    let db = TestDb::new();
    add_recipient(&db, "oncall@example.com", None);
    let app = TestApp::spawn_on(db.share(), |c| fast(c, &format!("smtp://127.0.0.1:{port}"))).await;
    for n in 0..5 {
        platform_alert(&db, n);
    }
    // Nothing listens: attempts are made and the rows wait.
    let tried = eventually(WAIT, || async {
        use diesel::prelude::*;
        use gatehouse::db::schema::alert_outbox::dsl::*;
        alert_outbox.filter(attempts.ge(2)).count().get_result::<i64>(&mut db.conn()).unwrap() == 5
    })
    .await;
    assert!(tried, "every alert was tried while SMTP was down");
    assert_eq!(unsent(&db), 5);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("gatehouse_alerts_pending")), "pending gauge exported");

    let sink = SmtpSink::start_on(port, &[]);
    let mails = sink.wait_for(5, WAIT).await;
    assert!(eventually(WAIT, || async { unsent(&db) == 0 }).await);
    assert_eq!(mails.len(), 5, "{mails:#?}");
    let mut subjects: Vec<_> = mails.iter().map(|m| m.subject.clone()).collect();
    subjects.dedup();
    assert_eq!(subjects.len(), 5, "none twice: {subjects:?}");
}

#[actix_web::test]
async fn two_instances_on_one_database_mail_each_alert_once() {
    let sink = SmtpSink::start();
    let db = TestDb::new();
    add_recipient(&db, "oncall@example.com", None);
    // No digest here: each alert is its own mail, so a duplicate would show.
    let each = |c: &mut Config| {
        fast(c, &sink.url());
        c.alerts.digest_after = 1000;
    };
    let _a = TestApp::spawn_on(db.share(), each).await;
    let _b = TestApp::spawn_on(db.share(), each).await;
    for n in 0..20 {
        platform_alert(&db, n);
    }
    assert!(eventually(WAIT, || async { unsent(&db) == 0 }).await, "all delivered");
    let mails = sink.mails();
    assert_eq!(mails.len(), 20, "each alert exactly once, by one of the two instances: {} mails", mails.len());
    let mut subjects: Vec<_> = mails.iter().map(|m| m.subject.clone()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 20, "none twice");
}

#[actix_web::test]
async fn a_tenant_recipient_never_receives_another_tenants_alert() {
    let sink = SmtpSink::start();
    let db = TestDb::new();
    let (acme, globex) = (seed::tenant(&db, "Acme"), seed::tenant(&db, "Globex"));
    add_recipient(&db, "ops@acme.example", Some(&acme));
    add_recipient(&db, "ops@globex.example", Some(&globex));
    add_recipient(&db, "oncall@example.com", None);
    let _app = TestApp::spawn_on(db.share(), |c| fast(c, &sink.url())).await;
    quota_alert(&db, &acme, 1);
    quota_alert(&db, &globex, 2);
    platform_alert(&db, 3);
    let mails = sink.wait_for(3, WAIT).await;
    assert!(eventually(WAIT, || async { unsent(&db) == 0 }).await);
    let to = |who: &str| mails.iter().filter(|m| m.to.contains(who)).map(|m| m.subject.clone()).collect::<Vec<_>>();
    assert_eq!(to("ops@acme.example"), vec![format!("[WARNING] tenant {acme} reached 100% of its monthly tokens quota")]);
    assert_eq!(to("ops@globex.example"), vec![format!("[WARNING] tenant {globex} reached 100% of its monthly tokens quota")]);
    assert_eq!(to("oncall@example.com"), vec!["[WARNING] platform event 3".to_owned()], "platform alerts go to on-call only");
    assert_eq!(mails.len(), 3);
}

#[actix_web::test]
async fn a_burst_to_one_recipient_arrives_as_one_digest() {
    let sink = SmtpSink::start();
    let db = TestDb::new();
    add_recipient(&db, "oncall@example.com", None);
    for n in 0..8 {
        platform_alert(&db, n);
    }
    let _app = TestApp::spawn_on(db.share(), |c| {
        fast(c, &sink.url());
        c.alerts.digest_after = 3;
    })
    .await;
    assert!(eventually(WAIT, || async { unsent(&db) == 0 }).await);
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].subject, "[DIGEST] 8 Gatehouse alerts");
    assert!((0..8).all(|n| mails[0].body.contains(&format!("platform event {n}"))), "{}", mails[0].body);
}

#[actix_web::test]
async fn starttls_with_a_private_ca_and_the_test_command() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let port = free_port();
    let sink = SmtpSink::start_on(port, &["--tlscert", cert_path.to_str().unwrap(), "--tlskey", key_path.to_str().unwrap()]);
    let db = TestDb::new();
    let (code, out, err) = run(gatehouse()
        .env("DATABASE_URL", &db.url)
        .env("GATEHOUSE__ALERTS__SMTP_URL", format!("smtp://localhost:{port}?tls=required"))
        .env("GATEHOUSE__ALERTS__CA_FILE", &cert_path)
        .env("GATEHOUSE__ALERTS__FROM", "Gatehouse <alerts@example.com>")
        .args(["alerts", "test", "--to", "me@example.com", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["sent"], true);
    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(mails[0].subject, "[TEST] test mail from Gatehouse");

    // Without the CA the server's certificate is refused, and nothing is sent.
    let (code, _, err) = run(gatehouse()
        .env("DATABASE_URL", &db.url)
        .env("GATEHOUSE__ALERTS__SMTP_URL", format!("smtp://localhost:{port}?tls=required"))
        .args(["alerts", "test", "--to", "me@example.com"]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(sink.mails().len(), 1);
}

#[actix_web::test]
async fn recipients_through_the_api_are_confined_to_the_admins_tenant() {
    let db = TestDb::new();
    let (acme, globex) = (seed::tenant(&db, "Acme"), seed::tenant(&db, "Globex"));
    let operator = seed::operator_token(&db);
    let admin = seed::admin_token(&db, &acme);
    let app = TestApp::spawn_on(db.share(), |_| {}).await;
    let post = |token: &str, body: Value| app.client.post(app.url("/api/v1/alerts/recipients")).bearer_auth(token).json(&body).send();
    // An admin adds its own tenant's recipient (tenant_id implied) and cannot name another tenant.
    let mine = post(&admin, json!({ "email": "ops@acme.example" })).await.unwrap();
    assert_eq!(mine.status(), 201);
    assert_eq!(mine.json::<Value>().await.unwrap()["tenant_id"], acme.to_string());
    assert_eq!(post(&admin, json!({ "email": "x@acme.example", "tenant_id": globex })).await.unwrap().status(), 404);
    assert_eq!(post(&admin, json!({ "email": "not an address" })).await.unwrap().status(), 422);
    // The operator adds on-call and another tenant's recipient; the admin sees only its own.
    assert_eq!(post(&operator, json!({ "email": "oncall@example.com" })).await.unwrap().status(), 201);
    let theirs = post(&operator, json!({ "email": "ops@globex.example", "tenant_id": globex })).await.unwrap();
    let theirs_id = theirs.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let seen: Vec<Value> = app.get_with("/api/v1/alerts/recipients", &admin).await.json().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["email"], "ops@acme.example");
    let all: Vec<Value> = app.get_with("/api/v1/alerts/recipients", &operator).await.json().await.unwrap();
    assert_eq!(all.len(), 3);
    // Another tenant's recipient cannot be removed by this admin; the operator can.
    let delete = |token: &str, id: &str| app.client.delete(app.url(&format!("/api/v1/alerts/recipients/{id}"))).bearer_auth(token).send();
    assert_eq!(delete(&admin, &theirs_id).await.unwrap().status(), 404);
    assert_eq!(delete(&operator, &theirs_id).await.unwrap().status(), 204);
    // Alerts: the admin lists only its tenant's.
    quota_alert(&db, &acme, 1);
    quota_alert(&db, &globex, 2);
    let listed: Vec<Value> = app.get_with("/api/v1/alerts", &admin).await.json().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["tenant_id"], acme.to_string());
    let body: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["checks"]["mail"], "off (alerts.smtp_url is not set)");
}

#[actix_web::test]
async fn a_silenced_rule_is_recorded_and_not_mailed() {
    let sink = SmtpSink::start();
    let db = TestDb::new();
    add_recipient(&db, "oncall@example.com", None);
    let acme = seed::tenant(&db, "Acme");
    let admin = seed::admin_token(&db, &acme);
    let (code, out, err) = run(gatehouse().env("DATABASE_URL", &db.url).args([
        "alerts",
        "silence",
        "--rule",
        "worker_down",
        "--for",
        "2h",
        "--reason",
        "maintenance",
        "--json",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().starts_with("sil_"));
    let app = TestApp::spawn_on(db.share(), |c| fast(c, &sink.url())).await;
    platform_alert(&db, 1); // kind worker_down: silenced
    let payload = json!({ "state": "firing", "summary": "pool qwen has no healthy worker", "hint": "look" });
    let pool_down =
        NewAlert { tenant: None, kind: "pool_down", dedup_key: "pool_down:test", severity: Severity::Critical, payload: &payload };
    assert!(alerts::enqueue(&mut db.conn(), &pool_down).unwrap());
    let mails = sink.wait_for(1, WAIT).await;
    assert!(eventually(WAIT, || async { unsent(&db) == 0 }).await);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].subject, "[CRITICAL] pool qwen has no healthy worker");
    let listed = alerts::list_all_alerts(&mut db.conn(), 10).unwrap();
    assert!(listed.iter().any(|a| a.kind == "worker_down" && a.last_error.as_deref() == Some("silenced")), "{listed:#?}");
    // Silences are an operator's tool.
    let r = app
        .client
        .post(app.url("/api/v1/alerts/silences"))
        .bearer_auth(&admin)
        .json(&json!({ "rule": "pool_down", "duration_s": 600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
