//! Forced alignment end to end: real audio made here (WAV written by the test; FLAC, MP3, Ogg and
//! M4A converted with ffmpeg), real multipart uploads through the real route, real HTTP to the
//! aligner simulator, whose request counter proves what reached it.

use std::io::Cursor;
use std::time::Duration;

use diesel::prelude::*;
use gatehouse::domain::TenantId;
use gatehouse::service::Actor;
use gatehouse::service::workers::{AddWorkerRequest, CreatePoolRequest};
use gatehouse::simulator::llm::{Simulator, SimulatorConfig};
use serde_json::Value;

use crate::helpers::{TEST_MASTER_KEY, TestApp, TestDb, eventually, seed};

pub(crate) const MODEL: &str = "Qwen/Qwen3-ForcedAligner-0.6B";
const WORDS: &str = "the quick brown fox jumps over the lazy dog";

pub(crate) fn aligner(tweak: impl FnOnce(&mut SimulatorConfig)) -> (u16, actix_web::dev::ServerHandle) {
    let mut c = SimulatorConfig::aligner("127.0.0.1:0");
    c.batch_ms = 20;
    c.ms_per_audio_second = 2;
    tweak(&mut c);
    let sim = Simulator::start(c).unwrap();
    let handle = sim.server.handle();
    actix_rt::spawn(sim.server);
    (sim.port, handle)
}

/// (batch requests, items) the simulator has received.
pub(crate) async fn received(port: u16) -> (u64, u64, u64) {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<u64>().ok()))
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (value("gatehouse_simulator_requests_total "), value("gatehouse_simulator_items_total "), value("gatehouse_simulator_largest_batch "))
}

pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) tenant: TenantId,
    pub(crate) key: String,
}

/// An app with an aligner pool on the given simulator ports and an API key with `audio:align`.
pub(crate) async fn world(
    ports: &[u16],
    batch_max_items: i32,
    batch_max_wait_ms: i32,
    tweak: impl FnOnce(&mut gatehouse::config::Config),
) -> World {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "audio:align models:read");
    add_pool(&db, ports, batch_max_items, batch_max_wait_ms);
    World { app: TestApp::spawn_on(db, tweak).await, tenant, key }
}

pub(crate) fn add_pool(db: &TestDb, ports: &[u16], batch_max_items: i32, batch_max_wait_ms: i32) {
    let master = gatehouse::auth::seal::MasterKey::from_config(&gatehouse::config::Secret::new(TEST_MASTER_KEY)).unwrap();
    let mut conn = db.conn();
    let req = CreatePoolRequest {
        batch_max_items: Some(batch_max_items),
        batch_max_wait_ms: Some(batch_max_wait_ms),
        queue_deadline_ms: Some(20_000),
        ..CreatePoolRequest::new("align", gatehouse::domain::PoolKind::Aligner, vec![MODEL.into()])
    };
    gatehouse::service::workers::create_pool(&mut conn, &req, &Actor::cli()).unwrap();
    for port in ports {
        let w = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(1) };
        gatehouse::service::workers::add_worker(&mut conn, &master, "align", &w, &Actor::cli()).unwrap();
    }
}

