//! `POST /v1/chat/completions` and `POST /v1/completions`: validate before queueing, wait for a
//! fair worker slot in the model's pool, forward, and relay the answer — Server-Sent Events chunk
//! by chunk, never buffered. Gatehouse always asks the worker for the final usage chunk
//! (`stream_options.include_usage`) and strips it when the client did not ask. A client that
//! disconnects drops the relay, which cancels the upstream request and returns the slot. Every
//! finished request yields a usage record, rolled up per minute by the `UsageSink`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpResponse, web};
use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};

use crate::actors::inference_queue::{Grant, Outcome, QueueError};
use crate::domain::{CHAT_COMPLETIONS, TenantId};
use crate::error::ApiError;
use crate::extract::Principal;
use crate::limits::{Admission, CounterState, Demand};
use crate::scheduler::Priority;
use crate::state::{AppState, WorkerHttp};
use crate::usage::{Amounts, QuotaHold};
use crate::workers::gateway::{PoolKind, PoolRoute};

/// Time allowed for a worker's whole answer (non-streaming) or between stream chunks.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

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

fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest { code: "invalid_request", message: message.into(), param: Some(param) }
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

pub async fn post_chat_completions(
    principal: Principal,
    state: web::Data<AppState>,
    http: Option<web::Data<WorkerHttp>>,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    let mut states = Vec::new();
    let result = proxy(Endpoint::Chat, principal, state, http, body, &mut states).await;
    crate::limits::respond(result, &states)
}

pub async fn post_completions(
    principal: Principal,
    state: web::Data<AppState>,
    http: Option<web::Data<WorkerHttp>>,
    body: Result<web::Bytes, actix_web::Error>,
) -> HttpResponse {
    let mut states = Vec::new();
    let result = proxy(Endpoint::Text, principal, state, http, body, &mut states).await;
    crate::limits::respond(result, &states)
}

