//! Bounds on alignment uploads: the decoded duration of a job (413, and no file left behind),
//! concurrent decodes per tenant and per instance (429 / 503 with `Retry-After`, at once), and the
//! memory one long job takes.
//!
//! Memory is measured on the real `gatehouse` binary (its own process, so nothing else in the
//! test run shows up in its figures): a long, low-bitrate MP3 of silence is uploaded to the jobs
//! route, picked up by a job runner and cancelled, and the server's peak resident memory
//! (`VmHWM` in `/proc/<pid>/status`) may grow by less than 256 MB over its resident memory before
//! the upload. Holding the whole decoded stream (32 kB per second of audio at 16 kHz, PCM16, plus
//! copies) breaks that bound from about 25 minutes of audio on.
//!
//! By default the audio is an hour at 16 kHz, so that a debug build decodes it in seconds (its
//! FFT resampler, which 8 kHz audio goes through, is about 20 times slower than a release
//! build's; the decoded stream, and so the memory at stake, is the same 16 kHz either way).
//! `GATEHOUSE_MEMORY_TEST_SECONDS` and `GATEHOUSE_MEMORY_TEST_RATE` change them, and
//! `GATEHOUSE_TEST_BIN` runs another build of the server: `ops/bench/job_memory.sh` runs
//! the report's four hours at 8 kHz (14 MB) against a release build. The figures are printed
//! (`--no-capture` shows them).

use std::time::Duration;

use serde_json::Value;

use crate::alignments::{MODEL, add_pool, align, aligner, form, received, wav, world};
use crate::helpers::{TestDb, eventually, seed};
use crate::serve::Served;

/// The bound the report asks for: growth of the server's resident memory over one upload.
const MAX_GROWTH_KB: u64 = 256 * 1024;

/// A setting of this test from the environment, else its default.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Silence as a mono, 8 kbit/s MP3 (a 14 MB file holds about four hours).
fn silence_mp3(seconds: u64, rate: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("silence.mp3");
    let status = std::process::Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("anullsrc=r={rate}:cl=mono"))
        .arg("-t")
        .arg(seconds.to_string())
        .args(["-b:a", "8k", "-codec:a", "libmp3lame"])
        .arg(&out)
        .status()
        .expect("ffmpeg is installed by ops/test.sh");
    assert!(status.success(), "ffmpeg (with libmp3lame) made the MP3");
    std::fs::read(out).unwrap()
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The server's resident memory now, with its high-water mark reset to it where the kernel
/// allows (`clear_refs` 5); the peak is then read from `VmHWM`.
fn reset_peak(pid: u32) -> u64 {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    status_kb(pid, "VmRSS")
}

struct Server {
    _served: Served,
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Server {
    async fn submit(&self, file: Vec<u8>, name: &str, text: &str) -> reqwest::Response {
        let url = format!("{}/v1/audio/alignments/jobs", self.base);
        self.client.post(url).bearer_auth(&self.key).multipart(form(file, name, text, "en")).send().await.unwrap()
    }

    async fn job(&self, id: &str) -> Value {
        let url = format!("{}/v1/audio/alignments/jobs/{id}", self.base);
        self.client.get(url).bearer_auth(&self.key).send().await.unwrap().json().await.unwrap()
    }
}

#[actix_web::test]
async fn a_long_low_bitrate_upload_grows_the_server_by_less_than_256_mb() {
    let seconds = setting("GATEHOUSE_MEMORY_TEST_SECONDS", 3600);
    let rate = setting("GATEHOUSE_MEMORY_TEST_RATE", 16_000);
    let clock = std::time::Instant::now();
    let mp3 = silence_mp3(seconds, rate);
    let encoded = clock.elapsed();
    let (port, _sim) = aligner(|_| {});
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "audio:align");
    add_pool(&db, &[port], 16, 0);
    let jobs_dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        &db,
        [("GATEHOUSE__ALIGNMENT__JOBS_DIR", jobs_dir.path().as_os_str()), ("GATEHOUSE__ALIGNMENT__JOB_IDLE_POLL_MS", "200".as_ref())],
    );
    let pid = served.pid();
    let server = Server { base: served.base(), _served: served, key, client: reqwest::Client::new() };

    // A short job first, so the code and the buffers every job uses are part of the baseline.
    let warm = server.submit(wav(3.0, 16_000, 1), "warm.wav", "hello there").await;
    assert_eq!(warm.status(), 202);
    let warm_id = warm.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let warmed = eventually(Duration::from_secs(30), || async { server.job(&warm_id).await["status"] == "succeeded" }).await;
    assert!(warmed, "the warm-up job finished: {}", server.job(&warm_id).await);

    let before_kb = reset_peak(pid);
    let clock = std::time::Instant::now();
    let r = server.submit(mp3.clone(), "silence.mp3", "hello world").await;
    let upload_status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(upload_status, 202, "{body}");
    assert_eq!(body["model"], MODEL);
    assert!(body["duration_ms"].as_u64().unwrap() >= (seconds - 1) * 1000, "{body}");
    let after_upload_kb = status_kb(pid, "VmHWM");
    let uploaded = clock.elapsed();
    let id = body["id"].as_str().unwrap().to_owned();

    // The runner picks the job up and aligns its first chunk; then the job is cancelled.
    let picked_up = eventually(Duration::from_secs(120), || async {
        let job = server.job(&id).await;
        job["progress"]["chunks_done"].as_u64() >= Some(1) || job["status"] == "succeeded"
    })
    .await;
    assert!(picked_up, "a runner worked on the job: {}", server.job(&id).await);
    let url = format!("{}/v1/audio/alignments/jobs/{id}", server.base);
    let cancel = server.client.delete(url).bearer_auth(&server.key).send().await.unwrap().status();
    assert!(cancel == 200 || cancel == 409, "cancelled, or already finished: {cancel}");
    let peak_kb = status_kb(pid, "VmHWM");
    let after_cancel_kb = status_kb(pid, "VmRSS");
    let picked = clock.elapsed() - uploaded;
    let growth_kb = peak_kb.saturating_sub(before_kb);
    eprintln!(
        "memory: {seconds} s of audio at {rate} Hz in {} bytes of MP3; resident before {} MB, peak after upload {} MB, \
         peak after pickup and cancel {} MB (resident then {} MB), growth {} MB (MP3 made in {encoded:.1?}, upload answered in \
         {uploaded:.1?}, first chunk done {picked:.1?} later)",
        mp3.len(),
        before_kb / 1024,
        after_upload_kb / 1024,
        peak_kb / 1024,
        after_cancel_kb / 1024,
        growth_kb / 1024
    );
    assert!(growth_kb < MAX_GROWTH_KB, "the server grew by {} MB (limit {} MB)", growth_kb / 1024, MAX_GROWTH_KB / 1024);
}

