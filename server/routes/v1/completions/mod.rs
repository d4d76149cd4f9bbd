//! `POST /v1/chat/completions` and `POST /v1/completions`: validate before queueing, wait for a
//! fair worker slot in the model's pool, forward, and relay the answer — Server-Sent Events chunk
//! by chunk, never buffered. Gatehouse always asks the worker for the final usage chunk
//! (`stream_options.include_usage`) and strips it when the client did not ask. A client that
//! disconnects drops the relay, which cancels the upstream request and returns the slot. Every
//! finished request yields a usage record, rolled up per minute by the `UsageSink`.

mod relay;
mod screen;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::actors::inference_queue::Outcome;
use crate::actors::quota_accountant::QuotaHold;
use crate::admission::{Admitted, Gate, TenantPolicy, queue_error};
use crate::auth::service::Principal;
use crate::domain::{CHAT_COMPLETIONS, PoolKind, TenantId};
use crate::error::ApiError;
use crate::limits::{Admission, Demand};
use crate::metering::{Amounts, UsageEvent};
use crate::scheduler::Priority;
use crate::state::{AppState, UpstreamClient};
use crate::workers::gateway::PoolRoute;
use relay::Relay;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Text,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Text => "/v1/completions",
        }
    }
}

/// The prompt's text (messages' contents, or the prompt), parts separated by newlines.
fn prompt_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|i| prompt_text(i, out)),
        Value::Object(map) => {
            if let Some(c) = map.get("content").or_else(|| map.get("text")) {
                prompt_text(c, out);
            }
        }
        _ => {}
    }
}

type Body = Result<web::Bytes, actix_web::Error>;

/// `POST /v1/chat/completions`.
pub async fn post_chat_completions(p: Principal, s: web::Data<AppState>, h: Option<web::Data<UpstreamClient>>, b: Body) -> HttpResponse {
    serve(Endpoint::Chat, p, s, h, b).await
}

/// `POST /v1/completions`.
pub async fn post_completions(p: Principal, s: web::Data<AppState>, h: Option<web::Data<UpstreamClient>>, b: Body) -> HttpResponse {
    serve(Endpoint::Text, p, s, h, b).await
}

async fn serve(
    endpoint: Endpoint,
    principal: Principal,
    state: web::Data<AppState>,
    http: Option<web::Data<UpstreamClient>>,
    body: Body,
) -> HttpResponse {
    let mut gate = state.admission.gate(&principal);
    let result = proxy(endpoint, &mut gate, &state, http, body).await;
    gate.respond(result).await
}

/// A checked request: what to forward, and what it may cost.
struct Checked {
    model: String,
    route: Arc<PoolRoute>,
    policy: Arc<TenantPolicy>,
    payload: Bytes,
    stream: bool,
    client_wants_usage: bool,
    /// Prompt characters / 4 + `max_tokens`: what the request reserves until the worker reports.
    estimate: u64,
}