async fn proxy(
    endpoint: Endpoint,
    principal: Principal,
    state: web::Data<AppState>,
    http: Option<web::Data<WorkerHttp>>,
    body: Result<web::Bytes, actix_web::Error>,
    limit_states: &mut Vec<CounterState>,
) -> Result<HttpResponse, ApiError> {
    principal.require(CHAT_COMPLETIONS)?;
    let started = Instant::now();
    let body = body.map_err(|_| ApiError::PayloadTooLarge { limit: state.config.server.max_body_bytes })?;
    let mut request: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", format!("request body is not valid JSON: {e}")))?;
    let obj = request.as_object_mut().ok_or_else(|| ApiError::bad_request("invalid_request", "the request body must be a JSON object"))?;
    let model = obj.get("model").and_then(Value::as_str).ok_or_else(|| invalid("model", "`model` is required"))?.to_owned();
    let prompt = match endpoint {
        Endpoint::Chat => obj
            .get("messages")
            .filter(|m| m.as_array().is_some_and(|a| !a.is_empty()))
            .ok_or_else(|| invalid("messages", "`messages` must be a non-empty array"))?,
        Endpoint::Text => {
            obj.get("prompt").filter(|p| p.is_string() || p.is_array()).ok_or_else(|| invalid("prompt", "`prompt` is required"))?
        }
    };
    let mut text = String::new();
    prompt_text(prompt, &mut text);
    let chars = text.chars().count();

    let policy = crate::policy::tenant_policy(&state, &principal.tenant_id).await?;
    let not_found = || ApiError::NotFound(format!("The model `{model}` does not exist or you do not have access to it."));
    let route = state.gateway.route(&model).filter(|r| r.kind == PoolKind::Llm && policy.allows(&model)).ok_or_else(not_found)?;
    if let Some(limit) = policy.max_prompt_chars {
        if chars > limit {
            return Err(ApiError::Validation {
                message: format!("the prompt has {chars} characters; this plan allows {limit}"),
                param: Some("messages"),
            });
        }
    }
    // The body is forwarded as received unless Gatehouse must add to it (a default `max_tokens`,
    // the usage chunk of a stream): most requests skip re-serialization.
    let mut modified = false;
    let max_key = if obj.contains_key("max_completion_tokens") { "max_completion_tokens" } else { "max_tokens" };
    let max_tokens = match obj.get(max_key) {
        None | Some(Value::Null) => {
            modified = true;
            obj.insert("max_tokens".into(), json!(policy.default_max_tokens));
            policy.default_max_tokens
        }
        Some(v) => {
            let n = v.as_u64().filter(|n| *n > 0).ok_or_else(|| invalid("max_tokens", "`max_tokens` must be a positive integer"))?;
            if let Some(cap) = policy.max_tokens_cap.filter(|cap| n > u64::from(*cap)) {
                return Err(ApiError::Validation {
                    message: format!("`max_tokens` is {n}; this plan allows at most {cap}"),
                    param: Some("max_tokens"),
                });
            }
            n as u32
        }
    };
    if let Some(pattern) = policy.denied(&text) {
        tracing::info!(pattern = %pattern, "prompt refused by a tenant deny pattern");
        return Err(ApiError::BadRequest {
            code: "prompt_denied",
            message: "the prompt contains content this tenant's policy does not allow".into(),
            param: Some(if endpoint == Endpoint::Chat { "messages" } else { "prompt" }),
        });
    }
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let client_wants_usage = obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    if stream && !client_wants_usage {
        modified = true;
        obj.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    let payload = if modified { Bytes::from(serde_json::to_vec(&request).map_err(|e| ApiError::Internal(e.into()))?) } else { body };
    let estimate = (chars / 4 + max_tokens as usize) as u64;
    let cost = estimate as f64;

    // Rate limits, then quotas: both reserve the estimate; the usage record reconciles them.
    let subject = crate::policy::subject(&state, &principal, &policy).await?;
    let admission = state.limiter.admit_recording(&subject, Demand { tokens: estimate, audio_seconds: 0 }, limit_states).await?;
    let quota = state
        .usage
        .reserve(principal.tenant_id.as_str(), &policy.quotas, Amounts { requests: 1, tokens: estimate as i64, audio_ms: 0 })
        .await
        .map_err(quota_error)?;

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
        admission: Some(admission),
        _quota: quota,
    };
    // One retry on another worker, only for connect errors (nothing reached the client yet).
    let mut attempts = 0;
    let (grant, response) = loop {
        attempts += 1;
        let grant = route.queue.acquire(principal.tenant_id.clone(), policy.weight, Priority::Normal, cost).await.map_err(queue_error)?;
        usage.queue_wait += grant.waited;
        if let Some(m) = &route.metrics {
            m.queue_wait.record(grant.waited.as_secs_f64());
        }
        // This worker thread's client (the process-wide one where an application has none).
        let client = http.as_ref().map_or(&state.http, |h| &h.0);
        let mut req =
            client.post(format!("{}{}", grant.base_url, endpoint.path())).header("content-type", "application/json").body(payload.clone());
        if let Some(key) = &grant.api_key {
            req = req.bearer_auth(key);
        }
        if !stream {
            req = req.timeout(UPSTREAM_TIMEOUT);
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
        let bytes = match tokio::time::timeout(UPSTREAM_TIMEOUT, response.bytes()).await {
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
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            usage.take(&v["usage"]);
        }
        return Ok(HttpResponse::build(StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY))
            .content_type("application/json")
            .body(bytes));
    }

    usage.status = 200;
    let relay = Relay {
        upstream: Box::pin(response.bytes_stream()),
        buffer: BytesMut::new(),
        strip_usage: !client_wants_usage,
        grant: Some(grant),
        usage,
        done: false,
        first_byte_seen: false,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(relay, |mut relay| async move {
            relay.next_chunk().await.map(|c| (Ok::<_, actix_web::Error>(c), relay))
        })))
}

pub(crate) fn quota_error(e: crate::usage::QuotaError) -> ApiError {
    match e {
        crate::usage::QuotaError::Exceeded(message) => {
            ApiError::RateLimited { message, retry_after: crate::limits::MAX_RETRY_AFTER, code: "quota_exceeded" }
        }
        crate::usage::QuotaError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "quota state unavailable");
            ApiError::Unavailable {
                message: "usage quotas cannot be checked right now; retry shortly".into(),
                retry_after: Duration::from_secs(2),
            }
        }
    }
}

fn upstream_error(pool: &str, kind: &'static str) {
    metrics::counter!("gatehouse_upstream_errors_total", "pool" => pool.to_owned(), "kind" => kind).increment(1);
}

pub(crate) fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::TenantQueueFull | QueueError::QueueFull => ApiError::RateLimited {
            message: "the queue for this model is full; retry shortly".into(),
            retry_after: Duration::from_secs(1),
            code: "queue_full",
        },
        QueueError::DeadlineExceeded | QueueError::Closed => ApiError::Unavailable {
            message: "no model worker became available in time; retry shortly".into(),
            retry_after: Duration::from_secs(2),
        },
    }
}

