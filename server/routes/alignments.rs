//! Forced alignment under `/v1/audio/alignments` (scope `audio:align`):
//!
//! - `POST /v1/audio/alignments`: multipart `file`, `text`, `language`, optional `model`; answers
//!   `{"model","language","duration_ms","items":[{"text","start_ms","end_ms"}]}`.
//! - `GET /v1/audio/alignments/languages`: the languages the aligner takes.
//! - `POST /v1/audio/alignments/jobs` (`Idempotency-Key`), `GET …/jobs/{id}`, `DELETE …/jobs/{id}`:
//!   the same for long audio, as a durable job (`crate::jobs`).
//!
//! Everything is checked before anything is queued: the upload's size (the plan's
//! `max_audio_bytes`), its type by content, a full decode (container, codec, sample rate,
//! channels, duration measured from the stream), the language, and the transcript (length,
//! control characters, words per second). Nothing invalid reaches a worker. Valid audio is
//! re-encoded as 16 kHz mono PCM16 WAV and joins the pool's batching queue (cost = audio seconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;

use crate::audio::{Audio, AudioError, AudioLimits};
use crate::domain::{AUDIO_ALIGN, TenantId};
use crate::error::ApiError;
use crate::extract::Principal;
use crate::limits::{CounterState, Demand};
use crate::policy::TenantPolicy;
use crate::scheduler::Priority;
use crate::state::AppState;
use crate::usage::Amounts;
use crate::workers::aligner::{AlignFailure, AlignItem, ItemResult, LANGUAGES, Language, Unit, language};
use crate::workers::gateway::{PoolKind, PoolRoute};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/audio/alignments", web::post().to(post_alignment))
        .route("/audio/alignments/languages", web::get().to(list_languages))
        .route("/audio/alignments/jobs", web::post().to(crate::jobs::post_job))
        .route("/audio/alignments/jobs/{id}", web::get().to(crate::jobs::get_job))
        .route("/audio/alignments/jobs/{id}", web::delete().to(crate::jobs::delete_job));
}

/// `GET /v1/audio/alignments/languages`.
pub async fn list_languages(principal: Principal) -> Result<HttpResponse, ApiError> {
    principal.require(AUDIO_ALIGN)?;
    let data: Vec<_> = LANGUAGES.iter().map(|l| json!({ "name": l.name, "code": l.code, "unit": l.unit })).collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}

/// The form fields of an alignment request.
struct Form {
    file: Vec<u8>,
    text: Option<String>,
    language: Option<String>,
    model: Option<String>,
}

fn input(status: u16, code: &'static str, param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Input { status, code, message: message.into(), param: Some(param) }
}

/// Reads the multipart form, refusing a file over `max_file` bytes as soon as it gets there.
async fn read_form(req: &HttpRequest, payload: web::Payload, max_file: usize, max_text: usize) -> Result<Form, ApiError> {
    let content_type = req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType(
            "send the request as multipart/form-data with the fields file, text and language".into(),
        ));
    }
    let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
    let mut form = Form { file: Vec::new(), text: None, language: None, model: None };
    let mut saw_file = false;
    let malformed =
        |e: actix_multipart::MultipartError| ApiError::bad_request("invalid_multipart", format!("the multipart body is malformed: {e}"));
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or("").to_owned();
        let (limit, what) = match name.as_str() {
            "file" => (max_file, "file"),
            "text" => (max_text, "text"),
            "language" | "model" => (1024, "field"),
            _ => (64 * 1024, "field"),
        };
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(malformed)?;
            if value.len() + chunk.len() > limit {
                return Err(match what {
                    "file" => {
                        input(413, "file_too_large", "file", format!("the audio file is larger than this plan's limit of {limit} bytes"))
                    }
                    "text" => input(413, "transcript_too_long", "text", format!("the transcript is larger than {limit} bytes")),
                    _ => input(400, "invalid_request", "file", format!("the form field `{name}` is too long")),
                });
            }
            value.extend_from_slice(&chunk);
        }
        let text = |v: Vec<u8>, param: &'static str| {
            String::from_utf8(v).map_err(|_| input(400, "invalid_request", param, format!("`{param}` must be UTF-8 text")))
        };
        match name.as_str() {
            "file" => {
                saw_file = true;
                form.file = value;
            }
            "text" => form.text = Some(text(value, "text")?),
            "language" => form.language = Some(text(value, "language")?),
            "model" => form.model = Some(text(value, "model")?).filter(|m: &String| !m.trim().is_empty()),
            _ => {} // unknown fields are ignored, like OpenAI's audio routes
        }
    }
    if !saw_file {
        return Err(input(400, "invalid_request", "file", "`file` is required: the audio to align"));
    }
    Ok(form)
}

