//! Logging and request correlation: the global tracing subscriber (text or JSON, always on stderr
//! so `--json` commands keep stdout clean), the per-request root span with its request id, and the
//! `x-request-id` response header. Nothing here logs headers, bodies, tokens or query strings.

pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// `log.requests_at_debug`: process-wide, like the subscriber it configures.
static REQUESTS_AT_DEBUG: AtomicBool = AtomicBool::new(false);

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any (used in 5xx bodies).
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Installs the global subscriber. `RUST_LOG` wins over `log.filter`. Safe to call twice (the
/// second call is a no-op), so tests and the CLI can both call it.
pub fn init(config: &LogConfig) {
    REQUESTS_AT_DEBUG.store(config.requests_at_debug, Ordering::Relaxed);
    let mut filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.filter)).unwrap_or_else(|_| EnvFilter::new("info"));
    // actix-server narrates its own start and stop at INFO ("starting 2 workers", "force shutdown
    // worker, closing 1 connections" on every clean stop), which reads like trouble; Gatehouse
    // logs its own start and stop. A filter that names actix_server still decides.
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| config.filter.clone());
    if !spec.contains("actix_server") {
        if let Ok(quiet) = "actix_server=warn".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.format {
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(true).flatten_event(true).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

struct RequestStart(Instant);

/// Root span of every request: request id, method, route pattern, peer address, then status
/// and latency when it ends. The query string is deliberately absent (it may carry credentials).
pub struct GatehouseRootSpan;

impl RootSpanBuilder for GatehouseRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(RequestStart(Instant::now()));
        let span = tracing::info_span!(
            "request",
            request_id = tracing::field::Empty,
            http.method = %request.method(),
            http.route = tracing::field::Empty,
            client.address = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
        );
        // The fields are worked out only for a span that is logged (not at `warn`).
        if !span.is_disabled() {
            if let Some(id) = request.extensions().get::<RequestId>() {
                span.record("request_id", tracing::field::display(id));
            }
            span.record("http.route", tracing::field::display(request.match_pattern().as_deref().unwrap_or("unmatched")));
            if let Some(peer) = request.peer_addr() {
                span.record("client.address", tracing::field::display(peer.ip()));
            }
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let _entered = span.enter();
        let (status, latency_ms, probe) = match outcome {
            Ok(response) => {
                let started = response.request().extensions().get::<RequestStart>().map(|s| s.0);
                let status = response.response().status().as_u16();
                let probe = matches!(response.request().path(), "/healthz" | "/readyz" | "/metrics");
                (status, started.map(|s| s.elapsed().as_secs_f64() * 1000.0), probe)
            }
            Err(error) => (error.as_response_error().status_code().as_u16(), None, false),
        };
        span.record("http.status_code", status);
        let latency_ms = latency_ms.unwrap_or_default();
        if probe || REQUESTS_AT_DEBUG.load(Ordering::Relaxed) {
            tracing::debug!(http.status_code = status, latency_ms, "request finished");
        } else if status >= 500 {
            tracing::warn!(http.status_code = status, latency_ms, "request finished");
        } else {
            tracing::info!(http.status_code = status, latency_ms, "request finished");
        }
    }
}

/// Makes the request id available to handlers (`current_request_id`) and returns it to the
/// client as `x-request-id`. Runs inside `TracingLogger`, which generates the id.
pub async fn request_id_middleware(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req.extensions().get::<RequestId>().map(|id| id.to_string()).unwrap_or_default();
    let mut response = REQUEST_ID.scope(id.clone(), next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}