/// Speech-like audio: 300 ms tone bursts between 200 ms pauses, as a 16-bit WAV file.
pub(crate) fn wav(seconds: f64, rate: u32, channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut out = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    let frames = (seconds * f64::from(rate)) as u64;
    for i in 0..frames {
        let t = i as f64 / f64::from(rate);
        let voiced = (t % 0.5) < 0.3;
        let s = if voiced { (t * 2.0 * std::f64::consts::PI * 220.0).sin() * 8000.0 } else { 0.0 };
        for _ in 0..channels {
            w.write_sample(s as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    out.into_inner()
}

/// The WAV converted by ffmpeg to `ext` (flac, mp3, ogg, m4a).
fn convert(wav: &[u8], ext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    let output = dir.path().join(format!("out.{ext}"));
    std::fs::write(&input, wav).unwrap();
    let codec: &[&str] = match ext {
        "ogg" => &["-c:a", "libvorbis"],
        "m4a" => &["-c:a", "aac"],
        _ => &[],
    };
    let status = std::process::Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-i"])
        .arg(&input)
        .args(codec)
        .arg(&output)
        .status()
        .expect("ffmpeg is installed by ops/test.sh");
    assert!(status.success(), "ffmpeg failed to make {ext}");
    std::fs::read(output).unwrap()
}

pub(crate) fn form(file: Vec<u8>, name: &str, text: &str, language: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(file).file_name(name.to_owned()))
        .text("text", text.to_owned())
        .text("language", language.to_owned())
}

pub(crate) async fn align(app: &TestApp, key: &str, form: reqwest::multipart::Form) -> reqwest::Response {
    app.client.post(app.url("/v1/audio/alignments")).bearer_auth(key).multipart(form).send().await.unwrap()
}

fn assert_alignment(body: &Value, words: &str, duration_ms: u64) {
    let items = body["items"].as_array().unwrap();
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    assert_eq!(texts, words.split_whitespace().collect::<Vec<_>>());
    let mut last = 0;
    for i in items {
        let (s, e) = (i["start_ms"].as_u64().unwrap(), i["end_ms"].as_u64().unwrap());
        assert!(s >= last && e >= s && e <= duration_ms, "monotone and inside the audio: {i}");
        last = e;
    }
}

#[actix_web::test]
async fn wav_flac_mp3_ogg_and_m4a_are_aligned_through_the_route() {
    let (port, _sim) = aligner(|_| {});
    let w = world(&[port], 16, 0, |_| {}).await;
    let source = wav(3.0, 44_100, 2);
    for ext in ["wav", "flac", "mp3", "ogg", "m4a"] {
        let file = if ext == "wav" { source.clone() } else { convert(&source, ext) };
        // Content decides, not the name: every file is called audio.bin.
        let r = align(&w.app, &w.key, form(file, "audio.bin", WORDS, "en")).await;
        assert_eq!(r.status(), 200, "{ext}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["model"], MODEL);
        assert_eq!(body["language"], "English");
        let duration = body["duration_ms"].as_u64().unwrap();
        assert!((2_950..=3_150).contains(&duration), "{ext}: measured {duration} ms");
        assert_alignment(&body, WORDS, duration);
    }
    assert_eq!(received(port).await.1, 5);
    // Audio seconds are metered for the tenant.
    w.app.state.usage.flush().await;
    let billed = billed_ms(&w.app.db, &w.tenant);
    assert!((5 * 2_950..=5 * 3_150).contains(&billed), "five ~3 s files billed: {billed} ms");
}

fn billed_ms(db: &TestDb, tenant: &TenantId) -> i64 {
    diesel::sql_query("SELECT coalesce(sum(audio_ms), 0)::bigint AS n FROM usage_rollups WHERE tenant_id = $1")
        .bind::<diesel::sql_types::Text, _>(tenant.as_str())
        .get_result::<Count>(&mut db.conn())
        .unwrap()
        .n
}

#[actix_web::test]
async fn bad_uploads_are_refused_with_the_right_status_and_never_reach_the_worker() {
    let (port, _sim) = aligner(|_| {});
    let w = world(&[port], 16, 0, |c| {
        c.alignment.max_duration_s = 20;
        c.gateway.policy_cache_ttl_ms = 100;
    })
    .await;
    let good = wav(2.0, 16_000, 1);
    let mut truncated = convert(&wav(2.0, 16_000, 1), "flac");
    truncated.truncate(200);
    let header_only = wav(0.0, 16_000, 1);
    let too_long = wav(21.0, 8_000, 1);
    let cases: Vec<(&str, reqwest::multipart::Form, u16, &str)> = vec![
        ("random bytes", form((0..4000u32).map(|i| (i * 7919 % 251) as u8).collect(), "a.wav", WORDS, "en"), 415, "unsupported_audio_type"),
        ("text renamed .wav", form(b"hello, I am not audio at all\n".repeat(50), "speech.wav", WORDS, "en"), 415, "unsupported_audio_type"),
        ("zero-length file", form(Vec::new(), "empty.wav", WORDS, "en"), 400, "empty_file"),
        ("header-only WAV", form(header_only, "empty.wav", WORDS, "en"), 422, "audio_too_short"),
        ("truncated FLAC", form(truncated, "cut.flac", WORDS, "en"), 400, "invalid_audio"),
        ("over the duration limit", form(too_long, "long.wav", WORDS, "en"), 413, "audio_too_long"),
        ("unsupported language", form(good.clone(), "a.wav", WORDS, "klingon"), 400, "unsupported_language"),
        (
            "missing transcript",
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(good.clone())).text("language", "en"),
            400,
            "invalid_request",
        ),
        ("implausible transcript", form(good.clone(), "a.wav", &"word ".repeat(200), "en"), 422, "implausible_transcript"),
        ("only control characters", form(good.clone(), "a.wav", "\u{1}\u{2}\t", "en"), 400, "invalid_request"),
        (
            "two file parts",
            form(good.clone(), "a.wav", WORDS, "en").part("file", reqwest::multipart::Part::bytes(good.clone()).file_name("b.wav")),
            400,
            "invalid_request",
        ),
    ];
    for (what, form, status, code) in cases {
        let r = align(&w.app, &w.key, form).await;
        assert_eq!(r.status(), status, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        if what == "over the duration limit" {
            assert!(body["error"]["message"].as_str().unwrap().contains("/v1/audio/alignments/jobs"), "points to the jobs route");
        }
    }
    // Not multipart at all.
    let r = w
        .app
        .client
        .post(w.app.url("/v1/audio/alignments"))
        .bearer_auth(&w.key)
        .json(&serde_json::json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(received(port).await, (0, 0, 0), "nothing invalid reached the worker");
    // A valid one does.
    let r = align(&w.app, &w.key, form(good, "a.wav", WORDS, "English")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(received(port).await.0, 1);

    // Over the plan's size limit: refused while reading, before decoding.
    diesel::sql_query("UPDATE plans SET max_audio_bytes = 50000").execute(&mut w.app.db.conn()).unwrap();
    // A change made behind the instance's back applies once its cached policy expires.
    let policies = &w.app.state.admission.policies;
    let applied = || async { policies.tenant_policy(&w.tenant).await.is_ok_and(|p| p.max_audio_bytes == 50_000) };
    assert!(eventually(Duration::from_secs(10), applied).await, "the plan change reached the policy cache");
    let r = align(&w.app, &w.key, form(wav(3.0, 16_000, 1), "big.wav", WORDS, "en")).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "file_too_large");
    assert_eq!(received(port).await.0, 1, "the oversized file did not reach the worker");
}

#[actix_web::test]
async fn requests_from_several_clients_reach_the_worker_in_one_batch() {
    let (port, _sim) = aligner(|_| {});
    let db = TestDb::new();
    let tenants: Vec<TenantId> = (0..3).map(|i| seed::tenant(&db, &format!("T{i}"))).collect();
    let keys: Vec<String> =
        tenants.iter().flat_map(|t| [seed::api_key(&db, t, "audio:align"), seed::api_key(&db, t, "audio:align")]).collect();
    add_pool(&db, &[port], 16, 400);
    let app = TestApp::spawn_on(db, |_| {}).await;
    let audio = wav(2.0, 16_000, 1);
    let calls = keys.iter().map(|key| align(&app, key, form(audio.clone(), "a.wav", WORDS, "en")));
    let responses = futures_util::future::join_all(calls).await;
    for r in responses {
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_alignment(&body, WORDS, body["duration_ms"].as_u64().unwrap());
    }
    let (requests, items, largest) = received(port).await;
    assert_eq!(items, 6);
    assert_eq!(largest, 6, "six clients of three tenants went in one batch");
    assert_eq!(requests, 1);
}

#[actix_web::test]
async fn the_languages_route_lists_the_aligner_languages_and_needs_the_scope() {
    let (port, _sim) = aligner(|_| {});
    let w = world(&[port], 16, 0, |_| {}).await;
    let r = w.app.get_with("/v1/audio/alignments/languages", &w.key).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let codes: Vec<&str> = body["data"].as_array().unwrap().iter().map(|l| l["code"].as_str().unwrap()).collect();
    assert_eq!(codes.len(), 11);
    assert!(codes.contains(&"en") && codes.contains(&"zh") && codes.contains(&"yue"));
    let chat_only = seed::api_key(&w.app.db, &w.tenant, "chat:completions");
    let r = w.app.get_with("/v1/audio/alignments/languages", &chat_only).await;
    assert_eq!(r.status(), 403);
    let r = align(&w.app, &chat_only, form(wav(1.0, 16_000, 1), "a.wav", "hello", "en")).await;
    assert_eq!(r.status(), 403);
}

#[actix_web::test]
async fn chat_requests_naming_an_aligner_model_get_404_and_never_reach_the_aligner() {
    let (port, _sim) = aligner(|_| {});
    let w = world(&[port], 16, 0, |_| {}).await;
    let chat = seed::api_key(&w.app.db, &w.tenant, "chat:completions");
    let r = reqwest::Client::new()
        .post(w.app.url("/v1/chat/completions"))
        .bearer_auth(&chat)
        .json(&serde_json::json!({ "model": MODEL, "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Gatehouse's own answer, not the aligner's 404 for a route it does not have.
    let message = r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("does not exist or you do not have access"), "{message}");
    assert_eq!(received(port).await.0, 0, "the aligner got nothing");
}

pub(crate) async fn job_status(app: &TestApp, key: &str, id: &str) -> Value {
    app.get_with(&format!("/v1/audio/alignments/jobs/{id}"), key).await.json().await.unwrap()
}

fn long_words(n: usize) -> String {
    (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
}

#[actix_web::test]
async fn a_job_survives_a_restart_and_completes() {
    // Slow batches so that the restart lands mid-job: 10 s chunks of a 45 s recording.
    let (port, _sim) = aligner(|c| c.batch_ms = 400);
    let jobs_dir = tempfile::tempdir().unwrap();
    let dir = jobs_dir.path().to_owned();
    let tweak = move |c: &mut gatehouse::config::Config| {
        c.alignment.max_duration_s = 10;
        c.alignment.jobs_dir = dir.clone();
    };
    let mut w = world(&[port], 16, 0, tweak.clone()).await;
    let words = long_words(90);
    let r = w
        .app
        .client
        .post(w.app.url("/v1/audio/alignments/jobs"))
        .bearer_auth(&w.key)
        .header("Idempotency-Key", "restart-test")
        .multipart(form(wav(45.0, 16_000, 1), "long.wav", &words, "en"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/v1/audio/alignments/jobs/job_"));
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["status"], "queued");
    assert!(job["progress"]["chunks_total"].as_u64().unwrap() >= 5);

    let (app, key) = (&w.app, &w.key);
    assert!(
        eventually(Duration::from_secs(20), || async { job_status(app, key, &id).await["progress"]["chunks_done"].as_u64() >= Some(1) })
            .await,
        "the first chunk is done"
    );
    w.app.stop().await.unwrap();
    let stopped = job_status_db(&w.app.db, &id);
    assert_eq!(stopped.0, "queued", "a graceful stop hands the running job back");
    assert!(stopped.1 >= 1 && stopped.1 < 5, "stopped mid-job after {} chunks", stopped.1);

    let app = TestApp::spawn_on(w.app.db.share(), tweak).await;
    assert!(
        eventually(Duration::from_secs(30), || async { job_status(&app, &w.key, &id).await["status"] == "succeeded" }).await,
        "the job completes after the restart: {}",
        job_status(&app, &w.key, &id).await
    );
    let done = job_status(&app, &w.key, &id).await;
    assert_eq!(done["progress"]["percent"], 100);
    let result = &done["result"];
    assert_eq!(result["duration_ms"], 45_000);
    assert_alignment(result, &words, 45_000);
    assert!(result["items"][89]["end_ms"].as_u64().unwrap() > 30_000, "the words span the whole recording");
    assert!(std::fs::read_dir(jobs_dir.path()).unwrap().next().is_none(), "the job's audio is deleted when it ends");
    // Metered once, as it advanced: 45 s in all.
    app.state.usage.flush().await;
    assert_eq!(billed_ms(&app.db, &w.tenant), 45_000);
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn job_status_db(db: &TestDb, id: &str) -> (String, i32) {
    use gatehouse::db::schema::jobs::dsl as j;
    j::jobs.filter(j::id.eq(id)).select((j::status, j::chunks_done)).first(&mut db.conn()).unwrap()
}

#[actix_web::test]
async fn jobs_are_idempotent_cancellable_and_private_to_their_tenant() {
    let (port, _sim) = aligner(|c| c.batch_ms = 2_000);
    let w = world(&[port], 16, 0, |c| {
        c.alignment.max_duration_s = 10;
        c.alignment.job_concurrency = 1;
    })
    .await;
    let audio = wav(30.0, 16_000, 1);
    let words = long_words(60);
    let submit = |key: &'static str, text: String| {
        w.app
            .client
            .post(w.app.url("/v1/audio/alignments/jobs"))
            .bearer_auth(&w.key)
            .header("Idempotency-Key", key)
            .multipart(form(audio.clone(), "a.wav", &text, "en"))
            .send()
    };
    let first: Value = submit("k1", words.clone()).await.unwrap().json().await.unwrap();
    let again = submit("k1", words.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"], "the same request gets the same job");
    let other = submit("k1", long_words(59)).await.unwrap();
    assert_eq!(other.status(), 409, "the key was used for another request");
    let id = first["id"].as_str().unwrap();

    // Another tenant's credential cannot see or cancel it.
    let other_tenant = seed::tenant(&w.app.db, "Other");
    let stranger = seed::api_key(&w.app.db, &other_tenant, "audio:align");
    assert_eq!(w.app.get_with(&format!("/v1/audio/alignments/jobs/{id}"), &stranger).await.status(), 404);
    let r = w.app.client.delete(w.app.url(&format!("/v1/audio/alignments/jobs/{id}"))).bearer_auth(&stranger).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Its owner can.
    let r = w.app.client.delete(w.app.url(&format!("/v1/audio/alignments/jobs/{id}"))).bearer_auth(&w.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
    let r = w.app.client.delete(w.app.url(&format!("/v1/audio/alignments/jobs/{id}"))).bearer_auth(&w.key).send().await.unwrap();
    assert_eq!(r.status(), 409, "already ended");
    // The runner may have had a chunk of it at the worker. Its one runner takes the next job only
    // once it is done with this one, so when the next job runs, nothing of this one is left to land.
    let r = w
        .app
        .client
        .post(w.app.url("/v1/audio/alignments/jobs"))
        .bearer_auth(&w.key)
        .multipart(form(wav(2.0, 16_000, 1), "next.wav", &long_words(4), "en"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let next = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (app, key) = (&w.app, &w.key);
    let taken = eventually(Duration::from_secs(20), || async { job_status(app, key, &next).await["status"] != "queued" }).await;
    assert!(taken, "the runner took the next job");
    let after = job_status(&w.app, &w.key, id).await;
    assert_eq!(after["status"], "cancelled", "a cancelled job stays cancelled: {after}");
    assert!(after["result"].is_null());
    assert_eq!(w.app.get_with("/v1/audio/alignments/jobs/job_0000000000000000000000", &w.key).await.status(), 404);
}

#[actix_web::test]
async fn one_bad_item_fails_only_itself_within_its_batch() {
    use gatehouse::actors::inference_queue::{AlignItem, ItemResult};
    use gatehouse::actors::inference_queue::{BatchSettings, InferenceQueueHandle, QueueSettings, WorkerSpec};
    let (port, _sim) = aligner(|_| {});
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    actix_rt::spawn(gatehouse::workers::aligner::run_executor(reqwest::Client::new(), "align".into(), rx));
    let settings = QueueSettings {
        limits: gatehouse::scheduler::QueueLimits { max_per_tenant: 100, max_total: 100 },
        deadline: Duration::from_secs(10),
        eject_for: Duration::from_secs(10),
        eject_after: 3,
        stats_window: Duration::from_secs(120),
        wait_target: None,
        batch: Some(BatchSettings { max_items: 8, max_audio_ms: 600_000, max_wait: Duration::from_millis(200) }),
    };
    let worker = WorkerSpec { id: "w".into(), base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: 1, draining: false };
    let queue = InferenceQueueHandle::start_batching(&actix_rt::Arbiter::current(), vec![worker], settings, tx);
    // The route would refuse a bad language; here the item goes straight to the queue so the
    // worker's per-item error is what is tested.
    let item = |language: &'static str| AlignItem {
        model: MODEL.into(),
        wav: gatehouse::audio::decode(&wav(1.0, 16_000, 1), &Default::default()).unwrap().to_wav().into(),
        text: "hello world".into(),
        language,
        audio_ms: 1_000,
    };
    let tenant = TenantId::generate();
    let (good, bad) = futures_util::join!(
        queue.align(tenant.clone(), 1, gatehouse::scheduler::Priority::Normal, item("English")),
        queue.align(tenant.clone(), 1, gatehouse::scheduler::Priority::Normal, item("Klingon")),
    );
    let (good, bad) = (good.unwrap(), bad.unwrap());
    assert_eq!((good.batch_size, bad.batch_size), (2, 2), "both went in one batch");
    assert!(matches!(good.result, ItemResult::Aligned { ref items, .. } if items.len() == 2));
    assert!(matches!(bad.result, ItemResult::Refused { ref code, .. } if code == "unsupported_language"));
    assert_eq!(received(port).await, (1, 2, 2));
}

#[actix_web::test]
async fn job_runners_serve_the_tenant_with_fewer_jobs_running_first() {
    let (port, _sim) = aligner(|c| c.batch_ms = 300);
    let w = world(&[port], 16, 0, |c| {
        c.alignment.max_duration_s = 10;
        c.alignment.job_concurrency = 2;
    })
    .await;
    let other = seed::tenant(&w.app.db, "Other");
    let other_key = seed::api_key(&w.app.db, &other, "audio:align");
    let audio = wav(25.0, 16_000, 1);
    let words = long_words(50);
    let submit = |key: String| {
        let form = form(audio.clone(), "a.wav", &words, "en");
        let r = w.app.client.post(w.app.url("/v1/audio/alignments/jobs")).bearer_auth(key).multipart(form).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned() }
    };
    // Acme queues three jobs, then Other one: with two runners Other's job must not wait for
    // all of Acme's.
    let mut acme = Vec::new();
    for _ in 0..3 {
        acme.push(submit(w.key.clone()).await);
    }
    let theirs = submit(other_key.clone()).await;
    let (app, key) = (&w.app, &w.key);
    assert!(
        eventually(Duration::from_secs(40), || async { job_status(app, &other_key, &theirs).await["status"] == "succeeded" }).await,
        "the other tenant's job finishes"
    );
    let started = |id: &str| {
        use gatehouse::db::schema::jobs::dsl as j;
        j::jobs.filter(j::id.eq(id)).select(j::started_at).first::<Option<chrono::DateTime<chrono::Utc>>>(&mut w.app.db.conn()).unwrap()
    };
    let third = started(&acme[2]);
    assert!(third.is_none() || third > started(&theirs), "Acme's third job started after the other tenant's job");
    assert!(eventually(Duration::from_secs(40), || async { job_status(app, key, &acme[2]).await["status"] == "succeeded" }).await);
}