type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>>>>;

/// Upstream frames already received are relayed together, up to this many bytes a write.
const GATHER_MAX_BYTES: usize = 64 * 1024;

/// What one pull from the worker's stream brought.
enum Pulled {
    /// More bytes (possibly no complete event yet).
    Data,
    /// The stream ended after whatever was pulled.
    End,
    /// The stream broke (or stalled past the timeout) after whatever was pulled.
    Failed,
}

/// Relays SSE events as they complete; drops the usage the client did not ask for.
struct Relay {
    upstream: ByteStream,
    buffer: BytesMut,
    strip_usage: bool,
    grant: Option<Grant>,
    usage: UsageRecord,
    done: bool,
    first_byte_seen: bool,
}

impl Relay {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        while !self.done {
            match self.pull().await {
                Pulled::Data => {
                    if let Some(out) = self.take_events().filter(|out| !out.is_empty()) {
                        return Some(out);
                    }
                }
                Pulled::End => {
                    self.done = true;
                    if let Some(g) = self.grant.take() {
                        g.finish(Outcome::Success);
                    }
                    let mut out = BytesMut::from(self.take_events().unwrap_or_default());
                    out.extend_from_slice(&std::mem::take(&mut self.buffer));
                    return (!out.is_empty()).then(|| out.freeze());
                }
                Pulled::Failed => {
                    // The worker died mid-stream: relay the events that did arrive, then end the
                    // client's stream with an error event.
                    self.done = true;
                    if let Some(g) = self.grant.take() {
                        g.finish(Outcome::WorkerFailure);
                    }
                    self.usage.status = 502;
                    upstream_error(&self.usage.route.pool_name, "stream");
                    let mut out = BytesMut::from(self.take_events().unwrap_or_default());
                    let event = json!({ "error": { "message": "the model worker failed mid-stream", "type": "server_error", "param": null, "code": "upstream_error" } });
                    out.extend_from_slice(format!("data: {event}\n\n").as_bytes());
                    return Some(out.freeze());
                }
            }
        }
        None
    }

    /// Waits for the worker's next frame, then takes the frames that are ready at once (a fast
    /// worker sends many events in one TCP segment; hyper hands them over a frame at a time):
    /// they leave in one write instead of a write each. Nothing waits for data not yet there.
    async fn pull(&mut self) -> Pulled {
        match tokio::time::timeout(UPSTREAM_TIMEOUT, self.upstream.next()).await {
            Ok(Some(Ok(bytes))) => {
                if !self.first_byte_seen {
                    self.first_byte_seen = true;
                    if let Some(m) = &self.usage.route.metrics {
                        m.time_to_first_token.record(self.usage.started.elapsed().as_secs_f64());
                    }
                }
                self.buffer.extend_from_slice(&bytes);
            }
            Ok(None) => return Pulled::End,
            Ok(Some(Err(_))) | Err(_) => return Pulled::Failed,
        }
        while self.buffer.len() < GATHER_MAX_BYTES {
            // Let the connection task decode what it has already read, then look without waiting.
            tokio::task::yield_now().await;
            match self.upstream.next().now_or_never() {
                Some(Some(Ok(bytes))) => self.buffer.extend_from_slice(&bytes),
                Some(None) => return Pulled::End,
                Some(Some(Err(_))) => return Pulled::Failed,
                None => break,
            }
        }
        Pulled::Data
    }

    /// Complete events in the buffer, rewritten as needed (possibly to nothing); None when no
    /// event is complete yet.
    fn take_events(&mut self) -> Option<Bytes> {
        let end = find_last(&self.buffer, b"\n\n")? + 2;
        let complete = self.buffer.split_to(end).freeze();
        if find_last(&complete, b"\"usage\"").is_none() {
            // Nothing to record or strip: relay the bytes as they came.
            return Some(complete);
        }
        let text = String::from_utf8_lossy(&complete);
        let mut out = String::with_capacity(text.len());
        for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
            let mut kept = 0;
            for line in event.lines() {
                if let Some(line) = self.rewrite(line) {
                    if kept > 0 {
                        out.push('\n');
                    }
                    out.push_str(&line);
                    kept += 1;
                }
            }
            if kept > 0 {
                out.push_str("\n\n");
            }
        }
        Some(Bytes::from(out))
    }

    /// One SSE line: records usage; drops the usage-only chunk and `usage: null` fields when the
    /// client did not ask for usage. None = drop the line.
    fn rewrite<'a>(&mut self, line: &'a str) -> Option<Cow<'a, str>> {
        let Some(data) = line.strip_prefix("data: ") else { return Some(Cow::Borrowed(line)) };
        // Only chunks that mention usage need a look; the rest pass through unparsed.
        if !data.contains("\"usage\"") {
            return Some(Cow::Borrowed(line));
        }
        // Every chunk but the last carries `"usage":null` (the worker was asked for usage): cut
        // it without a parse when it is the object's last member, as vLLM writes it.
        if let Some(kept) = without_trailing_null_usage(line) {
            return Some(if self.strip_usage { Cow::Owned(kept) } else { Cow::Borrowed(line) });
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else { return Some(Cow::Borrowed(line)) };
        let Some(obj) = v.as_object_mut() else { return Some(Cow::Borrowed(line)) };
        if obj.get("usage").is_some_and(Value::is_object) {
            self.usage.take(&obj["usage"]);
            if self.strip_usage && obj.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty) {
                return None;
            }
        }
        if self.strip_usage && obj.remove("usage").is_some() {
            return Some(Cow::Owned(format!("data: {v}")));
        }
        Some(Cow::Borrowed(line))
    }
}