fn submit_job(app: &crate::helpers::TestApp, key: &str, file: Vec<u8>, text: &str) -> impl std::future::Future<Output = reqwest::Response> {
    let request = app.client.post(app.url("/v1/audio/alignments/jobs")).bearer_auth(key).multipart(form(file, "a.wav", text, "en"));
    async move { request.send().await.unwrap() }
}

fn job_rows(db: &TestDb) -> i64 {
    use diesel::prelude::*;
    gatehouse::db::schema::jobs::table.count().get_result(&mut db.conn()).unwrap()
}

#[actix_web::test]
async fn a_job_longer_than_its_limit_is_refused_while_decoding_and_leaves_no_file() {
    let (port, _sim) = aligner(|_| {});
    let jobs_dir = tempfile::tempdir().unwrap();
    let dir = jobs_dir.path().to_owned();
    let w = world(&[port], 16, 0, move |c| {
        c.alignment.max_duration_s = 10;
        c.alignment.job_max_duration_s = 20;
        c.alignment.jobs_dir = dir;
    })
    .await;
    let r = submit_job(&w.app, &w.key, wav(60.0, 8_000, 1), "hello there").await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audio_too_long", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    // Decoding stopped just past the limit, not at the end of the minute of audio.
    let measured: u64 = message.split("at least ").nth(1).and_then(|m| m.split(' ').next()).and_then(|m| m.parse().ok()).unwrap();
    assert!((20_000..21_000).contains(&measured) && message.contains("the limit is 20000 ms"), "{message}");
    assert!(!message.contains("/v1/audio/alignments/jobs"), "no pointer to the route it was sent to: {message}");
    assert!(std::fs::read_dir(jobs_dir.path()).unwrap().next().is_none(), "the partial file is removed");
    assert_eq!(job_rows(&w.app.db), 0);
    assert_eq!(received(port).await.0, 0, "nothing reached the worker");
    // Within the limit the same route takes it, and stores its file.
    let r = submit_job(&w.app, &w.key, wav(15.0, 8_000, 1), "hello there").await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["duration_ms"], 15_000);
    assert_eq!(job_rows(&w.app.db), 1);
}

#[actix_web::test]
async fn decodes_are_bounded_per_tenant_and_per_instance_and_refused_at_once() {
    let (port, _sim) = aligner(|_| {});
    let jobs_dir = tempfile::tempdir().unwrap();
    let dir = jobs_dir.path().to_owned();
    let w = world(&[port], 16, 0, move |c| {
        c.alignment.max_concurrent_decodes = 2;
        c.alignment.max_concurrent_decodes_per_tenant = 1;
        c.alignment.jobs_dir = dir;
    })
    .await;
    let other = seed::tenant(&w.app.db, "Other");
    let other_key = seed::api_key(&w.app.db, &other, "audio:align");
    let decodes = &w.app.state.decodes;

    // The tenant has its one decode running (held here, as a long upload would hold it).
    let held = decodes.try_take(w.tenant.as_str()).unwrap();
    for r in [
        align(&w.app, &w.key, form(wav(2.0, 16_000, 1), "a.wav", "hello there", "en")).await,
        submit_job(&w.app, &w.key, wav(2.0, 16_000, 1), "hello there").await,
    ] {
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_audio_decodes", "{body}");
        assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    }
    // Another tenant still decodes.
    let r = align(&w.app, &other_key, form(wav(2.0, 16_000, 1), "a.wav", "hello there", "en")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(decodes.held_by(other.as_str()), 0, "the slot is freed when the decode ends");

    // The instance has both its decodes running: everyone gets 503.
    let second = decodes.try_take("someone else").unwrap();
    let r = align(&w.app, &other_key, form(wav(2.0, 16_000, 1), "a.wav", "hello there", "en")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "server_error");
    assert_eq!(received(port).await.1, 1, "refused uploads never reached the worker");
    assert_eq!(job_rows(&w.app.db), 0);
    assert!(std::fs::read_dir(jobs_dir.path()).map(|mut d| d.next().is_none()).unwrap_or(true), "no job audio was written");

    drop((held, second));
    let r = submit_job(&w.app, &w.key, wav(2.0, 16_000, 1), "hello there").await;
    assert_eq!(r.status(), 202, "free again once the decodes end");
}