/// Control characters become spaces, runs of whitespace one space.
pub fn clean_transcript(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Units the aligner will return: words, or characters for CJK languages.
pub fn count_units(text: &str, unit: Unit) -> usize {
    match unit {
        Unit::Word => text.split_whitespace().count(),
        Unit::Character => text.chars().filter(|c| c.is_alphanumeric()).count(),
    }
}

/// A checked alignment request, ready to queue.
pub struct Checked {
    pub audio: Audio,
    pub text: String,
    pub language: &'static Language,
    pub route: Arc<PoolRoute>,
    pub model: String,
    pub policy: Arc<TenantPolicy>,
}

fn audio_error(e: AudioError, jobs_hint: bool) -> ApiError {
    let code = match e {
        AudioError::Empty => "empty_file",
        AudioError::TooLarge { .. } => "file_too_large",
        AudioError::UnsupportedType => "unsupported_audio_type",
        AudioError::UnsupportedCodec { .. } => "unsupported_codec",
        AudioError::Corrupt { .. } => "invalid_audio",
        AudioError::BadSampleRate { .. } => "invalid_sample_rate",
        AudioError::BadChannels { .. } => "invalid_channels",
        AudioError::TooShort { .. } => "audio_too_short",
        AudioError::TooLong { .. } => "audio_too_long",
    };
    let mut message = e.to_string();
    if jobs_hint && matches!(e, AudioError::TooLong { .. }) {
        message.push_str("; send longer audio to POST /v1/audio/alignments/jobs");
    }
    input(e.status(), code, "file", message)
}

/// Reads and checks an alignment request: everything short of queueing it.
pub async fn check(
    principal: &Principal,
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    max_duration_ms: u64,
    for_job: bool,
) -> Result<Checked, ApiError> {
    principal.require(AUDIO_ALIGN)?;
    let cfg = &state.config.alignment;
    let policy = crate::policy::tenant_policy(state, &principal.tenant_id).await?;
    let max_file = usize::try_from(policy.max_audio_bytes).unwrap_or(usize::MAX).max(1);
    let form = read_form(req, payload, max_file, cfg.max_transcript_chars.saturating_mul(4)).await?;

    let language_input = form.language.as_deref().map(str::trim).filter(|l| !l.is_empty());
    let language_input = language_input.ok_or_else(|| {
        input(400, "invalid_request", "language", "`language` is required (a name such as English, or a code such as en)")
    })?;
    let language = language(language_input).ok_or_else(|| {
        input(
            400,
            "unsupported_language",
            "language",
            format!("`{language_input}` is not a supported language; see GET /v1/audio/alignments/languages"),
        )
    })?;
    let model = match &form.model {
        Some(m) => m.trim().to_owned(),
        None => state
            .gateway
            .models(PoolKind::Aligner)
            .into_iter()
            .find(|m| policy.allows(m))
            .ok_or_else(|| ApiError::NotFound("no alignment model is available to this credential".into()))?,
    };
    let not_found = || ApiError::NotFound(format!("The model `{model}` does not exist or you do not have access to it."));
    let route = state.gateway.route(&model).filter(|r| r.kind == PoolKind::Aligner && policy.allows(&model)).ok_or_else(not_found)?;

    let raw_text = form.text.ok_or_else(|| input(400, "invalid_request", "text", "`text` is required: the transcript to align"))?;
    let text = clean_transcript(&raw_text);
    if text.is_empty() {
        return Err(input(400, "invalid_request", "text", "the transcript is empty"));
    }
    let chars = text.chars().count();
    if chars > cfg.max_transcript_chars {
        return Err(input(
            413,
            "transcript_too_long",
            "text",
            format!("the transcript has {chars} characters; the limit is {}", cfg.max_transcript_chars),
        ));
    }
    let units = count_units(&text, language.unit);
    if units == 0 {
        return Err(input(400, "invalid_request", "text", "the transcript has no words to align"));
    }

    let limits = AudioLimits { max_bytes: max_file, max_duration_ms, ..AudioLimits::default() };
    let file = form.file;
    let audio = web::block(move || crate::audio::decode(&file, &limits))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("audio decoding task failed: {e}")))?
        .map_err(|e| audio_error(e, !for_job))?;

    let seconds = audio.duration_ms() as f64 / 1000.0;
    let (rate, per) = match language.unit {
        Unit::Word => (cfg.max_words_per_second, "words"),
        Unit::Character => (cfg.max_chars_per_second, "characters"),
    };
    if units as f64 > rate * seconds.max(1.0) + 3.0 {
        return Err(input(
            422,
            "implausible_transcript",
            "text",
            format!("the transcript has {units} {per} for {seconds:.1} s of audio; at most {rate} {per} per second are plausible"),
        ));
    }
    Ok(Checked { audio, text, language, route, model, policy })
}

