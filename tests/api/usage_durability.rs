//! Usage that a crash cannot lose: an instance under load is killed with SIGKILL, started again
//! on the same usage journal, and the database then bills every request whose answer a client
//! received (at most the requests in flight at the kill besides), and none twice, even when the
//! journal still holds segments the database already has (a crash between the usage write and
//! the segments' removal).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use gatehouse::simulator::llm::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

use crate::helpers::{TestDb, eventually, seed};
use crate::serve::Served;

const MODEL: &str = "Qwen/Qwen2.5-7B-Instruct";
const CLIENTS: u64 = 16;

/// (requests, tokens) the database bills the tenant.
fn billed(db: &TestDb, tenant: &gatehouse::domain::TenantId) -> (i64, i64) {
    use gatehouse::db::schema::usage_rollups::dsl as r;
    let rows: Vec<(i64, i64, i64)> = r::usage_rollups
        .filter(r::tenant_id.eq(tenant.as_str()))
        .select((r::requests, r::prompt_tokens, r::completion_tokens))
        .load(&mut db.conn())
        .unwrap();
    rows.iter().fold((0, 0), |(n, t), (req, p, c)| (n + req, t + p + c))
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("segment-"))
        .collect();
    found.sort();
    found
}

async fn ready(base: &str) {
    let http = reqwest::Client::new();
    let up =
        eventually(Duration::from_secs(20), || async { http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) })
            .await;
    assert!(up, "the server became ready");
}

#[actix_web::test]
async fn a_killed_instance_bills_every_answered_request_once_after_a_restart() {
    let mut sim = SimulatorConfig::llm("127.0.0.1:0");
    (sim.ttft_ms, sim.tpot_ms) = (1, 0);
    let sim = Simulator::start(sim).unwrap();
    let (sim_port, _sim) = (sim.port, sim.server.handle());
    actix_rt::spawn(sim.server);
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "chat:completions");
    seed::llm_pool(&db, "qwen", MODEL, &[sim_port], 64);
    let journal = tempfile::tempdir().unwrap();
    let env = [("GATEHOUSE__USAGE__JOURNAL_DIR", journal.path().as_os_str())];

    let served = Served::start(&db, env);
    let base = served.base();
    ready(&base).await;
    let (stop, answered, tokens, sent) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, answered, tokens, sent, key, base) =
            (stop.clone(), answered.clone(), tokens.clone(), sent.clone(), key.clone(), base.clone());
        clients.push(actix_rt::spawn(async move {
            let http = reqwest::Client::new();
            let body = json!({ "model": MODEL, "messages": [{ "role": "user", "content": "hello there" }], "max_tokens": 8 });
            while !stop.load(Ordering::SeqCst) {
                sent.fetch_add(1, Ordering::SeqCst);
                let Ok(r) = http.post(format!("{base}/v1/chat/completions")).bearer_auth(&key).json(&body).send().await else {
                    break;
                };
                let status = r.status();
                let Ok(v) = r.json::<Value>().await else { break };
                assert_eq!(status, 200, "{v}");
                answered.fetch_add(1, Ordering::SeqCst);
                tokens.fetch_add(v["usage"]["total_tokens"].as_u64().unwrap(), Ordering::SeqCst);
            }
        }));
    }
    // Past one usage flush, then SIGKILL mid-load: some usage is in the database, the rest only
    // in the journal.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    served.kill();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let (answered, tokens, sent) = (answered.load(Ordering::SeqCst), tokens.load(Ordering::SeqCst), sent.load(Ordering::SeqCst));
    assert!(answered > 100, "the load ran: {answered} answers");
    let before_restart = billed(&db, &tenant);
    assert!(before_restart.0 < answered as i64, "some usage was only in the journal at the kill: {before_restart:?} of {answered}");
    let snapshot = tempfile::tempdir().unwrap();
    for s in segments(journal.path()) {
        std::fs::copy(&s, snapshot.path().join(s.file_name().unwrap())).unwrap();
    }

    // Started again on the same journal: what it holds is written once, then a graceful stop.
    let served = Served::start(&db, env);
    ready(&served.base()).await;
    assert!(served.terminate(), "the restarted server stopped cleanly");
    let (requests, billed_tokens) = billed(&db, &tenant);
    let in_flight = (sent - answered) as i64;
    eprintln!("answered {answered} ({tokens} tokens), billed {requests} ({billed_tokens} tokens), before the restart {before_restart:?}");
    assert!(requests >= answered as i64, "every answered request is billed: {requests} of {answered}");
    assert!(requests <= answered as i64 + in_flight.min(CLIENTS as i64), "billed {requests}: {answered} answered + in flight at the kill");
    assert!(billed_tokens >= tokens as i64, "every answered token is billed: {billed_tokens} of {tokens}");
    assert!(segments(journal.path()).iter().all(|s| std::fs::metadata(s).unwrap().len() == 0), "applied segments are gone");

    // The segments come back as if the last crash had struck between the usage write and
    // their removal: the next start skips them.
    for s in segments(snapshot.path()) {
        std::fs::copy(&s, journal.path().join(s.file_name().unwrap())).unwrap();
    }
    let served = Served::start(&db, env);
    ready(&served.base()).await;
    assert!(served.terminate());
    assert_eq!(billed(&db, &tenant), (requests, billed_tokens), "nothing is billed twice");
}