/// Everything short of queueing: the body, the model's route, the plan's caps, the prompt checks.
async fn check(
    endpoint: Endpoint,
    gate: &mut Gate<'_>,
    state: &AppState,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<Checked, ApiError> {
    gate.principal().require(CHAT_COMPLETIONS)?;
    let body = body.map_err(|_| ApiError::body_too_large(state.config.server.max_body_bytes))?;
    let mut request: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", format!("request body is not valid JSON: {e}")))?;
    let obj = request.as_object_mut().ok_or_else(|| ApiError::bad_request("invalid_request", "the request body must be a JSON object"))?;
    let model = obj.get("model").and_then(Value::as_str).ok_or_else(|| ApiError::invalid("model", "`model` is required"))?.to_owned();
    let prompt = match endpoint {
        Endpoint::Chat => obj
            .get("messages")
            .filter(|m| m.as_array().is_some_and(|a| !a.is_empty()))
            .ok_or_else(|| ApiError::invalid("messages", "`messages` must be a non-empty array"))?,
        Endpoint::Text => obj
            .get("prompt")
            .filter(|p| p.is_string() || p.is_array())
            .ok_or_else(|| ApiError::invalid("prompt", "`prompt` is required"))?,
    };
    let mut text = String::new();
    prompt_text(prompt, &mut text);
    let chars = text.chars().count();

    let policy = gate.policy().await?;
    let route = gate.route(&model, PoolKind::Llm).await?;
    if let Some(limit) = policy.max_prompt_chars {
        if chars > limit {
            return Err(ApiError::validation(Some("messages"), format!("the prompt has {chars} characters; this plan allows {limit}")));
        }
    }
    let flagged = screen::screen(endpoint, &text, prompt, &model, &policy, gate.principal())?;
    // The body is forwarded as received unless Gatehouse must add to it (a default `max_tokens`,
    // the usage chunk of a stream): most requests skip re-serialization.
    let mut modified = false;
    // Both length fields are checked against the plan's cap, and the larger is reserved: a
    // worker may honour either (vLLM's legacy completions read only `max_tokens`), so a small
    // `max_completion_tokens` beside a large `max_tokens` must not pass the cap.
    let mut max_tokens = None;
    for key in ["max_tokens", "max_completion_tokens"] {
        let Some(v) = obj.get(key).filter(|v| !v.is_null()) else { continue };
        let n = v.as_u64().filter(|n| *n > 0).ok_or_else(|| ApiError::invalid(key, format!("`{key}` must be a positive integer")))?;
        if let Some(cap) = policy.max_tokens_cap.filter(|cap| n > u64::from(*cap)) {
            return Err(ApiError::validation(Some(key), format!("`{key}` is {n}; this plan allows at most {cap}")));
        }
        max_tokens = max_tokens.max(Some(n as u32));
    }
    let max_tokens = match max_tokens {
        Some(n) => n,
        None => {
            modified = true;
            obj.insert("max_tokens".into(), json!(policy.default_max_tokens));
            policy.default_max_tokens
        }
    };
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let client_wants_usage = obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    if stream && !client_wants_usage {
        modified = true;
        obj.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    let payload = if modified { Bytes::from(serde_json::to_vec(&request).map_err(|e| ApiError::Internal(e.into()))?) } else { body };
    if let Some(event) = flagged {
        state.audit.record(event).await;
    }
    Ok(Checked { model, route, policy, payload, stream, client_wants_usage, estimate: (chars / 4 + max_tokens as usize) as u64 })
}

async fn proxy(
    endpoint: Endpoint,
    gate: &mut Gate<'_>,
    state: &web::Data<AppState>,
    http: Option<web::Data<UpstreamClient>>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let Checked { model, route, policy, payload, stream, client_wants_usage, estimate } = check(endpoint, gate, state, body).await?;
    // Rate limits, then quotas: both reserve the estimate; the usage record reconciles them.
    let Admitted { limits, quota } =
        gate.admit(Demand { tokens: estimate, audio_seconds: 0 }, Amounts { requests: 1, tokens: estimate as i64, audio_ms: 0 }).await?;
    let principal = gate.principal();
    let timeout = Duration::from_secs(state.config.gateway.upstream_timeout_s);

    let mut usage = UsageRecord {
        state: state.clone(),
        tenant: principal.tenant_id.clone(),
        credential: principal.credential_id.clone(),
        model,
        route: route.clone(),
        started,
        queue_wait: Duration::ZERO,
        prompt_tokens: 0,
        completion_tokens: 0,
        status: 0,
        recorded: false,
        usage_reported: false,
        reached_worker: false,
        admission: Some(limits),
        _quota: quota,
    };
    // One retry on another worker, only for connect errors (nothing reached the client yet).
    let mut attempts = 0;
    let (grant, response) = loop {
        attempts += 1;
        let grant = route
            .queue
            .acquire(principal.tenant_id.clone(), policy.weight, Priority::Normal, estimate as f64)
            .await
            .map_err(queue_error)?;
        usage.queue_wait += grant.waited;
        if let Some(m) = &route.metrics {
            m.queue_wait.record(grant.waited.as_secs_f64());
        }
        // This server thread's client (the process-wide one where an application has none).
        let client = http.as_ref().map_or(&state.upstream, |h| &h.0);
        let req = match grant.url(endpoint.path()) {
            Some(url) => client.post(url),
            None => client.post(format!("{}{}", grant.base_url, endpoint.path())),
        };
        let mut req = req.header("content-type", "application/json").body(payload.clone());
        if let Some(key) = &grant.api_key {
            req = req.bearer_auth(key);
        }
        if !stream {
            req = req.timeout(timeout);
        }
        match req.send().await {
            Ok(resp) => {
                usage.reached_worker = true;
                break (grant, resp);
            }
            Err(e) if e.is_connect() && attempts < 2 => {
                upstream_error(&route.pool_name, "connect");
                tracing::warn!(worker.id = %grant.worker_id, error = %e, "worker unreachable; retrying on another worker");
                grant.finish(Outcome::WorkerFailure);
            }
            Err(e) => {
                tracing::warn!(worker.id = %grant.worker_id, error = %e, "worker request failed");
                grant.finish(Outcome::WorkerFailure);
                upstream_error(&route.pool_name, if e.is_timeout() { "timeout" } else { "connect" });
                usage.status = if e.is_timeout() { 504 } else { 502 };
                return Err(if e.is_timeout() {
                    ApiError::UpstreamTimeout
                } else {
                    ApiError::Upstream("the model worker could not be reached".into())
                });
            }
        }
    };

    let status = response.status();
    if status.is_server_error() {
        grant.finish(Outcome::WorkerFailure);
        upstream_error(&route.pool_name, "status");
        usage.status = 502;
        return Err(ApiError::Upstream(format!("the model worker failed ({})", status.as_u16())));
    }
    if !status.is_success() || !stream {
        let bytes = match tokio::time::timeout(timeout, response.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) | Err(_) => {
                grant.finish(Outcome::WorkerFailure);
                upstream_error(&route.pool_name, "timeout");
                usage.status = 504;
                return Err(ApiError::UpstreamTimeout);
            }
        };
        grant.finish(Outcome::Success);
        usage.status = status.as_u16();
        if let Ok(answer) = serde_json::from_slice::<UsageOnly>(&bytes) {
            usage.take_counts(answer.usage);
        }
        return Ok(HttpResponse::build(StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY))
            .content_type("application/json")
            .body(bytes));
    }

    usage.status = 200;
    let heartbeat = Some(Duration::from_millis(state.config.gateway.stream_heartbeat_ms)).filter(|d| !d.is_zero());
    let relay = Relay::new(Box::pin(response.bytes_stream()), !client_wants_usage, grant, usage, timeout, heartbeat);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(relay, |mut relay| async move {
            relay.next_chunk().await.map(|c| (Ok::<_, actix_web::Error>(c), relay))
        })))
}

