//! Audio intake for the forced-alignment API: validate an uploaded file, decode it, and turn it
//! into the one format the alignment workers accept — 16 kHz, mono, signed 16-bit PCM.
//!
//! Uploads come from arbitrary clients, so nothing about them is trusted:
//!
//! * The container is detected from the bytes themselves ([`sniff()`]), never from a file name or a
//!   `Content-Type` header. A text file renamed to `.wav` is refused before any decoder sees it.
//! * Size, sample rate, channel count and duration are checked against [`AudioLimits`]. The
//!   duration is *measured* from the decoded stream (headers can lie), and decoding stops as soon
//!   as the ceiling is passed, so an over-long upload costs at most `max_duration_ms` of work.
//! * Every failure is an [`AudioError`] whose message names the measured value and the limit,
//!   and which maps to an HTTP status with [`AudioError::status`].
//!
//! Decoding is done by symphonia (WAV/PCM/ADPCM, FLAC, MP3, Ogg Vorbis/FLAC, AAC in MP4/M4A) and,
//! for Ogg Opus, by the pure-Rust `opus-rs` crate (a port of libopus; symphonia 0.6 demuxes Ogg
//! Opus but has no Opus decoder). Channels are averaged to mono and the signal is resampled to [`TARGET_SAMPLE_RATE`]
//! with rubato's FFT resampler, streaming chunk by chunk so memory stays proportional to the
//! 16 kHz output rather than to the (possibly 192 kHz, 8-channel) source. Audio already at 16 kHz
//! is passed through untouched.
//!
//! Decoding streams: the output goes to a [`PcmSink`] block by block as it is decoded, so memory
//! is bounded by the upload and a few buffers, not by the audio's duration. [`decode`] collects
//! it into an [`Audio`] (short audio: the synchronous route); [`decode_into`] with a
//! [`WavFileWriter`] writes it straight to a file (long audio: jobs), which [`WavFileReader`]
//! reads back a window at a time.
//!
//! This file holds the public types ([`Audio`], [`Decoded`], [`AudioLimits`], [`AudioError`]) and
//! the [`decode`] and [`decode_into`] entry points; the stages live in submodules: `sniff`
//! (container detection), `container` (the symphonia demux/decode path), `opus` (Ogg Opus through
//! `opus-rs`), `resample` (mono downmix, duration metering and the streaming 16 kHz resampler)
//! and `wav` (the output format, sinks and stored files).
//! `clamav` is the `clamd` client the alignment routes scan uploads with before decoding them (when
//! configured).

pub mod clamav;
mod container;
mod opus;
mod resample;
mod sniff;
#[cfg(test)]
mod test_support;
mod wav;

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use container::decode_container;

pub use sniff::{AudioFormat, sniff};
pub use wav::{MAX_WAV_DATA_BYTES, PcmSink, WavFileReader, WavFileWriter, pcm16_le_bytes};

/// Sample rate of every decoded [`Audio`] (the worker contract).
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Samples per millisecond at [`TARGET_SAMPLE_RATE`].
const SAMPLES_PER_MS: u64 = TARGET_SAMPLE_RATE as u64 / 1000;

/// Limits applied by [`decode`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLimits {
    /// Largest accepted upload, in bytes.
    pub max_bytes: usize,
    /// Longest accepted audio, measured while decoding (decoding stops once it is exceeded).
    pub max_duration_ms: u64,
    /// Lowest accepted source sample rate, in Hz.
    pub min_sample_rate: u32,
    /// Highest accepted source sample rate, in Hz.
    pub max_sample_rate: u32,
    /// Most source channels accepted.
    pub max_channels: u16,
    /// Shortest accepted audio; anything shorter is treated as empty.
    pub min_duration_ms: u64,
}

impl Default for AudioLimits {
    /// 25 MiB, 300 s, 8–192 kHz, up to 8 channels, at least 100 ms.
    fn default() -> Self {
        AudioLimits {
            max_bytes: 25 * 1024 * 1024,
            max_duration_ms: 300_000,
            min_sample_rate: 8_000,
            max_sample_rate: 192_000,
            max_channels: 8,
            min_duration_ms: 100,
        }
    }
}

/// Decoded audio, resampled to 16 kHz mono PCM16.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// The container the audio came in.
    pub format: AudioFormat,
    /// The codec inside it, e.g. "pcm_s16le", "flac", "mp3", "vorbis", "aac", "opus".
    pub codec: String,
    /// Sample rate of the source stream, in Hz (48000 for Opus, which always runs at 48 kHz).
    pub source_sample_rate: u32,
    /// Channel count of the source stream.
    pub source_channels: u16,
    /// The audio: [`TARGET_SAMPLE_RATE`] Hz, mono.
    pub samples: Vec<i16>,
}

