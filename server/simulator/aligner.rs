//! `gatehouse simulate-worker --kind aligner`: a forced-alignment worker *simulator* (labelled as
//! such in `/v1/models` and every answer's `simulator` field) serving the batch contract of
//! docs/aligner-contract.md, for development, tests and benchmarks.
//!
//! Latency model: a batch costs `--batch-ms` plus `--ms-per-audio-second` for each second of its
//! longest item (a GPU pads a batch to its longest item and runs the items in parallel), and at
//! most `--max-concurrent` batches run at once; later ones wait. Alignments are plausible, not
//! real: the transcript's units (words, or characters for Chinese, Japanese and Cantonese) are
//! spread over the item's real duration in proportion to their length, monotone and inside the
//! audio. `/metrics` counts batch requests and items, so tests can prove what reached the worker.

use std::io::Cursor;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::llm::{SIMULATOR_LABEL, Simulator, SimulatorConfig};
use crate::domain::{AlignedUnit, Unit, language};

struct AlignSim {
    config: SimulatorConfig,
    slots: Semaphore,
    requests: AtomicU64,
    items: AtomicU64,
    largest_batch: AtomicU64,
    running: AtomicU64,
    waiting: AtomicU64,
}

pub(super) fn start(config: SimulatorConfig) -> anyhow::Result<Simulator> {
    anyhow::ensure!((0.0..=1.0).contains(&config.error_rate), "--error-rate must be between 0 and 1");
    anyhow::ensure!(config.max_concurrent > 0, "--max-concurrent must be at least 1");
    anyhow::ensure!(config.max_batch_items > 0, "--max-batch-items must be at least 1");
    let listener = TcpListener::bind(&config.listen).map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let port = listener.local_addr()?.port();
    let sim = web::Data::new(AlignSim {
        slots: Semaphore::new(config.max_concurrent),
        config,
        requests: AtomicU64::new(0),
        items: AtomicU64::new(0),
        largest_batch: AtomicU64::new(0),
        running: AtomicU64::new(0),
        waiting: AtomicU64::new(0),
    });
    let server = super::serve(listener, move |cfg| {
        cfg.app_data(sim.clone())
            .app_data(web::PayloadConfig::new(512 * 1024 * 1024))
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .route("/v1/models", web::get().to(models))
            .route("/v1/align/batch", web::post().to(align_batch));
    })?;
    Ok(Simulator { port, server })
}

async fn health(sim: web::Data<AlignSim>) -> HttpResponse {
    super::hang_if(sim.config.hang).await;
    HttpResponse::Ok().json(json!({ "status": "ok", "simulator": SIMULATOR_LABEL }))
}

async fn models(sim: web::Data<AlignSim>) -> HttpResponse {
    super::hang_if(sim.config.hang).await;
    super::llm::models_response(&sim.config.models)
}

async fn metrics(sim: web::Data<AlignSim>) -> HttpResponse {
    let body = format!(
        "# HELP gatehouse_simulator_requests_total Batch requests received (this is a simulator).\n\
         # TYPE gatehouse_simulator_requests_total counter\n\
         gatehouse_simulator_requests_total {requests}\n\
         # HELP gatehouse_simulator_items_total Items received in batches.\n\
         # TYPE gatehouse_simulator_items_total counter\n\
         gatehouse_simulator_items_total {items}\n\
         # HELP gatehouse_simulator_largest_batch Items in the largest batch received.\n\
         # TYPE gatehouse_simulator_largest_batch gauge\n\
         gatehouse_simulator_largest_batch {largest}\n\
         # HELP gatehouse_simulator_batches_running Batches being aligned.\n\
         # TYPE gatehouse_simulator_batches_running gauge\n\
         gatehouse_simulator_batches_running {running}\n\
         # HELP gatehouse_simulator_batches_waiting Batches waiting for the simulated GPU.\n\
         # TYPE gatehouse_simulator_batches_waiting gauge\n\
         gatehouse_simulator_batches_waiting {waiting}\n",
        requests = sim.requests.load(Ordering::Relaxed),
        items = sim.items.load(Ordering::Relaxed),
        largest = sim.largest_batch.load(Ordering::Relaxed),
        running = sim.running.load(Ordering::Relaxed),
        waiting = sim.waiting.load(Ordering::Relaxed),
    );
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}

#[derive(Deserialize)]
struct BatchAudio {
    format: String,
    data: String,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    audio: BatchAudio,
    text: String,
    language: String,
}

#[derive(Deserialize)]
struct BatchRequest {
    model: String,
    items: Vec<BatchItem>,
}

/// An item's (duration, alignment) or its (error code, message).
type ItemOutcome = Result<(u64, Vec<AlignedUnit>), (&'static str, String)>;

fn batch_error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST))
        .json(json!({ "error": { "code": code, "message": message } }))
}

/// Duration of a base64 WAV item in ms, or the per-item error.
fn wav_duration_ms(audio: &BatchAudio) -> Result<u64, &'static str> {
    if audio.format != "wav" {
        return Err("audio.format must be wav");
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(&audio.data).map_err(|_| "audio.data is not base64")?;
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|_| "not a WAV file")?;
    let spec = reader.spec();
    if spec.sample_rate != 16_000 || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err("the audio must be 16 kHz mono 16-bit PCM");
    }
    Ok(u64::from(reader.duration()) * 1000 / 16_000)
}

