//! Forced alignment on aligner workers: the executor that sends each batch formed by an aligner
//! pool's `InferenceQueue` as one `POST {worker}/v1/align/batch` (docs/aligner-contract.md) and fans the results
//! back to the waiting requests. One bad item fails only itself; a failed batch fails its items.

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::actors::inference_queue::{AlignDone, AlignFailure, Batch, ItemResult, Outcome};
use crate::domain::AlignedUnit;

/// Time allowed for a batch: a fixed part plus one second per second of audio in it.
fn batch_timeout(audio_ms: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(audio_ms)
}

#[derive(Serialize)]
struct WireAudio {
    format: &'static str,
    data: String,
}

#[derive(Serialize)]
struct WireItem<'a> {
    id: String,
    audio: WireAudio,
    text: &'a str,
    language: &'a str,
}

#[derive(Serialize)]
struct WireBatch<'a> {
    model: &'a str,
    items: Vec<WireItem<'a>>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct WireResult {
    id: String,
    #[serde(default)]
    duration_ms: u64,
    items: Option<Vec<AlignedUnit>>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireResponse {
    results: Vec<WireResult>,
}

/// Runs a pool's batches as they are formed, each as its own task, until the pool's queue stops.
pub async fn run_executor(http: reqwest::Client, pool: String, mut batches: mpsc::UnboundedReceiver<Batch>) {
    while let Some(batch) = batches.recv().await {
        actix_rt::spawn(send_batch(http.clone(), pool.clone(), batch));
    }
}

async fn send_batch(http: reqwest::Client, pool: String, batch: Batch) {
    let Batch { grant, entries } = batch;
    let size = entries.len();
    let (outcome, mut results) = call_worker(&http, &grant.base_url, grant.api_key.as_deref(), &entries).await;
    if let Err(e) = &results {
        tracing::warn!(worker.id = %grant.worker_id, pool = %pool, items = size, error = %e, "alignment batch failed");
        let kind = if *e == AlignFailure::Timeout { "timeout" } else { "batch" };
        metrics::counter!("gatehouse_upstream_errors_total", "pool" => pool.clone(), "kind" => kind).increment(1);
    }
    let worker_id = grant.worker_id.to_string();
    grant.finish(outcome);
    for (i, entry) in entries.into_iter().enumerate() {
        let reply = match &mut results {
            Ok(by_index) => match by_index.get_mut(i).and_then(Option::take) {
                Some(result) => Ok(AlignDone { result, waited: entry.waited, batch_size: size, worker_id: worker_id.clone() }),
                None => Err(AlignFailure::Worker("the worker returned no result for this item".into())),
            },
            Err(e) => Err(e.clone()),
        };
        let _ = entry.reply.send(reply);
    }
}

/// One batch request; results in the entries' order.
async fn call_worker(
    http: &reqwest::Client,
    base_url: &str,
    api_key: Option<&str>,
    entries: &[crate::actors::inference_queue::BatchEntry],
) -> (Outcome, Result<Vec<Option<ItemResult>>, AlignFailure>) {
    let Some(model) = entries.first().map(|e| e.item.model.clone()) else { return (Outcome::Abandoned, Ok(Vec::new())) };
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = WireBatch {
        model: &model,
        items: entries
            .iter()
            .enumerate()
            .map(|(i, e)| WireItem {
                id: format!("itm_{i}"),
                audio: WireAudio { format: "wav", data: b64.encode(&e.item.wav) },
                text: &e.item.text,
                language: e.item.language,
            })
            .collect(),
    };
    let audio_ms = entries.iter().map(|e| e.item.audio_ms).sum();
    let mut req = http.post(format!("{base_url}/v1/align/batch")).timeout(batch_timeout(audio_ms)).json(&body);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    drop(body);
    let response = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return (Outcome::WorkerFailure, Err(AlignFailure::Timeout)),
        Err(_) => return (Outcome::WorkerFailure, Err(AlignFailure::Worker("the worker could not be reached".into()))),
    };
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) if e.is_timeout() => return (Outcome::WorkerFailure, Err(AlignFailure::Timeout)),
        Err(_) => return (Outcome::WorkerFailure, Err(AlignFailure::Worker("the worker's answer broke off".into()))),
    };
    if status.is_server_error() {
        return (Outcome::WorkerFailure, Err(AlignFailure::Worker(format!("status {}", status.as_u16()))));
    }
    if !status.is_success() {
        // The worker is alive but refused the batch as a whole: a contract mismatch.
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return (Outcome::Success, Err(AlignFailure::Worker(format!("the batch was refused ({}): {detail}", status.as_u16()))));
    }
    let Ok(parsed) = serde_json::from_slice::<WireResponse>(&bytes) else {
        return (Outcome::WorkerFailure, Err(AlignFailure::Worker("the worker's answer is not a batch result".into())));
    };
    let mut by_index: Vec<Option<ItemResult>> = vec![None; entries.len()];
    for r in parsed.results {
        let Some(i) = r.id.strip_prefix("itm_").and_then(|i| i.parse::<usize>().ok()).filter(|i| *i < entries.len()) else { continue };
        by_index[i] = Some(match (r.items, r.error) {
            (_, Some(e)) => ItemResult::Refused { code: e.code, message: e.message },
            (Some(mut items), None) => {
                items.sort_by_key(|u| u.start_ms);
                ItemResult::Aligned { duration_ms: r.duration_ms, items }
            }
            (None, None) => {
                ItemResult::Refused { code: "alignment_failed".into(), message: "the worker returned neither items nor an error".into() }
            }
        });
    }
    (Outcome::Success, Ok(by_index))
}
