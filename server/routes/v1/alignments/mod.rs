//! Forced alignment under `/v1/audio/alignments` (scope `audio:align`):
//!
//! - `POST /v1/audio/alignments`: multipart `file`, `text`, `language`, optional `model`; answers
//!   `{"model","language","duration_ms","items":[{"text","start_ms","end_ms"}]}`.
//! - `GET /v1/audio/alignments/languages`: the languages the aligner takes.
//! - `POST /v1/audio/alignments/jobs` (`Idempotency-Key`), `GET …/jobs/{id}`, `DELETE …/jobs/{id}`:
//!   the same for long audio, as a durable job (`jobs`, worked on by `crate::jobs::JobRunner`).
//!
//! Everything is checked before anything is queued: the upload's size (the plan's
//! `max_audio_bytes`), a malware scan by `clamd` when `[audio.clamav]` is configured (`malware`),
//! its type by content, a full decode (container, codec, sample rate,
//! channels, duration measured from the stream), the language, and the transcript (length,
//! control characters, words per second). Nothing invalid reaches a worker. Valid audio is
//! re-encoded as 16 kHz mono PCM16 WAV and joins the pool's batching queue (cost = audio seconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;

use crate::actors::inference_queue::{AlignFailure, AlignItem, ItemResult};
use crate::admission::{Admitted, Gate, TenantPolicy, align_failure};
use crate::audio::{Audio, AudioError, AudioLimits};
use crate::domain::{AUDIO_ALIGN, LANGUAGES, Language, PoolKind, Slot, SlotsFull, TenantId, Unit, language};
use crate::error::ApiError;
use crate::extract::Principal;
use crate::limits::Demand;
use crate::metering::{Amounts, UsageEvent};
use crate::scheduler::Priority;
use crate::state::AppState;
use crate::workers::gateway::PoolRoute;

pub mod jobs;
mod malware;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/audio/alignments", web::post().to(post_alignment))
        .route("/audio/alignments/languages", web::get().to(list_languages))
        .route("/audio/alignments/jobs", web::post().to(jobs::post_job))
        .route("/audio/alignments/jobs/{id}", web::get().to(jobs::get_job))
        .route("/audio/alignments/jobs/{id}", web::delete().to(jobs::delete_job));
}

/// `GET /v1/audio/alignments/languages`.
pub async fn list_languages(principal: Principal, state: web::Data<AppState>) -> HttpResponse {
    let gate = state.admission.gate(&principal);
    let result = principal.require(AUDIO_ALIGN).map(|()| {
        let data: Vec<_> = LANGUAGES.iter().map(|l| json!({ "name": l.name, "code": l.code, "unit": l.unit })).collect();
        HttpResponse::Ok().json(json!({ "object": "list", "data": data }))
    });
    gate.respond(result).await
}

/// The form fields of an alignment request.
struct Form {
    file: Vec<u8>,
    text: Option<String>,
    language: Option<String>,
    model: Option<String>,
}

/// A refused upload or field, with the status its problem calls for.
fn input(status: u16, code: &'static str, param: &'static str, message: impl Into<String>) -> ApiError {
    let (message, param) = (message.into(), Some(param));
    match status {
        413 => ApiError::PayloadTooLarge { code, message, param },
        415 => ApiError::UnsupportedMediaType { code, message },
        422 => ApiError::Validation { code, message, param },
        _ => ApiError::BadRequest { code, message, param },
    }
}