/// `POST /v1/audio/alignments`.
pub async fn post_alignment(principal: Principal, state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let mut states = Vec::new();
    let result = align(principal, state, req, payload, &mut states).await;
    crate::limits::respond(result, &states)
}

async fn align(
    principal: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    limit_states: &mut Vec<CounterState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let max_ms = state.config.alignment.max_duration_s * 1000;
    let checked = check(&principal, &state, &req, payload, max_ms, false).await?;
    let Checked { audio, text, language, route, model, policy } = checked;
    let audio_ms = audio.duration_ms();

    let subject = crate::policy::subject(&state, &principal, &policy).await?;
    let demand = Demand { tokens: 0, audio_seconds: audio_ms.div_ceil(1000) };
    let mut admission = state.limiter.admit_recording(&subject, demand, limit_states).await?;
    let _quota = state
        .usage
        .reserve(principal.tenant_id.as_str(), &policy.quotas, Amounts { requests: 1, tokens: 0, audio_ms: audio_ms as i64 })
        .await
        .map_err(super::completions::quota_error)?;

    let item = AlignItem { model: Arc::from(model.as_str()), wav: audio.to_wav().into(), text, language: language.name, audio_ms };
    let outcome = route.queue.align(principal.tenant_id.clone(), policy.weight, Priority::Normal, item).await;
    let (status, billed, waited) = match &outcome {
        Ok(done) => match done.result {
            ItemResult::Aligned { .. } => (200, audio_ms, done.waited),
            ItemResult::Refused { .. } => (422, 0, done.waited),
        },
        Err(AlignFailure::Queue(_)) => (503, 0, Duration::ZERO),
        Err(AlignFailure::Timeout) => (504, 0, Duration::ZERO),
        Err(AlignFailure::Worker(_)) => (502, 0, Duration::ZERO),
    };
    admission.reconcile(Demand { tokens: 0, audio_seconds: billed.div_ceil(1000) });
    record_usage(&state, &principal.tenant_id, &principal.credential_id, &model, status, billed, waited, started);
    match outcome.map_err(align_failure)?.result {
        ItemResult::Aligned { items, .. } => Ok(HttpResponse::Ok().json(json!({
            "model": model,
            "language": language.name,
            "duration_ms": audio_ms,
            "items": items,
        }))),
        ItemResult::Refused { code, message } => Err(ApiError::Input {
            status: 422,
            code: "alignment_failed",
            message: format!("the aligner could not align this audio ({code}): {message}"),
            param: None,
        }),
    }
}

/// An alignment that got no answer from a worker, in the caller's protocol.
pub fn align_failure(e: AlignFailure) -> ApiError {
    match e {
        AlignFailure::Queue(q) => super::completions::queue_error(q),
        AlignFailure::Timeout => ApiError::UpstreamTimeout,
        AlignFailure::Worker(m) => ApiError::Upstream(format!("the aligner worker failed: {m}")),
    }
}

/// One usage record for aligned audio (`audio_ms` is what is billed: 0 unless aligned).
#[allow(clippy::too_many_arguments)]
pub fn record_usage(
    state: &AppState,
    tenant: &TenantId,
    credential: &str,
    model: &str,
    status: u16,
    audio_ms: u64,
    waited: Duration,
    started: Instant,
) {
    metrics::counter!("gatehouse_audio_seconds_total", "model" => model.to_owned()).increment(audio_ms / 1000);
    state.usage.record(crate::usage::UsageEvent {
        tenant_id: tenant.to_string(),
        credential_id: credential.to_owned(),
        model: model.to_owned(),
        at: chrono::Utc::now(),
        status,
        prompt_tokens: 0,
        completion_tokens: 0,
        audio_ms,
        queue_wait_ms: waited.as_millis() as u64,
        latency_ms: started.elapsed().as_millis() as u64,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_lose_control_characters_and_extra_space() {
        assert_eq!(clean_transcript("  hello\u{0}\tworld\r\n\u{7}again  "), "hello world again");
        assert_eq!(clean_transcript("\u{1}\u{2}"), "");
    }

    #[test]
    fn units_are_words_or_characters() {
        assert_eq!(count_units("the quick brown fox", Unit::Word), 4);
        assert_eq!(count_units("你好，世界。", Unit::Character), 4);
    }
}