/// `line` without a trailing `, "usage": null` member of its top-level JSON object (any JSON
/// whitespace around the tokens), or None when it does not end so. The member is top-level:
/// the line's last `}` follows it directly, so no other object closes between them; and a
/// `,` before an unescaped `"` can only stand between members, never inside a string.
fn without_trailing_null_usage(line: &str) -> Option<String> {
    let ws = |s: &str| s.trim_end_matches([' ', '\t', '\r', '\n']).len();
    let mut rest = &line[..ws(line)];
    rest = rest.strip_suffix('}')?;
    let close = rest.len();
    rest = rest[..ws(rest)].strip_suffix("null")?;
    rest = rest[..ws(rest)].strip_suffix(':')?;
    rest = rest[..ws(rest)].strip_suffix("\"usage\"")?;
    rest = rest[..ws(rest)].strip_suffix(',')?;
    Some(format!("{rest}{}", &line[close..]))
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The usage of one request, recorded exactly once (also when the client disconnects).
struct UsageRecord {
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
    fn take(&mut self, usage: &Value) {
        self.usage_reported |= usage.is_object();
        if let Some(p) = usage.get("prompt_tokens").and_then(Value::as_u64) {
            self.prompt_tokens = p;
        }
        if let Some(c) = usage.get("completion_tokens").and_then(Value::as_u64) {
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
        self.state.usage.record(crate::usage::UsageEvent {
            tenant_id: self.tenant.to_string(),
            credential_id: self.credential.clone(),
            model: self.model.clone(),
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

#[cfg(test)]
mod tests {
    use super::without_trailing_null_usage as cut;

    #[test]
    fn a_trailing_null_usage_member_is_cut_without_a_parse() {
        let compact = r#"data: {"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#;
        assert_eq!(cut(compact).as_deref(), Some(r#"data: {"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#));
        // Python's json.dumps spacing, and trailing whitespace after the object.
        let spaced = "data: {\"id\": \"c1\", \"choices\": [], \"usage\": null}  ";
        assert_eq!(cut(spaced).as_deref(), Some("data: {\"id\": \"c1\", \"choices\": []}  "));
        let value: serde_json::Value = serde_json::from_str(&cut(compact).unwrap()["data: ".len()..]).unwrap();
        assert!(value.get("usage").is_none());
    }

    #[test]
    fn anything_else_is_left_to_the_json_path() {
        for line in [
            // usage with a value (the final chunk): it must be read, not cut.
            r#"data: {"choices":[],"usage":{"prompt_tokens":3}}"#,
            // a nested member: the last `}` closes another object first.
            r#"data: {"choices":[{"delta":{"x":1,"usage":null}}]}"#,
            // inside a string, the quotes are escaped.
            r#"data: {"choices":[{"delta":{"content":"a,\"usage\":null}"}}]}"#,
            r#"data: {"content":"a\\","usage":null,"more":1}"#,
            // usage is the only member: no separator to cut with it.
            r#"data: {"usage":null}"#,
            r#"data: {"my_usage":null, "x": "y,\"usage\":null}"}"#,
        ] {
            assert_eq!(cut(line), None, "{line}");
        }
        // An escaped backslash before the closing quote ends the string: the member is real.
        assert_eq!(cut(r#"data: {"content":"a\\","usage":null}"#).as_deref(), Some(r#"data: {"content":"a\\"}"#));
    }
}