fn upstream_error(pool: &str, kind: &'static str) {
    metrics::counter!("gatehouse_upstream_errors_total", "pool" => pool.to_owned(), "kind" => kind).increment(1);
}

/// The part of a worker's answer Gatehouse reads; the rest is skipped without being kept.
#[derive(serde::Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<UsageCounts>,
}

#[derive(serde::Deserialize)]
struct UsageCounts {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// The usage of one request, recorded exactly once (also when the client disconnects).
pub(crate) struct UsageRecord {
    state: web::Data<AppState>,
    tenant: TenantId,
    credential: String,
    model: String,
    route: Arc<PoolRoute>,
    started: Instant,
    queue_wait: Duration,
    prompt_tokens: u64,
    completion_tokens: u64,
    status: u16,
    recorded: bool,
    /// The worker reported usage (the reservation can be reconciled to it).
    usage_reported: bool,
    /// The request reached a worker (it may have cost tokens even without a report).
    reached_worker: bool,
    admission: Option<Admission>,
    /// Dropped after the usage is recorded, so the reservation is held until then.
    _quota: Option<QuotaHold>,
}

impl UsageRecord {
    /// The usage a worker reported, from a whole answer or a stream's usage chunk (absent or
    /// unreadable: none reported, so the reservation is kept).
    fn take_counts(&mut self, usage: Option<UsageCounts>) {
        let Some(usage) = usage else { return };
        self.usage_reported = true;
        if let Some(p) = usage.prompt_tokens {
            self.prompt_tokens = p;
        }
        if let Some(c) = usage.completion_tokens {
            self.completion_tokens = c;
        }
    }
}

impl Drop for UsageRecord {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.as_mut() {
            // Reconcile to what the worker reported; nothing was spent when no worker was
            // reached; otherwise (cut off before the usage chunk) keep the reservation.
            if self.usage_reported {
                admission.reconcile(Demand { tokens: self.prompt_tokens + self.completion_tokens, audio_seconds: 0 });
            } else if !self.reached_worker {
                admission.reconcile(Demand::default());
            }
        }
        if self.recorded || self.status == 0 {
            return;
        }
        self.recorded = true;
        let elapsed = self.started.elapsed().as_secs_f64();
        if let Some(m) = &self.route.metrics {
            if self.status == 200 {
                m.duration_ok.record(elapsed);
            } else {
                metrics::histogram!("gatehouse_request_duration_seconds", "pool" => self.route.pool_name.clone(), "model" => self.model.clone(), "status" => self.status.to_string())
                    .record(elapsed);
            }
            m.tokens_in.increment(self.prompt_tokens);
            m.tokens_out.increment(self.completion_tokens);
        }
        self.state.usage.record(UsageEvent {
            tenant_id: self.tenant.clone(),
            credential_id: std::mem::take(&mut self.credential),
            model: std::mem::take(&mut self.model),
            at: chrono::Utc::now(),
            status: self.status,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            audio_ms: 0,
            queue_wait_ms: self.queue_wait.as_millis() as u64,
            latency_ms: self.started.elapsed().as_millis() as u64,
        });
    }
}
