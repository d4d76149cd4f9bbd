//! Relaying a worker's Server-Sent Events to the client: frames that have already arrived leave
//! in one write, events without usage pass through as raw bytes, and the usage the client did not
//! ask for is cut (the trailing `"usage":null` without a JSON parse). A worker that dies or
//! stalls mid-stream ends the client's stream with an error event.

use std::borrow::Cow;
use std::time::Duration;

use actix_web::web::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{UsageCounts, UsageRecord, upstream_error};
use crate::actors::inference_queue::{Grant, Outcome};

pub(super) type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>>>>;

/// Upstream frames already received are relayed together, up to this many bytes a write.
const GATHER_MAX_BYTES: usize = 64 * 1024;

/// What one pull from the worker's stream brought.
enum Pulled {
    /// Nothing for a heartbeat interval: time for a keep-alive comment.
    Idle,
    /// More bytes (possibly no complete event yet).
    Data,
    /// The stream ended after whatever was pulled.
    End,
    /// The stream broke (or stalled past the timeout) after whatever was pulled.
    Failed,
}

/// Relays SSE events as they complete; drops the usage the client did not ask for.
pub(super) struct Relay {
    upstream: ByteStream,
    buffer: BytesMut,
    strip_usage: bool,
    grant: Option<Grant>,
    usage: UsageRecord,
    /// Longest wait for the worker's next frame.
    timeout: Duration,
    /// Longest quiet time towards the client before a keep-alive comment (None: never).
    heartbeat: Option<Duration>,
    /// When the worker's last frame arrived (the stall timeout counts from it).
    last_frame: tokio::time::Instant,
    done: bool,
    first_byte_seen: bool,
}

impl Relay {
    pub(super) fn new(
        upstream: ByteStream,
        strip_usage: bool,
        grant: Grant,
        usage: UsageRecord,
        timeout: Duration,
        heartbeat: Option<Duration>,
    ) -> Relay {
        Relay {
            upstream,
            buffer: BytesMut::new(),
            strip_usage,
            grant: Some(grant),
            usage,
            timeout,
            heartbeat,
            last_frame: tokio::time::Instant::now(),
            done: false,
            first_byte_seen: false,
        }
    }

    pub(super) async fn next_chunk(&mut self) -> Option<Bytes> {
        while !self.done {
            match self.pull().await {
                // An SSE comment: clients skip it, and writing it is how a departed client is
                // noticed (the write fails, the relay is dropped, the worker's request cancelled).
                Pulled::Idle => return Some(Bytes::from_static(b": keep-alive\n\n")),
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
        let stall_at = self.last_frame + self.timeout;
        let wake_at = match self.heartbeat {
            Some(beat) => stall_at.min(tokio::time::Instant::now() + beat),
            None => stall_at,
        };
        match tokio::time::timeout_at(wake_at, self.upstream.next()).await {
            Err(_) if wake_at < stall_at => return Pulled::Idle,
            Ok(Some(Ok(bytes))) => {
                self.last_frame = tokio::time::Instant::now();
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
        if let Some(usage) = obj.get("usage").filter(|u| u.is_object()) {
            self.usage.take_counts(UsageCounts::deserialize(usage).ok());
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