/// Reads the multipart form, refusing a file over `max_file` bytes as soon as it gets there.
async fn read_form(req: &HttpRequest, payload: web::Payload, max_file: usize, max_text: usize) -> Result<Form, ApiError> {
    let content_type = req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType {
            code: "unsupported_media_type",
            message: "send the request as multipart/form-data with the fields file, text and language".into(),
        });
    }
    let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
    let mut form = Form { file: Vec::new(), text: None, language: None, model: None };
    let mut seen = std::collections::HashSet::new();
    let malformed =
        |e: actix_multipart::MultipartError| ApiError::bad_request("invalid_multipart", format!("the multipart body is malformed: {e}"));
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or("").to_owned();
        // One of each: a second `file` (or `text`, …) is refused rather than "last one wins".
        if ["file", "text", "language", "model"].contains(&name.as_str()) && !seen.insert(name.clone()) {
            return Err(input(400, "invalid_request", "file", format!("the form field `{name}` appears more than once")));
        }
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
            "file" => form.file = value,
            "text" => form.text = Some(text(value, "text")?),
            "language" => form.language = Some(text(value, "language")?),
            "model" => form.model = Some(text(value, "model")?).filter(|m: &String| !m.trim().is_empty()),
            _ => {} // unknown fields are ignored, like OpenAI's audio routes
        }
    }
    if !seen.contains("file") {
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

/// An alignment request whose form, language, model and transcript are checked; its audio is
/// read but not decoded yet (`decode_slot`, then `decode` or the jobs route's decode to a file).
pub struct Request {
    pub file: Vec<u8>,
    pub text: String,
    /// Words (or characters) in the transcript.
    pub units: usize,
    pub language: &'static Language,
    pub route: Arc<PoolRoute>,
    pub model: String,
    pub policy: Arc<TenantPolicy>,
    /// The bounds the decode applies.
    pub limits: AudioLimits,
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

pub fn audio_error(e: AudioError, jobs_hint: bool) -> ApiError {
    let code = match e {
        AudioError::Output(cause) => return ApiError::Internal(anyhow::anyhow!("decoded audio not stored: {cause}")),
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

/// Reads and checks an alignment request, all but its audio: the form (the file up to the
/// plan's size), language, model and transcript.
pub async fn read_request(
    gate: &mut Gate<'_>,
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    max_duration_ms: u64,
) -> Result<Request, ApiError> {
    gate.principal().require(AUDIO_ALIGN)?;
    let cfg = &state.config.alignment;
    let policy = gate.policy().await?;
    let max_file = usize::try_from(policy.max_audio_bytes).unwrap_or(usize::MAX).max(1);
    let form = read_form(req, payload, max_file, cfg.max_transcript_chars.saturating_mul(4)).await?;
    malware::scan_upload(state, gate.principal(), req.path(), &form.file).await?;

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
        None => gate.default_model(PoolKind::Aligner).await?,
    };
    let route = gate.route(&model, PoolKind::Aligner).await?;

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
    Ok(Request { file: form.file, text, units, language, route, model, policy, limits })
}

/// A slot to decode one upload of this tenant's, taken once its body is read (a slow upload
/// holds none) and held until the decode ends. Refused at once, never queued: 429 when the
/// tenant has `alignment.max_concurrent_decodes_per_tenant` decodes running on this instance,
/// 503 when the instance has `alignment.max_concurrent_decodes`.
pub fn decode_slot(state: &AppState, tenant: &TenantId) -> Result<Slot, ApiError> {
    const RETRY_AFTER: Duration = Duration::from_secs(2);
    state.decodes.try_take(tenant.as_str()).map_err(|full| match full {
        SlotsFull::Key => ApiError::RateLimited {
            message: format!("this tenant has {} audio uploads being decoded already; retry when one finishes", state.decodes.per_key()),
            retry_after: RETRY_AFTER,
            code: "too_many_audio_decodes",
        },
        SlotsFull::Total => ApiError::Unavailable {
            message: "the server is decoding as many audio uploads as it takes at once; retry shortly".into(),
            retry_after: RETRY_AFTER,
        },
    })
}

/// The transcript has no more units than `max_words_per_second` (or characters) allow for
/// audio of `duration_ms`.
pub fn check_plausible(state: &AppState, units: usize, language: &Language, duration_ms: u64) -> Result<(), ApiError> {
    let cfg = &state.config.alignment;
    let seconds = duration_ms as f64 / 1000.0;
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
    Ok(())
}

/// Reads, decodes (in memory: the synchronous route's audio is short) and checks an alignment
/// request: everything short of queueing it.
async fn check(gate: &mut Gate<'_>, state: &AppState, req: &HttpRequest, payload: web::Payload) -> Result<Checked, ApiError> {
    let max_ms = state.config.alignment.max_duration_s * 1000;
    let Request { file, text, units, language, route, model, policy, limits } = read_request(gate, state, req, payload, max_ms).await?;
    let slot = decode_slot(state, &gate.principal().tenant_id)?;
    let audio = web::block(move || {
        let _slot = slot;
        crate::audio::decode(&file, &limits)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("audio decoding task failed: {e}")))?
    .map_err(|e| audio_error(e, true))?;
    check_plausible(state, units, language, audio.duration_ms())?;
    Ok(Checked { audio, text, language, route, model, policy })
}

/// `POST /v1/audio/alignments`.
pub async fn post_alignment(principal: Principal, state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let mut gate = state.admission.gate(&principal);
    let result = align(&mut gate, &state, req, payload).await;
    gate.respond(result).await
}

async fn align(gate: &mut Gate<'_>, state: &AppState, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let Checked { audio, text, language, route, model, policy } = check(gate, state, &req, payload).await?;
    let audio_ms = audio.duration_ms();
    let demand = Demand { tokens: 0, audio_seconds: audio_ms.div_ceil(1000) };
    let Admitted { limits: mut admission, quota: _quota } =
        gate.admit(demand, Amounts { requests: 1, tokens: 0, audio_ms: audio_ms as i64 }).await?;

    let principal = gate.principal();
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
    state.usage.record(UsageEvent::alignment(&principal.tenant_id, &principal.credential_id, &model, status, billed, waited, started));
    match outcome.map_err(align_failure)?.result {
        ItemResult::Aligned { items, .. } => Ok(HttpResponse::Ok().json(json!({
            "model": model,
            "language": language.name,
            "duration_ms": audio_ms,
            "items": items,
        }))),
        ItemResult::Refused { code, message } => Err(ApiError::Validation {
            code: "alignment_failed",
            message: format!("the aligner could not align this audio ({code}): {message}"),
            param: None,
        }),
    }
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