/// Spreads the transcript's units over `duration_ms` in proportion to their length: monotone,
/// with a short lead-in and a pause after each unit.
fn plausible_alignment(text: &str, unit: Unit, duration_ms: u64) -> Vec<AlignedUnit> {
    let units: Vec<String> = match unit {
        Unit::Word => text.split_whitespace().map(str::to_owned).collect(),
        Unit::Character => text
            .chars()
            .filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation() && !"，。！？、；：".contains(*c))
            .map(String::from)
            .collect(),
    };
    let weights: Vec<u64> = units.iter().map(|u| u.chars().count().max(1) as u64 + 1).collect();
    let total: u64 = weights.iter().sum::<u64>().max(1);
    let lead = duration_ms / 20;
    let span = duration_ms.saturating_sub(2 * lead);
    let mut at = 0u64;
    units
        .into_iter()
        .zip(weights)
        .map(|(text, w)| {
            let start = lead + span * at / total;
            at += w;
            let next = lead + span * at / total;
            let end = start + (next - start) * 4 / 5;
            AlignedUnit { text, start_ms: start, end_ms: end.max(start) }
        })
        .collect()
}

async fn align_batch(sim: web::Data<AlignSim>, body: web::Bytes) -> HttpResponse {
    sim.requests.fetch_add(1, Ordering::Relaxed);
    super::hang_if(sim.config.hang).await;
    let req: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return batch_error(400, "invalid_request", &format!("the body is not a valid batch: {e}")),
    };
    if !sim.config.models.contains(&req.model) {
        return batch_error(400, "invalid_request", &format!("this worker serves {}, not {}", sim.config.models.join(", "), req.model));
    }
    if req.items.is_empty() || req.items.len() > sim.config.max_batch_items {
        return batch_error(413, "too_many_items", &format!("a batch takes 1 to {} items", sim.config.max_batch_items));
    }
    sim.items.fetch_add(req.items.len() as u64, Ordering::Relaxed);
    sim.largest_batch.fetch_max(req.items.len() as u64, Ordering::Relaxed);
    if sim.config.error_rate > 0.0 && rand::random::<f64>() < sim.config.error_rate {
        return batch_error(500, "alignment_failed", "simulated worker failure");
    }
    let results: Vec<(String, ItemOutcome)> = req
        .items
        .iter()
        .map(|item| {
            let outcome = (|| {
                let duration = wav_duration_ms(&item.audio).map_err(|m| ("invalid_audio", m.to_owned()))?;
                let lang =
                    language(&item.language).ok_or_else(|| ("unsupported_language", format!("unsupported language: {}", item.language)))?;
                if item.text.trim().is_empty() {
                    return Err(("invalid_text", "the transcript is empty".to_owned()));
                }
                Ok((duration, plausible_alignment(&item.text, lang.unit, duration)))
            })();
            (item.id.clone(), outcome)
        })
        .collect();
    let longest = results.iter().filter_map(|(_, r)| r.as_ref().ok().map(|(d, _)| *d)).max().unwrap_or(0);

    sim.waiting.fetch_add(1, Ordering::Relaxed);
    let permit = sim.slots.acquire().await;
    sim.waiting.fetch_sub(1, Ordering::Relaxed);
    let Ok(_permit) = permit else { return batch_error(503, "not_ready", "simulator shutting down") };
    sim.running.fetch_add(1, Ordering::Relaxed);
    let cost = sim.config.batch_ms + sim.config.slow_start_ms + sim.config.ms_per_audio_second * longest / 1000;
    tokio::time::sleep(Duration::from_millis(cost)).await;
    sim.running.fetch_sub(1, Ordering::Relaxed);

    let results: Vec<Value> = results
        .into_iter()
        .map(|(id, r)| match r {
            Ok((duration_ms, items)) => json!({ "id": id, "duration_ms": duration_ms, "items": items }),
            Err((code, message)) => json!({ "id": id, "error": { "code": code, "message": message } }),
        })
        .collect();
    HttpResponse::Ok().json(json!({ "model": req.model, "results": results, "simulator": SIMULATOR_LABEL }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_monotone_and_inside_the_audio() {
        let units = plausible_alignment("the quick brown fox jumps", Unit::Word, 2_000);
        assert_eq!(units.iter().map(|u| u.text.as_str()).collect::<Vec<_>>(), ["the", "quick", "brown", "fox", "jumps"]);
        let mut last = 0;
        for u in &units {
            assert!(u.start_ms >= last && u.end_ms >= u.start_ms && u.end_ms <= 2_000, "{u:?}");
            last = u.end_ms;
        }
        assert!(units[0].start_ms > 0 && units[4].end_ms > 1_500, "spread over the duration: {units:?}");
    }

    #[test]
    fn character_languages_align_characters_without_punctuation() {
        let units = plausible_alignment("你好，世界。", Unit::Character, 1_000);
        assert_eq!(units.iter().map(|u| u.text.as_str()).collect::<Vec<_>>(), ["你", "好", "世", "界"]);
    }
}
