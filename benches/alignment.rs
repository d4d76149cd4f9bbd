//! Alignment batching, end to end: 64 concurrent clients upload 5–30 s WAV clips (multipart,
//! through auth, audio checks and the batching `InferenceQueue`) to one aligner simulator whose
//! cost model is 150 ms per batch + 20 ms per second of the batch's longest item, one batch at a
//! time (one GPU). The same load runs against a pool batching up to 16 items and a pool with
//! batches of 1; the figures are items per second and latency percentiles.
//!
//! Run with `cargo bench --bench alignment` (or `ops/bench/alignment.sh`). Needs PostgreSQL at
//! TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres); it creates and drops
//! its own database. Printed, not timed by criterion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::config::{Config, Secret};
use gatehouse::service::Actor;
use gatehouse::service::api_keys::CreateApiKeyRequest;
use gatehouse::service::tenants::CreateTenantRequest;
use gatehouse::service::workers::{AddWorkerRequest, CreatePoolRequest};
use gatehouse::simulator::llm::{Simulator, SimulatorConfig};

mod support;

const CLIENTS: usize = 64;
const WARMUP: Duration = Duration::from_secs(5);
const MEASURE: Duration = Duration::from_secs(40);

fn wav(seconds: u32) -> Vec<u8> {
    let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut out = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..seconds * 16_000 {
        let t = f64::from(i) / 16_000.0;
        let s = if (t % 0.5) < 0.3 { (t * 2.0 * std::f64::consts::PI * 220.0).sin() * 8000.0 } else { 0.0 };
        w.write_sample(s as i16).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

struct Run {
    items: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    errors: usize,
    /// The failed requests by answer (status and error code) or transport error.
    why: std::collections::BTreeMap<String, usize>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

async fn load(base: String, key: String, model: &'static str, clips: Arc<Vec<(u32, Vec<u8>)>>) -> Run {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let end = start + WARMUP + MEASURE;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, base, key, clips) = (http.clone(), base.clone(), key.clone(), clips.clone());
        tasks.push(actix_rt::spawn(async move {
            let mut done = Vec::new();
            let mut errors = 0;
            let mut why = std::collections::BTreeMap::<String, usize>::new();
            let mut i = c;
            while Instant::now() < end {
                let (seconds, bytes) = &clips[i % clips.len()];
                i += 7;
                let words = (0..seconds * 2).map(|w| format!("w{w}")).collect::<Vec<_>>().join(" ");
                let form = reqwest::multipart::Form::new()
                    .part("file", reqwest::multipart::Part::bytes(bytes.clone()).file_name("clip.wav"))
                    .text("text", words)
                    .text("language", "en")
                    .text("model", model);
                let sent = Instant::now();
                let failure = match http.post(format!("{base}/v1/audio/alignments")).bearer_auth(&key).multipart(form).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.err().map(|e| format!("body: {e}")),
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        Some(format!("{status} {}", body["error"]["code"].as_str().unwrap_or("")))
                    }
                    Err(e) => Some(format!("transport: {e}")),
                };
                let finished = Instant::now();
                if finished >= start + WARMUP && finished < end {
                    match failure {
                        None => done.push(finished - sent),
                        Some(f) => {
                            errors += 1;
                            *why.entry(f).or_default() += 1;
                        }
                    }
                }
            }
            (done, errors, why)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut why = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let (d, e, w) = t.await.expect("a client task panicked");
        latencies.extend(d);
        errors += e;
        w.into_iter().for_each(|(k, n)| *why.entry(k).or_default() += n);
    }
    latencies.sort();
    Run { items: latencies.len(), seconds: MEASURE.as_secs_f64(), latencies, errors, why }
}

fn main() {
    let Some(scratch) = support::ScratchDb::create("align") else { return };
    let url = scratch.url.clone();
    let jobs_dir = tempfile::tempdir().unwrap();

    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.url = Secret::new(url.clone());
    config.auth.master_key = Secret::new("dGVzdC1tYXN0ZXIta2V5LXRlc3QtbWFzdGVyLWtleSE=");
    config.auth.pepper = Secret::new("bench-pepper-bench-pepper-bench-pepper-01");
    config.alignment.jobs_dir = jobs_dir.path().to_owned();
    config.log.filter = "warn".into();

    actix_rt::System::new().block_on(async move {
        let mut sims = Vec::new();
        for _ in 0..2 {
            let sim = Simulator::start(SimulatorConfig {
                models: vec!["aligner-b16".into(), "aligner-b1".into()],
                ..SimulatorConfig::aligner("127.0.0.1:0")
            })
            .unwrap();
            sims.push(sim.port);
            actix_rt::spawn(sim.server);
        }
        let mut conn = scratch.connect();
        let tenant = gatehouse::service::tenants::create(
            &mut conn,
            &CreateTenantRequest { name: "Bench".into(), slug: None, time_zone: None, plan: None },
            &Actor::cli(),
        )
        .unwrap();
        let tenant = gatehouse::domain::TenantId::parse(&tenant.id).unwrap();
        let pepper = gatehouse::auth::secrets::Pepper::new(&config.auth.pepper);
        let key = gatehouse::service::api_keys::create(
            &mut conn,
            &pepper,
            &tenant,
            &CreateApiKeyRequest {
                name: "bench".into(),
                scopes: vec!["audio:align".into()],
                environment: None,
                expires_in_days: None,
                ip_allowlist: Vec::new(),
            },
            &Actor::cli(),
        )
        .unwrap()
        .key;
        let master = gatehouse::auth::seal::MasterKey::from_config(&config.auth.master_key).unwrap();
        for ((pool, model, items), port) in [("b16", "aligner-b16", 16), ("b1", "aligner-b1", 1)].into_iter().zip(&sims) {
            let req = CreatePoolRequest {
                queue_deadline_ms: Some(300_000),
                // Batching alone: 64 closed-loop clients keep the pool saturated, and adaptive
                // admission (on by default) would refuse their surplus with 429s at once.
                queue_wait_target_ms: Some(0),
                batch_max_items: Some(items),
                batch_max_wait_ms: Some(50),
                ..CreatePoolRequest::new(pool, gatehouse::domain::PoolKind::Aligner, vec![model.into()])
            };
            gatehouse::service::workers::create_pool(&mut conn, &req, &Actor::cli()).unwrap();
            let w = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(1) };
            gatehouse::service::workers::add_worker(&mut conn, &master, pool, &w, &Actor::cli()).unwrap();
        }
        let app = gatehouse::startup::Application::build(config).await.unwrap();
        let base = app.base_url("127.0.0.1");
        let handle = app.handle();
        actix_rt::spawn(app.run_until_stopped());

        let clips: Arc<Vec<(u32, Vec<u8>)>> = Arc::new([5, 8, 12, 15, 18, 22, 26, 30].into_iter().map(|s| (s, wav(s))).collect());
        println!(
            "alignment batching: {CLIENTS} clients, 5-30 s clips, simulator 150 ms/batch + 20 ms per second of the longest item, one batch at a time"
        );
        println!("{:<10} {:>8} {:>10} {:>10} {:>10} {:>8}", "batch", "items", "items/s", "p50", "p99", "errors");
        let mut rates = Vec::new();
        for (label, model) in [("max 16", "aligner-b16"), ("max 1", "aligner-b1")] {
            let run = load(base.clone(), key.clone(), model, clips.clone()).await;
            let rate = run.items as f64 / run.seconds;
            rates.push(rate);
            println!(
                "{label:<10} {:>8} {:>10.2} {:>9.0}ms {:>9.0}ms {:>8}",
                run.items,
                rate,
                percentile(&run.latencies, 0.50).as_secs_f64() * 1000.0,
                percentile(&run.latencies, 0.99).as_secs_f64() * 1000.0,
                run.errors
            );
            for (failure, n) in &run.why {
                println!("{:<10} {n} × {failure}", "");
            }
        }
        println!("throughput ratio (max 16 / max 1): {:.2}x (target >= 3x)", rates[0] / rates[1].max(f64::MIN_POSITIVE));
        handle.stop(true).await;
    });
}
