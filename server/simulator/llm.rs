//! `gatehouse simulate-worker --kind llm`: an OpenAI-compatible worker *simulator* (clearly
//! labelled as such in every response) for development, tests and load benchmarks. It speaks the
//! parts of vLLM's API Gatehouse relies on — `/v1/models`, `/v1/chat/completions`,
//! `/v1/completions` (streaming and not, with `usage`, honouring `stream_options.include_usage`),
//! `/health` and a vLLM-style `/metrics` — with a latency model (time to first token, time per
//! output token, a fixed number of concurrent sequences with a waiting queue), text derived
//! deterministically from the prompt, and fault injection (error rate, hang, slow start, dying
//! mid-stream).
//!
//! `--kind aligner` simulates a Qwen3-ForcedAligner worker instead (`align_simulator`): the batch
//! contract of docs/aligner-contract.md with a batch latency model.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use clap::Args;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Label carried by every response (model `owned_by`, `system_fingerprint`).
pub const SIMULATOR_LABEL: &str = "gatehouse-simulator";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerKind {
    /// OpenAI-compatible LLM server (vLLM-like).
    Llm,
    /// Forced-alignment worker serving `POST /v1/align/batch`.
    Aligner,
}

impl WorkerKind {
    pub fn default_model(self) -> &'static str {
        match self {
            WorkerKind::Llm => "Qwen/Qwen2.5-7B-Instruct",
            WorkerKind::Aligner => "Qwen/Qwen3-ForcedAligner-0.6B",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SimulatorConfig {
    /// What to simulate.
    #[arg(long, value_enum, default_value = "llm")]
    pub kind: WorkerKind,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: String,
    /// Model names served (repeatable; default Qwen/Qwen2.5-7B-Instruct for llm,
    /// Qwen/Qwen3-ForcedAligner-0.6B for aligner).
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Time to first token, milliseconds.
    #[arg(long, default_value_t = 40)]
    pub ttft_ms: u64,
    /// Time per output token after the first, milliseconds.
    #[arg(long, default_value_t = 4)]
    pub tpot_ms: u64,
    /// Sequences generated at once (llm) or batches run at once (aligner); further requests
    /// wait (vLLM's waiting queue).
    #[arg(long, default_value_t = 16)]
    pub max_concurrent: usize,
    /// Aligner: fixed cost of one batch, milliseconds.
    #[arg(long, default_value_t = 150)]
    pub batch_ms: u64,
    /// Aligner: cost per second of the batch's longest item, milliseconds (a batch is padded to
    /// its longest item and its items run in parallel).
    #[arg(long, default_value_t = 20)]
    pub ms_per_audio_second: u64,
    /// Aligner: most items accepted in one batch (more → 413).
    #[arg(long, default_value_t = 64)]
    pub max_batch_items: usize,
    /// Fraction of completion requests answered with a 500 (0.0..=1.0).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Accept requests and never answer (health included).
    #[arg(long)]
    pub hang: bool,
    /// Extra delay before the first byte of every completion, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_start_ms: u64,
    /// Drop the connection after this many streamed tokens.
    #[arg(long)]
    pub die_after_tokens: Option<u32>,
}

impl SimulatorConfig {
    /// Defaults with the given listen address (tests and `gatehouse dev`).
    pub fn llm(listen: &str) -> SimulatorConfig {
        SimulatorConfig {
            kind: WorkerKind::Llm,
            listen: listen.into(),
            models: vec![WorkerKind::Llm.default_model().into()],
            ttft_ms: 40,
            tpot_ms: 4,
            max_concurrent: 16,
            batch_ms: 150,
            ms_per_audio_second: 20,
            max_batch_items: 64,
            error_rate: 0.0,
            hang: false,
            slow_start_ms: 0,
            die_after_tokens: None,
        }
    }

    /// Aligner defaults: one batch at a time (one GPU), 150 ms + 20 ms per audio second.
    pub fn aligner(listen: &str) -> SimulatorConfig {
        SimulatorConfig {
            kind: WorkerKind::Aligner,
            models: vec![WorkerKind::Aligner.default_model().into()],
            max_concurrent: 1,
            ..SimulatorConfig::llm(listen)
        }
    }
}

struct Sim {
    config: SimulatorConfig,
    slots: Semaphore,
    running: AtomicU64,
    waiting: AtomicU64,
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
}

/// A running simulator.
pub struct Simulator {
    pub port: u16,
    pub server: Server,
}

impl Simulator {
    /// Binds and starts serving on the current actix/tokio runtime.
    pub fn start(mut config: SimulatorConfig) -> anyhow::Result<Simulator> {
        if config.models.is_empty() {
            config.models.push(config.kind.default_model().into());
        }
        if config.kind == WorkerKind::Aligner {
            return super::aligner::start(config);
        }
        anyhow::ensure!((0.0..=1.0).contains(&config.error_rate), "--error-rate must be between 0 and 1");
        anyhow::ensure!(config.max_concurrent > 0, "--max-concurrent must be at least 1");
        let listener = TcpListener::bind(&config.listen).map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let port = listener.local_addr()?.port();
        let sim = web::Data::new(Sim {
            slots: Semaphore::new(config.max_concurrent),
            config,
            running: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
        });
        let server = super::serve(listener, move |cfg| {
            cfg.app_data(sim.clone())
                .app_data(web::JsonConfig::default().limit(16 * 1024 * 1024))
                .route("/health", web::get().to(health))
                .route("/metrics", web::get().to(metrics))
                .route("/v1/models", web::get().to(models))
                .route("/v1/chat/completions", web::post().to(|s, b| complete(s, b, Endpoint::Chat)))
                .route("/v1/completions", web::post().to(|s, b| complete(s, b, Endpoint::Text)));
        })?;
        Ok(Simulator { port, server })
    }
}

async fn health(sim: web::Data<Sim>) -> HttpResponse {
    super::hang_if(sim.config.hang).await;
    HttpResponse::Ok().finish()
}

async fn models(sim: web::Data<Sim>) -> HttpResponse {
    super::hang_if(sim.config.hang).await;
    models_response(&sim.config.models)
}

/// `GET /v1/models` of a simulator: its models, owned by the simulator label.
pub(super) fn models_response(models: &[String]) -> HttpResponse {
    let data: Vec<Value> =
        models.iter().map(|m| json!({ "id": m, "object": "model", "created": 1_700_000_000, "owned_by": SIMULATOR_LABEL })).collect();
    HttpResponse::Ok().json(json!({ "object": "list", "data": data }))
}

/// vLLM's gauge names, so load-aware balancing can be exercised without a GPU.
async fn metrics(sim: web::Data<Sim>) -> HttpResponse {
    let model = sim.config.models.first().cloned().unwrap_or_default();
    let body = format!(
        "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{model_name=\"{model}\"}} {running}\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{model_name=\"{model}\"}} {waiting}\n\
         # HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n\
         # TYPE vllm:prompt_tokens_total counter\n\
         vllm:prompt_tokens_total{{model_name=\"{model}\"}} {prompt}\n\
         # HELP vllm:generation_tokens_total Number of generation tokens processed.\n\
         # TYPE vllm:generation_tokens_total counter\n\
         vllm:generation_tokens_total{{model_name=\"{model}\"}} {generation}\n\
         # HELP gatehouse_simulator_requests_total Completion requests received (this is a simulator).\n\
         # TYPE gatehouse_simulator_requests_total counter\n\
         gatehouse_simulator_requests_total {requests}\n",
        running = sim.running.load(Ordering::Relaxed),
        waiting = sim.waiting.load(Ordering::Relaxed),
        prompt = sim.prompt_tokens.load(Ordering::Relaxed),
        generation = sim.generation_tokens.load(Ordering::Relaxed),
        requests = sim.requests.load(Ordering::Relaxed),
    );
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Text,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    #[serde(default)]
    messages: Option<Value>,
    #[serde(default)]
    prompt: Option<Value>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

fn openai_error(status: StatusCode, message: &str, kind: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": { "message": message, "type": kind, "param": null, "code": null } }))
}

/// The prompt as one string: message contents for chat, the prompt for completions.
fn prompt_text(req: &CompletionRequest) -> String {
    fn flatten(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            Value::Object(map) => {
                if let Some(c) = map.get("content").or_else(|| map.get("text")) {
                    flatten(c, out);
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    if let Some(m) = &req.messages {
        flatten(m, &mut out);
    }
    if let Some(p) = &req.prompt {
        flatten(p, &mut out);
    }
    out
}

const VOCABULARY: [&str; 24] = [
    "the",
    "gateway",
    "shares",
    "workers",
    "fairly",
    "between",
    "tenants",
    "and",
    "every",
    "token",
    "is",
    "metered",
    "while",
    "queues",
    "stay",
    "short",
    "so",
    "nobody",
    "starves",
    "under",
    "load",
    "simulated",
    "output",
    "here",
];

/// Deterministic completion: the same prompt and limit always give the same words.
fn generate(prompt: &str, max_tokens: u32) -> (Vec<String>, &'static str) {
    let digest = Sha256::digest(prompt.as_bytes());
    let seed = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
    let natural = 8 + (seed % 56) as u32;
    let n = natural.min(max_tokens.max(1));
    let mut state = seed | 1;
    let mut words = vec!["(simulated)".to_owned()];
    while (words.len() as u32) < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        words.push(VOCABULARY[(state % VOCABULARY.len() as u64) as usize].to_owned());
    }
    words.truncate(n as usize);
    (words, if n < max_tokens { "stop" } else { "length" })
}

async fn complete(sim: web::Data<Sim>, body: web::Bytes, endpoint: Endpoint) -> HttpResponse {
    sim.requests.fetch_add(1, Ordering::Relaxed);
    super::hang_if(sim.config.hang).await;
    let req: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return openai_error(StatusCode::BAD_REQUEST, &format!("invalid request body: {e}"), "invalid_request_error"),
    };
    if !sim.config.models.contains(&req.model) {
        return openai_error(StatusCode::NOT_FOUND, &format!("The model `{}` does not exist.", req.model), "NotFoundError");
    }
    if endpoint == Endpoint::Chat && req.messages.is_none() {
        return openai_error(StatusCode::BAD_REQUEST, "messages is required", "invalid_request_error");
    }
    if sim.config.error_rate > 0.0 && rand::random::<f64>() < sim.config.error_rate {
        return openai_error(StatusCode::INTERNAL_SERVER_ERROR, "simulated worker failure", "InternalServerError");
    }
    let prompt = prompt_text(&req);
    let prompt_tokens = prompt.split_whitespace().count().max(1) as u64;
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(16);
    let (words, finish) = generate(&prompt, max_tokens);

    sim.waiting.fetch_add(1, Ordering::Relaxed);
    let permit = sim.slots.acquire().await;
    sim.waiting.fetch_sub(1, Ordering::Relaxed);
    let Ok(permit) = permit else {
        return openai_error(StatusCode::SERVICE_UNAVAILABLE, "simulator shutting down", "ServiceUnavailableError");
    };
    permit.forget();
    let guard = Running::new(sim.clone());
    sim.prompt_tokens.fetch_add(prompt_tokens, Ordering::Relaxed);

    let id = format!("{}-{}", if endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" }, crate::domain::random_base62(24));
    let created = chrono::Utc::now().timestamp();
    let completion_tokens = words.len() as u64;
    let usage = json!({ "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens });
    let first_delay = Duration::from_millis(sim.config.ttft_ms + sim.config.slow_start_ms);
    let per_token = Duration::from_millis(sim.config.tpot_ms);

    if !req.stream {
        pause(first_delay + per_token * (completion_tokens.saturating_sub(1) as u32)).await;
        sim.generation_tokens.fetch_add(completion_tokens, Ordering::Relaxed);
        drop(guard);
        let text = words.join(" ");
        let choice = match endpoint {
            Endpoint::Chat => {
                json!({ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": finish, "logprobs": null })
            }
            Endpoint::Text => json!({ "index": 0, "text": text, "finish_reason": finish, "logprobs": null }),
        };
        let object = if endpoint == Endpoint::Chat { "chat.completion" } else { "text_completion" };
        return HttpResponse::Ok().json(json!({
            "id": id, "object": object, "created": created, "model": req.model,
            "system_fingerprint": SIMULATOR_LABEL, "choices": [choice], "usage": usage,
        }));
    }

    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let object = if endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = move |delta: Value, finish: Option<&str>, usage: Option<&Value>| -> Bytes {
        let choices = match (endpoint, finish) {
            (_, None) if delta.is_null() => json!([]),
            (Endpoint::Chat, f) => json!([{ "index": 0, "delta": delta, "finish_reason": f, "logprobs": null }]),
            (Endpoint::Text, f) => {
                json!([{ "index": 0, "text": delta.as_str().unwrap_or_default(), "finish_reason": f, "logprobs": null }])
            }
        };
        let mut body = json!({ "id": id, "object": object, "created": created, "model": req.model, "system_fingerprint": SIMULATOR_LABEL, "choices": choices });
        if let Some(u) = usage {
            body["usage"] = u.clone();
        } else if include_usage {
            body["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {body}\n\n"))
    };

    let mut events: Vec<(Duration, Event)> = Vec::new();
    if endpoint == Endpoint::Chat {
        events.push((first_delay, Event::Frame(chunk(json!({ "role": "assistant", "content": "" }), None, None))));
    }
    let mut died = false;
    for (i, word) in words.iter().enumerate() {
        if sim.config.die_after_tokens.is_some_and(|n| i as u32 >= n) {
            events.push((Duration::ZERO, Event::Die));
            died = true;
            break;
        }
        let delay = match (i, endpoint) {
            (0, Endpoint::Text) => first_delay,
            (0, Endpoint::Chat) => Duration::ZERO,
            _ => per_token,
        };
        let text = if i == 0 { word.clone() } else { format!(" {word}") };
        let delta = if endpoint == Endpoint::Chat { json!({ "content": text }) } else { json!(text) };
        let last = i + 1 == words.len();
        events.push((delay, Event::Token(chunk(delta, last.then_some(finish), None))));
    }
    if !died {
        if include_usage {
            events.push((Duration::ZERO, Event::Frame(chunk(Value::Null, None, Some(&usage)))));
        }
        events.push((Duration::ZERO, Event::Frame(Bytes::from_static(b"data: [DONE]\n\n"))));
    }
    let body = stream::unfold((events.into_iter(), guard), |(mut events, guard)| async move {
        let (delay, event) = events.next()?;
        pause(delay).await;
        let item = match event {
            Event::Token(bytes) => {
                guard.sim.generation_tokens.fetch_add(1, Ordering::Relaxed);
                Ok(bytes)
            }
            Event::Frame(bytes) => Ok(bytes),
            Event::Die => Err(std::io::Error::other("simulated worker died mid-stream")),
        };
        Some((item, (events, guard)))
    });
    HttpResponse::Ok().content_type("text/event-stream").insert_header(("Cache-Control", "no-cache")).streaming(body)
}

enum Event {
    Token(Bytes),
    Frame(Bytes),
    Die,
}

/// Holds one of the simulator's sequence slots while a response is generated (or streamed);
/// a client that disconnects drops the stream and frees the slot.
struct Running {
    sim: web::Data<Sim>,
}

impl Running {
    fn new(sim: web::Data<Sim>) -> Running {
        sim.running.fetch_add(1, Ordering::Relaxed);
        Running { sim }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.sim.running.fetch_sub(1, Ordering::Relaxed);
        self.sim.slots.add_permits(1);
    }
}

/// Waits `delay`; no wait at all for zero (a zero `tokio::time::sleep` still waits for the next
/// timer tick, about a millisecond, which would put a floor under every simulated answer).
async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_respects_the_limit() {
        let (a, fa) = generate("hello world", 100);
        let (b, _) = generate("hello world", 100);
        assert_eq!(a, b);
        assert_eq!(a[0], "(simulated)");
        assert!(a.len() <= 63 && fa == "stop");
        let (c, fc) = generate("hello world", 3);
        assert_eq!((c.len(), fc), (3, "length"));
        assert_ne!(generate("another prompt", 100).0, a);
    }
}
