//! Aligning one job chunk by chunk (the scheme is described in `jobs`): where a chunk ends, which
//! transcript units it gets, which aligned units are kept, and the saved progress after each.
//! Each chunk's audio is read from the job's file when its turn comes (`read_chunk`): the runner
//! holds one chunk at a time, never the recording.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{JobEnd, JobRunner, Params, Progress};
use crate::actors::inference_queue::{AlignFailure, AlignItem, ItemResult};
use crate::audio::WavFileReader;
use crate::db::jobs::{self, Job};
use crate::domain::{AlignedUnit, TenantId, Unit, language};
use crate::metering::UsageEvent;
use crate::scheduler::Priority;

/// Retries of a chunk whose worker failed, before the job fails.
const CHUNK_ATTEMPTS: u32 = 4;

/// How many chunks audio of `duration_ms` takes at most, with calls of at most `ceiling_ms`.
pub fn chunks_for(duration_ms: u64, ceiling_ms: u64) -> i32 {
    duration_ms.div_ceil(chunk_stride(ceiling_ms)).max(1) as i32
}

/// Audio a chunk advances the job by, at least (the chunk minus its guard band).
fn chunk_stride(ceiling_ms: u64) -> u64 {
    ceiling_ms.saturating_sub(guard_ms(ceiling_ms)).max(1)
}

fn guard_ms(chunk_ms: u64) -> u64 {
    (chunk_ms / 10).max(2_000).min(chunk_ms / 2)
}

/// The transcript's units and how they are joined back into text.
fn units(text: &str, unit: Unit) -> (Vec<String>, &'static str) {
    match unit {
        Unit::Word => (text.split_whitespace().map(str::to_owned).collect(), " "),
        Unit::Character => (text.chars().filter(|c| c.is_alphanumeric()).map(String::from).collect(), ""),
    }
}

/// Why a job ended without a result.
fn job_error(code: &str, message: impl Into<String>) -> Value {
    json!({ "code": code, "message": message.into() })
}

impl JobRunner {
    pub(super) async fn align_job(&self, job: &Job) -> JobEnd {
        let Ok(params) = serde_json::from_value::<Params>(job.params.clone()) else {
            return JobEnd::Failed(job_error("internal_error", "the job's parameters are unreadable"), 0);
        };
        let Some(lang) = language(&params.language) else {
            return JobEnd::Failed(job_error("unsupported_language", format!("unsupported language {}", params.language)), 0);
        };
        let tenant = TenantId::from_trusted(job.tenant_id.clone());
        let path = self.audio_path(&job.id);
        let audio_missing = || JobEnd::Failed(job_error("audio_missing", "the job's stored audio could not be read"), job.chunks_done);
        let opened = path.clone();
        let duration = match tokio::task::spawn_blocking(move || WavFileReader::open(&opened).map(|f| f.duration_ms())).await {
            Ok(Ok(duration)) => duration,
            _ => return audio_missing(),
        };
        let ceiling = self.config.max_duration_s * 1000;
        let (units, sep) = units(&params.text, lang.unit);
        let mut progress: Progress = job.result.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
        let mut chunks_done = job.chunks_done;
        if progress.offset_ms > 0 {
            tracing::info!(job.id = %job.id, offset_ms = progress.offset_ms, chunks_done, "resuming alignment job");
        }

        while progress.next_unit < units.len() && progress.offset_ms < duration {
            if self.is_stopping() {
                return JobEnd::Stopped;
            }
            let policy = match self.policies.tenant_policy(&tenant).await {
                Ok(p) => p,
                Err(_) => return JobEnd::Stopped,
            };
            let start = progress.offset_ms;
            let remaining = duration - start;
            let last = remaining <= ceiling;
            let file = path.clone();
            let (end, wav) = match tokio::task::spawn_blocking(move || read_chunk(&file, start, ceiling, last)).await {
                Ok(Ok(chunk)) => chunk,
                _ => return audio_missing(),
            };
            let rest = units.len() - progress.next_unit;
            let take = if last {
                rest
            } else {
                let estimate = rest as f64 * (end - start) as f64 / remaining as f64;
                ((estimate * 1.2).ceil() as usize + 2).min(rest)
            };
            let chunk_units = &units[progress.next_unit..progress.next_unit + take];
            let item = AlignItem {
                model: Arc::from(job.model.as_str()),
                wav: wav.into(),
                text: chunk_units.join(sep),
                language: lang.name,
                audio_ms: end - start,
            };
            let started = Instant::now();
            let aligned = match self.align_chunk(&tenant, policy.weight, &job.id, job.attempts, item).await {
                Ok(ChunkResult::Aligned(items)) => items,
                Ok(ChunkResult::Refused(code, message)) => {
                    return JobEnd::Failed(
                        job_error("alignment_failed", format!("chunk {} ({code}): {message}", chunks_done + 1)),
                        chunks_done,
                    );
                }
                Err(JobEnd::Failed(error, _)) => return JobEnd::Failed(error, chunks_done),
                Err(end) => return end,
            };
            // Keep what lies before the guard band (all of it in the last chunk).
            let chunk_ms = end - start;
            let boundary = if last { u64::MAX } else { chunk_ms - guard_ms(chunk_ms) };
            let kept: Vec<AlignedUnit> = aligned.into_iter().take(take).take_while(|u| u.end_ms <= boundary).collect();
            let next_offset = if last {
                duration
            } else if let Some(end_of_last) = kept.last().map(|u| start + u.end_ms) {
                end_of_last.max(start + 1)
            } else {
                start + boundary
            };
            progress.next_unit += if last { take } else { kept.len() };
            progress.items.extend(kept.into_iter().map(|u| AlignedUnit {
                text: u.text,
                start_ms: start + u.start_ms,
                end_ms: start + u.end_ms,
            }));
            let billed = next_offset - start;
            progress.offset_ms = next_offset;
            chunks_done += 1;

            let total = chunks_done + (duration.saturating_sub(progress.offset_ms)).div_ceil(chunk_stride(ceiling)) as i32;
            let snapshot = match serde_json::to_value(&progress) {
                Ok(v) => v,
                Err(_) => return JobEnd::Stopped,
            };
            let (job_id, fence) = (job.id.clone(), job.attempts);
            // Billed once the progress is saved: a chunk aligned again after a restart is not billed twice.
            match self.db.run(move |conn| Ok(jobs::save_progress(conn, &job_id, fence, chunks_done, total, &snapshot)?)).await {
                Ok(true) => {
                    self.usage.record(UsageEvent::alignment(&tenant, &job.credential_id, &job.model, 200, billed, Duration::ZERO, started))
                }
                Ok(false) => return JobEnd::Stopped, // cancelled
                Err(e) => {
                    tracing::warn!(job.id = %job.id, error = %e, "job progress not saved; the job resumes from its last saved chunk");
                    return JobEnd::Stopped;
                }
            }
        }
        // The audio or the transcript ran out; bill audio left after the last unit, if any.
        if progress.offset_ms < duration {
            self.usage.record(UsageEvent::alignment(
                &tenant,
                &job.credential_id,
                &job.model,
                200,
                duration - progress.offset_ms,
                Duration::ZERO,
                Instant::now(),
            ));
        }
        let result = json!({
            "model": job.model,
            "language": lang.name,
            "duration_ms": duration,
            "items": progress.items,
        });
        JobEnd::Done(result, chunks_done)
    }