/// What [`decode_into`] found and wrote: the source's description and how many samples went
/// to the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The container the audio came in.
    pub format: AudioFormat,
    /// The codec inside it, as in [`Audio::codec`].
    pub codec: String,
    /// Sample rate of the source stream, in Hz.
    pub source_sample_rate: u32,
    /// Channel count of the source stream.
    pub source_channels: u16,
    /// Samples written to the sink, at [`TARGET_SAMPLE_RATE`] Hz, mono.
    pub samples: u64,
}

impl Decoded {
    /// Duration in whole milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.samples / SAMPLES_PER_MS
    }
}

impl Audio {
    /// Duration in whole milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 / SAMPLES_PER_MS
    }

    /// 16 kHz mono PCM16 little-endian WAV file bytes — the worker contract format.
    ///
    /// The canonical 44-byte RIFF/WAVE header (`WAVE_FORMAT_PCM`, the layout hound writes for
    /// 16-bit mono) is written directly, so this cannot fail. A WAV file holds at most
    /// [`MAX_WAV_DATA_BYTES`] (about 37 hours); anything longer is cut there.
    pub fn to_wav(&self) -> Vec<u8> {
        let max_samples = (MAX_WAV_DATA_BYTES / 2) as usize;
        let samples = &self.samples[..self.samples.len().min(max_samples)];
        let data_len = samples.len() as u32 * 2;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(&wav::wav_header(data_len));
        out.extend_from_slice(pcm16_le_bytes(samples, &mut Vec::new()));
        out
    }

    /// The sub-range `[start_ms, end_ms)` as a new `Audio` (both ends clamped to the audio; an
    /// inverted range gives an empty `Audio`). Source metadata is kept.
    pub fn slice(&self, start_ms: u64, end_ms: u64) -> Audio {
        let len = self.samples.len();
        let end = ms_to_index(end_ms, len);
        let start = ms_to_index(start_ms, len).min(end);
        Audio {
            format: self.format,
            codec: self.codec.clone(),
            source_sample_rate: self.source_sample_rate,
            source_channels: self.source_channels,
            samples: self.samples[start..end].to_vec(),
        }
    }

    /// Build from 16 kHz mono PCM16 samples (used when reloading stored audio).
    pub fn from_pcm16(samples: Vec<i16>) -> Audio {
        Audio {
            format: AudioFormat::Wav,
            codec: "pcm_s16le".to_owned(),
            source_sample_rate: TARGET_SAMPLE_RATE,
            source_channels: 1,
            samples,
        }
    }

    /// Where to cut a long recording: the middle (in ms) of the quietest `window_ms` window, by
    /// RMS energy, among windows starting at each millisecond in `[from_ms, to_ms]`.
    ///
    /// Windows running past the end of the audio are shortened (RMS is length-normalised). Ties
    /// go to the earliest window. If no window starts inside the audio (`from_ms > to_ms`, or
    /// `from_ms` at or past the end), returns `to_ms`.
    pub fn quietest_point(&self, from_ms: u64, to_ms: u64, window_ms: u64) -> u64 {
        let len = self.samples.len();
        let duration_ms = self.duration_ms();
        let window = usize::try_from(window_ms.max(1).saturating_mul(SAMPLES_PER_MS)).unwrap_or(usize::MAX);
        let last_start_ms = to_ms.min(duration_ms.saturating_sub(1));
        if from_ms > to_ms || from_ms > last_start_ms || len == 0 {
            return to_ms;
        }
        // Prefix sums of squared samples over the searched span only: the energy of any window
        // in O(1), with memory for the span, not the recording.
        let base = ms_to_index(from_ms, len);
        let stop = ms_to_index(last_start_ms, len).saturating_add(window).min(len);
        let mut prefix = Vec::with_capacity(stop - base + 1);
        prefix.push(0u64);
        let mut acc = 0u64;
        for &s in &self.samples[base..stop] {
            acc += (i64::from(s) * i64::from(s)) as u64;
            prefix.push(acc);
        }
        let mut best: Option<(f64, u64)> = None;
        for start_ms in from_ms..=last_start_ms {
            let start = ms_to_index(start_ms, len);
            let end = start.saturating_add(window).min(len);
            if end <= start {
                continue;
            }
            let mean_square = (prefix[end - base] - prefix[start - base]) as f64 / (end - start) as f64;
            if best.is_none_or(|(energy, _)| mean_square < energy) {
                let middle_ms = start_ms + ((end - start) as u64 / SAMPLES_PER_MS) / 2;
                best = Some((mean_square, middle_ms));
            }
        }
        best.map_or(to_ms, |(_, point)| point)
    }
}