    /// Aligns one chunk, keeping the job's claim fresh while it waits; retries worker failures
    /// and a full or slow queue with backoff.
    async fn align_chunk(&self, tenant: &TenantId, weight: u32, job_id: &str, fence: i32, item: AlignItem) -> Result<ChunkResult, JobEnd> {
        let Some(route) = self.gateway.route(&item.model) else {
            return Err(JobEnd::Failed(job_error("model_not_found", format!("no pool serves {} any more", item.model)), 0));
        };
        let heartbeat = Duration::from_secs(self.config.job_heartbeat_s);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let align = route.queue.align(tenant.clone(), weight, Priority::Low, item.clone());
            tokio::pin!(align);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut align => break outcome,
                    _ = tokio::time::sleep(heartbeat) => {
                        let id = job_id.to_owned();
                        if let Ok(false) = self.db.run(move |conn| Ok(jobs::heartbeat(conn, &id, fence)?)).await {
                            return Err(JobEnd::Stopped); // cancelled while waiting
                        }
                    }
                }
            };
            match outcome {
                Ok(done) => {
                    return Ok(match done.result {
                        ItemResult::Aligned { items, .. } => ChunkResult::Aligned(items),
                        ItemResult::Refused { code, message } => ChunkResult::Refused(code, message),
                    });
                }
                Err(AlignFailure::Queue(_)) if !self.is_stopping() => {
                    // Full or no worker in time: jobs wait their turn rather than fail.
                    tokio::time::sleep(Duration::from_millis(self.config.job_idle_poll_ms)).await;
                }
                Err(e @ (AlignFailure::Worker(_) | AlignFailure::Timeout)) if attempt < CHUNK_ATTEMPTS => {
                    tracing::warn!(job.id = %job_id, attempt, error = %e, "chunk failed; retrying");
                    tokio::time::sleep(Duration::from_millis(self.config.job_retry_base_ms << (attempt - 1))).await;
                }
                Err(AlignFailure::Queue(_)) => return Err(JobEnd::Stopped),
                Err(e) => return Err(JobEnd::Failed(job_error("worker_failed", e.to_string()), 0)),
            }
        }
    }
}

enum ChunkResult {
    Aligned(Vec<AlignedUnit>),
    Refused(String, String),
}

/// The chunk of the job's audio that starts at `start` ms: to the end of the file if it is the
/// last, else to the quietest 200 ms of its last quarter (at most `ceiling` ms). Reads at most
/// `ceiling` ms of the file. Returns where the chunk ends and its WAV bytes.
fn read_chunk(path: &std::path::Path, start: u64, ceiling: u64, last: bool) -> std::io::Result<(u64, Vec<u8>)> {
    let mut file = WavFileReader::open(path)?;
    let mut audio = file.read(start, start.saturating_add(ceiling))?;
    let length = if last { audio.duration_ms() } else { audio.quietest_point(ceiling * 3 / 4, ceiling - 250, 200).min(ceiling) };
    audio.samples.truncate(usize::try_from(length.saturating_mul(crate::audio::TARGET_SAMPLE_RATE as u64 / 1000)).unwrap_or(usize::MAX));
    Ok((start + length, audio.to_wav()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_band_is_a_tenth_of_the_chunk_but_at_least_two_seconds() {
        assert_eq!(guard_ms(300_000), 30_000);
        assert_eq!(guard_ms(10_000), 2_000);
        assert_eq!(guard_ms(3_000), 1_500);
        assert_eq!(chunk_stride(300_000), 270_000);
    }

    #[test]
    fn units_split_words_or_characters() {
        assert_eq!(units("a bc d", Unit::Word), (vec!["a".to_owned(), "bc".to_owned(), "d".to_owned()], " "));
        assert_eq!(units("你好，世界", Unit::Character).0.len(), 4);
    }
}