/// Sample index for a time in ms, clamped to `len`.
fn ms_to_index(ms: u64, len: usize) -> usize {
    usize::try_from(ms.saturating_mul(SAMPLES_PER_MS)).unwrap_or(usize::MAX).min(len)
}

/// Formats milliseconds as seconds with one decimal for error messages, e.g. `312.4 s`.
struct Secs(u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} s", self.0 / 1000, (self.0 % 1000) / 100)
    }
}

/// Why an upload was refused. Each message tells the caller what is wrong, with the measured
/// value and the limit; [`AudioError::status`] gives the HTTP status.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AudioError {
    /// Zero bytes were uploaded.
    #[error("the uploaded audio is empty (0 bytes)")]
    Empty,
    /// The upload is larger than `max_bytes`.
    #[error("the audio is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Size of the upload.
        bytes: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes are not a recognised audio container.
    #[error(
        "the upload is not a recognised audio file (checked by content, not by file name); \
         send WAV, FLAC, MP3, Ogg (Vorbis or Opus) or M4A (AAC)"
    )]
    UnsupportedType,
    /// The container is fine but its codec cannot be decoded.
    #[error("the {format} file's audio codec ({codec}) is not supported; convert it to FLAC, WAV, MP3 or Ogg Vorbis")]
    UnsupportedCodec {
        /// The container.
        format: AudioFormat,
        /// The codec found in it.
        codec: String,
    },
    /// The file is damaged: it could not be read, it is truncated, or it has no audio track.
    #[error("the {format} file could not be decoded: {detail}")]
    Corrupt {
        /// The container.
        format: AudioFormat,
        /// What went wrong.
        detail: String,
    },
    /// The source sample rate is outside the accepted range.
    #[error("the audio's sample rate is {rate} Hz; accepted sample rates are {min} to {max} Hz")]
    BadSampleRate {
        /// The source rate.
        rate: u32,
        /// Lowest accepted rate.
        min: u32,
        /// Highest accepted rate.
        max: u32,
    },
    /// The source has too many channels.
    #[error("the audio has {channels} channels; at most {max} are accepted")]
    BadChannels {
        /// The source channel count.
        channels: u16,
        /// Most channels accepted.
        max: u16,
    },
    /// The decoded audio is shorter than `min_duration_ms` (this includes no audio at all).
    #[error("the audio is {duration_ms} ms long ({}); at least {min_ms} ms ({}) is required", Secs(*duration_ms), Secs(*min_ms))]
    TooShort {
        /// Measured duration.
        duration_ms: u64,
        /// Required minimum.
        min_ms: u64,
    },
    /// The decoded audio is longer than `max_duration_ms`. Decoding stops once the limit is
    /// passed, so `duration_ms` is how much was measured — the audio is at least that long.
    #[error(
        "the audio is at least {duration_ms} ms long ({}, decoding stopped there); the limit is {limit_ms} ms ({})",
        Secs(*duration_ms),
        Secs(*limit_ms)
    )]
    TooLong {
        /// Duration decoded before stopping (a lower bound).
        duration_ms: u64,
        /// The configured limit.
        limit_ms: u64,
    },
    /// The decoded audio could not be written where it was going (the server's disk, or the
    /// request went away): a failure on this side, not the upload's.
    #[error("the decoded audio could not be stored ({0})")]
    Output(String),
}

impl AudioError {
    /// The HTTP status for this error: 400 empty/corrupt, 413 too large/too long, 415 unsupported
    /// type/codec, 422 sample rate/channels/too short, 500 output failed.
    pub fn status(&self) -> u16 {
        match self {
            AudioError::Output(_) => 500,
            AudioError::Empty | AudioError::Corrupt { .. } => 400,
            AudioError::TooLarge { .. } | AudioError::TooLong { .. } => 413,
            AudioError::UnsupportedType | AudioError::UnsupportedCodec { .. } => 415,
            AudioError::BadSampleRate { .. } | AudioError::BadChannels { .. } | AudioError::TooShort { .. } => 422,
        }
    }
}

/// Validate and decode an upload into 16 kHz mono PCM16, collected in memory (for audio whose
/// duration limit is short; long audio goes through [`decode_into`] to a file).
pub fn decode(bytes: &[u8], limits: &AudioLimits) -> Result<Audio, AudioError> {
    let mut samples = Vec::new();
    let decoded = decode_into(bytes, limits, &mut samples)?;
    Ok(Audio {
        format: decoded.format,
        codec: decoded.codec,
        source_sample_rate: decoded.source_sample_rate,
        source_channels: decoded.source_channels,
        samples,
    })
}

/// Validate and decode an upload into 16 kHz mono PCM16, handing the output to `out` block by
/// block as it is decoded: memory stays the upload plus a few packet-sized buffers, whatever
/// the duration.
///
/// Steps: refuse empty and over-size input; detect the container with [`sniff()`]; demux with
/// symphonia and take the default (else first) audio track; check sample rate and channels from
/// the codec parameters and again from every decoded buffer; decode (symphonia, or `opus-rs` for
/// Opus), average the channels to mono, resample to 16 kHz with rubato's FFT
/// resampler (skipped when the source is already 16 kHz; the final partial chunk is flushed so no
/// tail is lost) and convert to `i16` with clamping. The duration is measured from the decoded
/// samples, and decoding stops with [`AudioError::TooLong`] as soon as it passes the limit.
/// An error from `out` stops decoding with [`AudioError::Output`]. Whatever went to `out` before
/// an error is the caller's to discard.
///
/// A packet that fails to decode is skipped; more than a few (or over 10 % of packets) and the
/// file is refused as [`AudioError::Corrupt`], as are I/O and container errors. A panic inside a
/// decoder on malformed input is caught and reported as `Corrupt` too.
pub fn decode_into(bytes: &[u8], limits: &AudioLimits, out: &mut dyn PcmSink) -> Result<Decoded, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(AudioError::TooLarge { bytes: bytes.len(), limit: limits.max_bytes });
    }
    let format = sniff(bytes).ok_or(AudioError::UnsupportedType)?;
    match panic::catch_unwind(AssertUnwindSafe(|| decode_container(bytes, format, limits, out))) {
        Ok(result) => result,
        Err(_) => Err(AudioError::Corrupt { format, detail: "the decoder stopped on malformed data".to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{check_wav_roundtrip, ffmpeg, noise_bytes, sine_wav_16k_mono, source_wav, speechlike, wav_bytes};
    use super::*;

    #[test]
    fn text_named_wav_is_unsupported_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speech.wav");
        std::fs::write(&path, "WEBVTT\n\n00:00.000 --> 00:01.000\nhello world\n").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let err = decode(&bytes, &AudioLimits::default()).unwrap_err();
        assert_eq!(err, AudioError::UnsupportedType);
        assert_eq!(err.status(), 415);
    }

    #[test]
    fn random_bytes_are_refused() {
        for seed in 1..50u64 {
            let bytes = noise_bytes(4096, seed);
            if sniff(&bytes).is_none() {
                assert_eq!(decode(&bytes, &AudioLimits::default()), Err(AudioError::UnsupportedType));
            }
        }
        // Random bytes behind a valid magic number are corrupt, not a crash.
        for magic in [&b"OggS"[..], b"fLaC", b"RIFF\x10\0\0\0WAVE", b"\0\0\0\x10ftypM4A \0\0\0\0"] {
            let mut bytes = magic.to_vec();
            bytes.extend(noise_bytes(4096, 7));
            let err = decode(&bytes, &AudioLimits::default()).unwrap_err();
            assert!(matches!(err, AudioError::Corrupt { .. } | AudioError::TooShort { .. }), "{magic:?}: {err:?}");
        }
    }

    #[test]
    fn damaged_files_never_panic() {
        let (dir, path, wav) = source_wav();
        let mut inputs = vec![wav];
        for (name, args) in [
            ("d.flac", &[][..]),
            ("d.mp3", &[][..]),
            ("d.ogg", &["-c:a", "libvorbis"][..]),
            ("d.m4a", &["-c:a", "aac"][..]),
            ("d.opus", &[][..]),
        ] {
            inputs.extend(ffmpeg(&path, dir.path(), name, args));
        }
        for (i, original) in inputs.iter().enumerate() {
            for seed in 1..6u64 {
                let mut bytes = original.clone();
                let noise = noise_bytes(64, seed + i as u64 * 100);
                for (k, chunk) in noise.chunks(4).enumerate() {
                    let at = (usize::from(chunk[0]) << 8 | usize::from(chunk[1])) * bytes.len() / 65536;
                    let at = at.max(64 + k);
                    if at < bytes.len() {
                        bytes[at] ^= chunk[2] | 1;
                    }
                }
                // Any outcome but a panic is acceptable.
                let _ = decode(&bytes, &AudioLimits::default());
            }
        }
    }

    #[test]
    fn empty_and_oversize_inputs() {
        assert_eq!(decode(&[], &AudioLimits::default()), Err(AudioError::Empty));
        assert_eq!(AudioError::Empty.status(), 400);
        let (_dir, _path, bytes) = source_wav();
        let limits = AudioLimits { max_bytes: 100_000, ..AudioLimits::default() };
        let err = decode(&bytes, &limits).unwrap_err();
        assert_eq!(err, AudioError::TooLarge { bytes: bytes.len(), limit: 100_000 });
        assert_eq!(err.status(), 413);
        assert!(err.to_string().contains(&bytes.len().to_string()));
    }

    #[test]
    fn quietest_point_finds_the_gap() {
        let audio = decode(&wav_bytes(16_000, 1, &speechlike(16_000, 1, 3.0)), &AudioLimits::default()).unwrap();
        // The gap 1600–2200 ms is the only silence in 1000–2500 ms.
        let point = audio.quietest_point(1000, 2500, 200);
        assert!((1600..=2200).contains(&point), "cut at {point}");
        // Searching from inside a burst still lands in the gap.
        let point = audio.quietest_point(1200, 1900, 200);
        assert!((1600..=2200).contains(&point), "cut at {point}");
        // The 0.6–0.9 s gap when searched there.
        let point = audio.quietest_point(300, 700, 100);
        assert!((600..=900).contains(&point), "cut at {point}");
        // Empty ranges return to_ms.
        assert_eq!(audio.quietest_point(2000, 1000, 200), 1000);
        assert_eq!(audio.quietest_point(5000, 6000, 200), 6000);
        assert_eq!(Audio::from_pcm16(Vec::new()).quietest_point(0, 100, 200), 100);
        // A single candidate start.
        assert_eq!(audio.quietest_point(1700, 1700, 200), 1800);
    }

    #[test]
    fn slice_bounds() {
        let audio = Audio::from_pcm16((0..16_000).map(|i| i as i16).collect());
        assert_eq!(audio.duration_ms(), 1000);
        let part = audio.slice(250, 500);
        assert_eq!(part.samples.len(), 4000);
        assert_eq!(part.samples[0], 4000);
        assert_eq!(part.duration_ms(), 250);
        assert_eq!(audio.slice(900, 5000).samples.len(), 1600);
        assert_eq!(audio.slice(0, u64::MAX).samples, audio.samples);
        assert!(audio.slice(2000, 3000).samples.is_empty());
        assert!(audio.slice(600, 400).samples.is_empty());
        assert_eq!(part.format, AudioFormat::Wav);
        assert_eq!(part.codec, "pcm_s16le");
    }

    #[test]
    fn from_pcm16_and_to_wav() {
        let audio = Audio::from_pcm16(vec![0, 1, -1, i16::MAX, i16::MIN]);
        assert_eq!(audio.source_sample_rate, 16_000);
        assert_eq!(audio.source_channels, 1);
        check_wav_roundtrip(&audio);
        // Reloading the WAV gives the same Audio back.
        assert_eq!(decode(&Audio::from_pcm16(sine_wav_16k_mono(0.5)).to_wav(), &AudioLimits::default()).unwrap().samples.len(), 8000);
    }

    #[test]
    fn statuses_and_messages() {
        let cases = [
            (AudioError::Empty, 400),
            (AudioError::TooLarge { bytes: 30_000_000, limit: 26_214_400 }, 413),
            (AudioError::UnsupportedType, 415),
            (AudioError::UnsupportedCodec { format: AudioFormat::Ogg, codec: "speex".into() }, 415),
            (AudioError::Corrupt { format: AudioFormat::Mp3, detail: "x".into() }, 400),
            (AudioError::BadSampleRate { rate: 4000, min: 8000, max: 192_000 }, 422),
            (AudioError::BadChannels { channels: 9, max: 8 }, 422),
            (AudioError::TooShort { duration_ms: 40, min_ms: 100 }, 422),
            (AudioError::TooLong { duration_ms: 300_001, limit_ms: 300_000 }, 413),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(
            AudioError::TooShort { duration_ms: 40, min_ms: 100 }.to_string(),
            "the audio is 40 ms long (0.0 s); at least 100 ms (0.1 s) is required"
        );
        assert!(
            AudioError::UnsupportedCodec { format: AudioFormat::Ogg, codec: "speex".into() }
                .to_string()
                .contains("the ogg file's audio codec (speex) is not supported")
        );
        assert_eq!(AudioFormat::M4a.name(), "m4a");
        assert_eq!(AudioLimits::default().max_bytes, 25 * 1024 * 1024);
    }
}
