//! Audio intake for the forced-alignment API: validate an uploaded file, decode it, and turn it
//! into the one format the alignment workers accept — 16 kHz, mono, signed 16-bit PCM.
//!
//! Uploads come from arbitrary clients, so nothing about them is trusted:
//!
//! * The container is detected from the bytes themselves ([`sniff`]), never from a file name or a
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

use std::fmt;
use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};

use opus_rs::OpusDecoder;
use opus_rs::multistream::{ChannelMappingTable, MultistreamDecoder};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, WindowFunction};
use symphonia::core::codecs::audio::well_known as codec_ids;
use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters, AudioDecoderOptions, CODEC_ID_NULL_AUDIO};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;

/// Sample rate of every decoded [`Audio`] (the worker contract).
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Samples per millisecond at [`TARGET_SAMPLE_RATE`].
const SAMPLES_PER_MS: u64 = TARGET_SAMPLE_RATE as u64 / 1000;

/// A single damaged packet is skipped; more than this many (or more than 10 % of all packets)
/// means the file is damaged rather than glitchy, and it is refused as corrupt.
const MAX_SKIPPED_PACKETS: u64 = 5;

/// Input chunk fed to the FFT resampler, in source frames.
const RESAMPLER_CHUNK: usize = 4096;

/// FFT sub-chunks per resampler chunk (about 2048 frames each: a sharp anti-aliasing filter with
/// a small delay).
const RESAMPLER_SUB_CHUNKS: usize = 2;

/// Opus always runs at 48 kHz internally; this is the rate its timestamps and pre-skip use.
const OPUS_INTERNAL_RATE: u32 = 48_000;

/// Largest Opus packet duration (120 ms) in frames at [`TARGET_SAMPLE_RATE`].
const OPUS_MAX_FRAMES_16K: usize = 1_920;

/// An audio container recognised by [`sniff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// RIFF/WAVE.
    Wav,
    /// Native FLAC stream (`fLaC`), optionally behind an ID3v2 tag.
    Flac,
    /// MPEG audio elementary stream (MP3), optionally behind an ID3v2 tag.
    Mp3,
    /// Ogg (Vorbis, Opus or FLAC inside).
    Ogg,
    /// ISO base media file (MP4/M4A), typically AAC inside.
    M4a,
}

impl AudioFormat {
    /// Short lower-case name: "wav", "flac", "mp3", "ogg" or "m4a".
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Ogg => "ogg",
            AudioFormat::M4a => "m4a",
        }
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Detect the audio container from its first bytes (magic numbers), never from a file name.
///
/// Recognises RIFF/WAVE, `fLaC`, MPEG audio frames (checked for valid version, layer, bitrate and
/// sample-rate bits, and for a second frame where one should follow), ID3v2-tagged FLAC or MP3,
/// `OggS`, and ISO BMFF files whose `ftyp` box names an MP4/M4A brand. Returns `None` for anything
/// else: text, images, video-only brands, zero bytes, raw ADTS AAC.
pub fn sniff(bytes: &[u8]) -> Option<AudioFormat> {
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return Some(AudioFormat::Wav);
    }
    if bytes.starts_with(b"fLaC") {
        return Some(AudioFormat::Flac);
    }
    if bytes.starts_with(b"OggS") {
        return Some(AudioFormat::Ogg);
    }
    if is_iso_bmff_audio(bytes) {
        return Some(AudioFormat::M4a);
    }
    if bytes.starts_with(b"ID3") {
        return sniff_after_id3(bytes);
    }
    if is_mpeg_audio_stream(bytes, 0) {
        return Some(AudioFormat::Mp3);
    }
    None
}

/// Skip one or more ID3v2 tags (and zero padding after them), then look for FLAC or MPEG audio.
fn sniff_after_id3(bytes: &[u8]) -> Option<AudioFormat> {
    let mut pos = 0usize;
    while bytes.len() >= pos + 10 && &bytes[pos..pos + 3] == b"ID3" {
        let header = &bytes[pos..pos + 10];
        // Version bytes are never 0xFF and the size is four 7-bit "syncsafe" bytes.
        if header[3] == 0xFF || header[4] == 0xFF || header[6..10].iter().any(|b| b & 0x80 != 0) {
            return None;
        }
        let size = header[6..10].iter().fold(0usize, |acc, b| (acc << 7) | usize::from(*b));
        let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
        pos = pos.checked_add(10 + size + footer)?;
    }
    // Some taggers pad with zeros beyond the declared tag size.
    let padding = bytes.get(pos..)?.iter().take(64 * 1024).take_while(|b| **b == 0).count();
    pos += padding;
    let rest = bytes.get(pos..)?;
    if rest.starts_with(b"fLaC") {
        Some(AudioFormat::Flac)
    } else if is_mpeg_audio_stream(bytes, pos) {
        Some(AudioFormat::Mp3)
    } else {
        None
    }
}

/// Whether an ISO BMFF `ftyp` box at offset 4 lists an MP4/M4A brand (major or compatible).
fn is_iso_bmff_audio(bytes: &[u8]) -> bool {
    const BRANDS: &[&[u8; 4]] = &[
        b"M4A ", b"M4B ", b"M4P ", b"M4V ", b"mp41", b"mp42", b"mp71", b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"avc1",
        b"dash", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"F4A ", b"F4V ", b"MSNV", b"qt  ",
    ];
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return false;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = box_len.clamp(16, bytes.len());
    let major = &bytes[8..12];
    let compatible = bytes[16..end].chunks_exact(4);
    std::iter::once(major).chain(compatible).any(|brand| BRANDS.iter().any(|known| brand == known.as_slice()))
}

/// Fields of an MPEG audio (layer I/II/III) frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MpegHeader {
    version: u8,
    layer: u8,
    sample_rate: u32,
    /// Frame length in bytes, `None` for free-format streams.
    frame_len: Option<usize>,
}

/// Parse a 4-byte MPEG audio frame header (sync 0xFFE, valid version/layer/bitrate/rate bits).
fn parse_mpeg_header(h: &[u8]) -> Option<MpegHeader> {
    const BITRATES_V1: [[u32; 14]; 3] = [
        [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
        [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
        [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    ];
    const BITRATES_V2: [[u32; 14]; 2] =
        [[32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256], [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]];
    let h = h.get(..4)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 0b11; // 0 = MPEG 2.5, 1 = reserved, 2 = MPEG 2, 3 = MPEG 1
    let layer_bits = (h[1] >> 1) & 0b11; // 0 = reserved (ADTS AAC uses it), 1 = III, 2 = II, 3 = I
    let bitrate_index = usize::from(h[2] >> 4);
    let rate_index = usize::from((h[2] >> 2) & 0b11);
    if version == 1 || layer_bits == 0 || bitrate_index == 0xF || rate_index == 3 {
        return None;
    }
    let layer = 4 - layer_bits; // 1, 2 or 3
    let base_rate = [44_100u32, 48_000, 32_000][rate_index];
    let sample_rate = match version {
        3 => base_rate,
        2 => base_rate / 2,
        _ => base_rate / 4,
    };
    let padding = u32::from((h[2] >> 1) & 1);
    let frame_len = if bitrate_index == 0 {
        None
    } else {
        let kbps = match (version, layer) {
            (3, l) => BITRATES_V1[usize::from(l - 1)][bitrate_index - 1],
            (_, 1) => BITRATES_V2[0][bitrate_index - 1],
            _ => BITRATES_V2[1][bitrate_index - 1],
        };
        let bps = kbps * 1000;
        let len = match (version, layer) {
            (_, 1) => (12 * bps / sample_rate + padding) * 4,
            (3, _) | (_, 2) => 144 * bps / sample_rate + padding,
            _ => 72 * bps / sample_rate + padding,
        };
        Some(len as usize)
    };
    Some(MpegHeader { version, layer, sample_rate, frame_len })
}

/// A valid MPEG audio frame header at `pos`, followed by a consistent second header where the
/// buffer is long enough to hold one (this keeps random bytes from passing as MP3).
fn is_mpeg_audio_stream(bytes: &[u8], pos: usize) -> bool {
    let Some(first) = bytes.get(pos..).and_then(parse_mpeg_header) else {
        return false;
    };
    let Some(len) = first.frame_len else {
        return true;
    };
    match bytes.get(pos + len..) {
        Some(next) if next.len() >= 4 => parse_mpeg_header(next).is_some_and(|second| {
            second.version == first.version && second.layer == first.layer && second.sample_rate == first.sample_rate
        }),
        _ => true,
    }
}

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

impl Audio {
    /// Duration in whole milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 / SAMPLES_PER_MS
    }

    /// 16 kHz mono PCM16 little-endian WAV file bytes — the worker contract format.
    ///
    /// The canonical 44-byte RIFF/WAVE header (`WAVE_FORMAT_PCM`, the layout hound writes for
    /// 16-bit mono) is written directly, so this cannot fail.
    pub fn to_wav(&self) -> Vec<u8> {
        const BYTES_PER_SAMPLE: u32 = 2;
        // A RIFF chunk size is a u32; 16 kHz mono PCM16 fills it after about 37 hours.
        let max_samples = ((u32::MAX - 36) / BYTES_PER_SAMPLE) as usize;
        let samples = &self.samples[..self.samples.len().min(max_samples)];
        let data_len = samples.len() as u32 * BYTES_PER_SAMPLE;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVE");
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
        out.extend_from_slice(&1u16.to_le_bytes()); // WAVE_FORMAT_PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // channels
        out.extend_from_slice(&TARGET_SAMPLE_RATE.to_le_bytes());
        out.extend_from_slice(&(TARGET_SAMPLE_RATE * BYTES_PER_SAMPLE).to_le_bytes()); // byte rate
        out.extend_from_slice(&(BYTES_PER_SAMPLE as u16).to_le_bytes()); // block align
        out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for sample in samples {
            out.extend_from_slice(&sample.to_le_bytes());
        }
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
        // Prefix sums of squared samples: the energy of any window in O(1).
        let mut prefix = Vec::with_capacity(len + 1);
        prefix.push(0u64);
        let mut acc = 0u64;
        for &s in &self.samples {
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
            let mean_square = (prefix[end] - prefix[start]) as f64 / (end - start) as f64;
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
}

impl AudioError {
    /// The HTTP status for this error: 400 empty/corrupt, 413 too large/too long, 415 unsupported
    /// type/codec, 422 sample rate/channels/too short.
    pub fn status(&self) -> u16 {
        match self {
            AudioError::Empty | AudioError::Corrupt { .. } => 400,
            AudioError::TooLarge { .. } | AudioError::TooLong { .. } => 413,
            AudioError::UnsupportedType | AudioError::UnsupportedCodec { .. } => 415,
            AudioError::BadSampleRate { .. } | AudioError::BadChannels { .. } | AudioError::TooShort { .. } => 422,
        }
    }
}

/// Validate and decode an upload into 16 kHz mono PCM16.
///
/// Steps: refuse empty and over-size input; detect the container with [`sniff`]; demux with
/// symphonia and take the default (else first) audio track; check sample rate and channels from
/// the codec parameters and again from every decoded buffer; decode (symphonia, or `opus-rs` for
/// Opus), average the channels to mono, resample to 16 kHz with rubato's FFT
/// resampler (skipped when the source is already 16 kHz; the final partial chunk is flushed so no
/// tail is lost) and convert to `i16` with clamping. The duration is measured from the decoded
/// samples, and decoding stops with [`AudioError::TooLong`] as soon as it passes the limit.
///
/// A packet that fails to decode is skipped; more than a few (or over 10 % of packets) and the
/// file is refused as [`AudioError::Corrupt`], as are I/O and container errors. A panic inside a
/// decoder on malformed input is caught and reported as `Corrupt` too.
pub fn decode(bytes: &[u8], limits: &AudioLimits) -> Result<Audio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(AudioError::TooLarge { bytes: bytes.len(), limit: limits.max_bytes });
    }
    let format = sniff(bytes).ok_or(AudioError::UnsupportedType)?;
    match panic::catch_unwind(AssertUnwindSafe(|| decode_container(bytes, format, limits))) {
        Ok(result) => result,
        Err(_) => Err(AudioError::Corrupt { format, detail: "the decoder stopped on malformed data".to_owned() }),
    }
}

fn decode_container(bytes: &[u8], format: AudioFormat, limits: &AudioLimits) -> Result<Audio, AudioError> {
    let repaired = if format == AudioFormat::Wav { repair_streamed_wav(bytes) } else { None };
    let bytes = repaired.as_deref().unwrap_or(bytes);
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(format.name());
    let mut reader = symphonia::default::get_probe()
        .probe(&hint, source, FormatOptions::default(), MetadataOptions::default())
        .map_err(|err| probe_error(format, err))?;

    let (track_id, params) = select_audio_track(reader.as_ref(), format)?;
    let codec = codec_name(params.codec);
    if params.codec == codec_ids::CODEC_ID_OPUS {
        return decode_opus(reader.as_mut(), track_id, &params, format, limits);
    }
    if let Some(rate) = params.sample_rate {
        check_sample_rate(rate, limits)?;
    }
    if let Some(channels) = &params.channels {
        check_channels(channels.count(), limits)?;
    }

    let mut decoder =
        symphonia::default::get_codecs().make_audio_decoder(&params, &AudioDecoderOptions::default()).map_err(|err| match err {
            SymphoniaError::Unsupported(_) => AudioError::UnsupportedCodec { format, codec: codec.clone() },
            other => AudioError::Corrupt { format, detail: format!("the {codec} stream could not be opened ({other})") },
        })?;

    let mut sink: Option<MonoSink> = None;
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut source_channels = params.channels.as_ref().map(|c| c.count());
    read_packets(reader.as_mut(), track_id, format, &mut |packet| {
        let buffer = match decoder.decode(packet) {
            Ok(buffer) => buffer,
            Err(SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_)) => return Err(PacketFailure::Skip),
            Err(SymphoniaError::Unsupported(_)) => {
                return Err(PacketFailure::Fatal(AudioError::UnsupportedCodec { format, codec: codec.clone() }));
            }
            Err(other) => {
                return Err(PacketFailure::Fatal(AudioError::Corrupt { format, detail: format!("the {codec} stream failed ({other})") }));
            }
        };
        let rate = buffer.spec().rate();
        let channels = buffer.spec().channels().count();
        check_channels(channels, limits)?;
        source_channels.get_or_insert(channels);
        let frames = buffer.frames();
        if frames == 0 {
            return Ok(());
        }
        let sink = match &mut sink {
            Some(sink) if sink.rate != rate => {
                return Err(PacketFailure::Fatal(AudioError::Corrupt {
                    format,
                    detail: format!("the sample rate changes mid-stream from {} Hz to {rate} Hz", sink.rate),
                }));
            }
            Some(sink) => sink,
            None => {
                check_sample_rate(rate, limits)?;
                sink.insert(MonoSink::new(rate, limits, format)?)
            }
        };
        buffer.copy_to_vecs_planar::<f32>(&mut planes);
        sink.push_planar(&planes, frames)?;
        Ok(())
    })?;

    let Some(sink) = sink else {
        return Err(AudioError::TooShort { duration_ms: 0, min_ms: limits.min_duration_ms });
    };
    let source_sample_rate = sink.rate;
    let samples = sink.finish(limits)?;
    Ok(Audio {
        format,
        codec,
        source_sample_rate,
        source_channels: u16::try_from(source_channels.unwrap_or(1)).unwrap_or(u16::MAX),
        samples,
    })
}

/// WAV written as a stream (`ffmpeg ... -f wav -`, live recorders) cannot seek back to fill in
/// its sizes and leaves placeholders: `0xFFFFFFFF`, or 0 in both the RIFF and `data` sizes. Such a
/// file is complete up to its last byte, so a copy with the real sizes is returned for the
/// decoder. `None` when the header is already consistent — a `data` size that is a real number but
/// larger than the file stays as it is, and is reported as truncated.
fn repair_streamed_wav(bytes: &[u8]) -> Option<Vec<u8>> {
    let read_u32 = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let riff_size = read_u32(4)?;
    let riff_placeholder = riff_size == 0 || riff_size == u32::MAX;
    let mut block_align = 1usize;
    let mut pos = 12usize;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = read_u32(pos + 4)?;
        let body = pos + 8;
        if id == b"fmt " {
            if let Some(b) = bytes.get(body + 12..body + 14) {
                block_align = usize::from(u16::from_le_bytes([b[0], b[1]])).max(1);
            }
        } else if id == b"data" {
            let available = bytes.len() - body;
            let streamed = size == u32::MAX || (size == 0 && riff_placeholder && available > 0);
            if !streamed && !riff_placeholder {
                return None;
            }
            let mut fixed = bytes.to_vec();
            if streamed {
                let data_len = u32::try_from(available - available % block_align).unwrap_or(u32::MAX);
                fixed[pos + 4..pos + 8].copy_from_slice(&data_len.to_le_bytes());
            }
            let riff_len = u32::try_from(bytes.len() - 8).unwrap_or(u32::MAX);
            fixed[4..8].copy_from_slice(&riff_len.to_le_bytes());
            return Some(fixed);
        }
        pos = body.checked_add(usize::try_from(size).ok()?)?.checked_add(size as usize & 1)?;
    }
    None
}

/// Map a probe failure: codecs the WAV reader does not know are "unsupported codec", anything
/// else means the container could not be read.
fn probe_error(format: AudioFormat, err: SymphoniaError) -> AudioError {
    match err {
        SymphoniaError::Unsupported(what) if what.contains("wave format") || what.contains("sub-type") => {
            AudioError::UnsupportedCodec { format, codec: "unknown wave format".to_owned() }
        }
        SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Corrupt { format, detail: "the file ends unexpectedly (truncated upload?)".to_owned() }
        }
        SymphoniaError::Unsupported(what) if what.contains("moov") => AudioError::Corrupt {
            format,
            detail: "its index (the MP4 'moov' box) is missing: the file is truncated or was not finished".to_owned(),
        },
        other => AudioError::Corrupt { format, detail: format!("the container could not be read ({other})") },
    }
}

/// The default audio track (else the first one with a known codec): its id and codec parameters.
fn select_audio_track(reader: &dyn FormatReader, format: AudioFormat) -> Result<(u32, AudioCodecParameters), AudioError> {
    let track = reader.default_track(TrackType::Audio).or_else(|| reader.first_track(TrackType::Audio));
    let Some(track) = track else {
        return Err(AudioError::Corrupt { format, detail: "the file contains no audio track".to_owned() });
    };
    match track.codec_params.as_ref().and_then(|p| p.audio()) {
        Some(params) if params.codec != CODEC_ID_NULL_AUDIO => Ok((track.id, params.clone())),
        _ => Err(AudioError::UnsupportedCodec { format, codec: "unknown".to_owned() }),
    }
}

fn check_sample_rate(rate: u32, limits: &AudioLimits) -> Result<(), AudioError> {
    if rate < limits.min_sample_rate || rate > limits.max_sample_rate {
        return Err(AudioError::BadSampleRate { rate, min: limits.min_sample_rate, max: limits.max_sample_rate });
    }
    Ok(())
}

fn check_channels(channels: usize, limits: &AudioLimits) -> Result<(), AudioError> {
    let count = u16::try_from(channels).unwrap_or(u16::MAX);
    if count > limits.max_channels {
        return Err(AudioError::BadChannels { channels: count, max: limits.max_channels });
    }
    if count == 0 {
        return Err(AudioError::BadChannels { channels: 0, max: limits.max_channels });
    }
    Ok(())
}

/// ffmpeg-style name of a codec, used in [`Audio::codec`] and in error messages.
fn codec_name(id: AudioCodecId) -> String {
    use codec_ids::*;
    let name = match id {
        CODEC_ID_PCM_S16LE | CODEC_ID_PCM_S16LE_PLANAR => "pcm_s16le",
        CODEC_ID_PCM_S16BE | CODEC_ID_PCM_S16BE_PLANAR => "pcm_s16be",
        CODEC_ID_PCM_S24LE | CODEC_ID_PCM_S24LE_PLANAR => "pcm_s24le",
        CODEC_ID_PCM_S24BE | CODEC_ID_PCM_S24BE_PLANAR => "pcm_s24be",
        CODEC_ID_PCM_S32LE | CODEC_ID_PCM_S32LE_PLANAR => "pcm_s32le",
        CODEC_ID_PCM_S32BE | CODEC_ID_PCM_S32BE_PLANAR => "pcm_s32be",
        CODEC_ID_PCM_S8 | CODEC_ID_PCM_S8_PLANAR => "pcm_s8",
        CODEC_ID_PCM_U8 | CODEC_ID_PCM_U8_PLANAR => "pcm_u8",
        CODEC_ID_PCM_U16LE | CODEC_ID_PCM_U16LE_PLANAR => "pcm_u16le",
        CODEC_ID_PCM_U16BE | CODEC_ID_PCM_U16BE_PLANAR => "pcm_u16be",
        CODEC_ID_PCM_U24LE | CODEC_ID_PCM_U24LE_PLANAR => "pcm_u24le",
        CODEC_ID_PCM_U24BE | CODEC_ID_PCM_U24BE_PLANAR => "pcm_u24be",
        CODEC_ID_PCM_U32LE | CODEC_ID_PCM_U32LE_PLANAR => "pcm_u32le",
        CODEC_ID_PCM_U32BE | CODEC_ID_PCM_U32BE_PLANAR => "pcm_u32be",
        CODEC_ID_PCM_F32LE | CODEC_ID_PCM_F32LE_PLANAR => "pcm_f32le",
        CODEC_ID_PCM_F32BE | CODEC_ID_PCM_F32BE_PLANAR => "pcm_f32be",
        CODEC_ID_PCM_F64LE | CODEC_ID_PCM_F64LE_PLANAR => "pcm_f64le",
        CODEC_ID_PCM_F64BE | CODEC_ID_PCM_F64BE_PLANAR => "pcm_f64be",
        CODEC_ID_PCM_ALAW => "pcm_alaw",
        CODEC_ID_PCM_MULAW => "pcm_mulaw",
        CODEC_ID_ADPCM_MS => "adpcm_ms",
        CODEC_ID_ADPCM_IMA_WAV => "adpcm_ima_wav",
        CODEC_ID_ADPCM_IMA_QT => "adpcm_ima_qt",
        CODEC_ID_ADPCM_G722 => "adpcm_g722",
        CODEC_ID_ADPCM_G726 | CODEC_ID_ADPCM_G726LE => "adpcm_g726",
        CODEC_ID_VORBIS => "vorbis",
        CODEC_ID_OPUS => "opus",
        CODEC_ID_SPEEX => "speex",
        CODEC_ID_MP1 => "mp1",
        CODEC_ID_MP2 => "mp2",
        CODEC_ID_MP3 => "mp3",
        CODEC_ID_AAC => "aac",
        CODEC_ID_AC3 => "ac3",
        CODEC_ID_EAC3 => "eac3",
        CODEC_ID_DCA => "dts",
        CODEC_ID_WMA => "wma",
        CODEC_ID_FLAC => "flac",
        CODEC_ID_ALAC => "alac",
        CODEC_ID_WAVPACK => "wavpack",
        CODEC_ID_MONKEYS_AUDIO => "ape",
        CODEC_ID_TTA => "tta",
        CODEC_ID_TRUEHD => "truehd",
        other => return format!("unknown, id {other}"),
    };
    name.to_owned()
}

/// What a per-packet decode step reports back to [`read_packets`].
enum PacketFailure {
    /// This packet is damaged; skip it and count it.
    Skip,
    /// Stop decoding with this error.
    Fatal(AudioError),
}

impl From<AudioError> for PacketFailure {
    fn from(err: AudioError) -> Self {
        PacketFailure::Fatal(err)
    }
}

/// Pull every packet of `track_id` from the demuxer and hand it to `decode_packet`, counting
/// skipped packets. Container and I/O errors end the read as [`AudioError::Corrupt`].
fn read_packets(
    reader: &mut dyn FormatReader,
    track_id: u32,
    format: AudioFormat,
    decode_packet: &mut dyn FnMut(&Packet) -> Result<(), PacketFailure>,
) -> Result<(), AudioError> {
    let mut total = 0u64;
    let mut skipped = 0u64;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A chained Ogg stream starts over with new tracks: keep the first one only.
            Err(SymphoniaError::ResetRequired) => break,
            Err(SymphoniaError::IoError(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(AudioError::Corrupt {
                    format,
                    detail: "the file ends in the middle of the audio data (truncated upload?)".to_owned(),
                });
            }
            Err(err) => return Err(AudioError::Corrupt { format, detail: format!("the container is damaged ({err})") }),
        };
        if packet.track_id != track_id {
            continue;
        }
        total += 1;
        match decode_packet(&packet) {
            Ok(()) => {}
            Err(PacketFailure::Skip) => {
                skipped += 1;
                if skipped > MAX_SKIPPED_PACKETS {
                    return Err(too_many_skipped(format, skipped, total));
                }
            }
            Err(PacketFailure::Fatal(err)) => return Err(err),
        }
    }
    if skipped > 0 && skipped * 10 > total {
        return Err(too_many_skipped(format, skipped, total));
    }
    Ok(())
}

fn too_many_skipped(format: AudioFormat, skipped: u64, total: u64) -> AudioError {
    AudioError::Corrupt { format, detail: format!("{skipped} of the first {total} audio packets are damaged") }
}

/// Collects decoded audio: measures its duration against the limit, averages channels to mono,
/// and streams it through the 16 kHz resampler.
struct MonoSink {
    /// Rate of the samples pushed in.
    rate: u32,
    format: AudioFormat,
    /// Frames pushed so far (the measured duration).
    frames: u64,
    limit_ms: u64,
    mono: Vec<f32>,
    resampler: StreamResampler,
}

impl MonoSink {
    fn new(rate: u32, limits: &AudioLimits, format: AudioFormat) -> Result<Self, AudioError> {
        let resampler = StreamResampler::new(rate)
            .map_err(|err| AudioError::Corrupt { format, detail: format!("cannot resample from {rate} Hz ({err})") })?;
        Ok(MonoSink { rate, format, frames: 0, limit_ms: limits.max_duration_ms, mono: Vec::new(), resampler })
    }

    /// Push `frames` frames of planar audio (one `Vec` per channel).
    fn push_planar(&mut self, planes: &[Vec<f32>], frames: usize) -> Result<(), AudioError> {
        self.mono.clear();
        match planes {
            [] => return Ok(()),
            [only] => self.mono.extend_from_slice(&only[..frames]),
            [first, rest @ ..] => {
                self.mono.extend_from_slice(&first[..frames]);
                for plane in rest {
                    for (acc, s) in self.mono.iter_mut().zip(&plane[..frames]) {
                        *acc += *s;
                    }
                }
                let scale = 1.0 / planes.len() as f32;
                self.mono.iter_mut().for_each(|s| *s *= scale);
            }
        }
        self.flush_mono(frames)
    }

    /// Push interleaved frames, scaled by `gain`.
    fn push_interleaved(&mut self, pcm: &[f32], channels: usize, gain: f32) -> Result<(), AudioError> {
        let scale = gain / channels as f32;
        self.mono.clear();
        self.mono.extend(pcm.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() * scale));
        self.flush_mono(pcm.len() / channels)
    }

    fn flush_mono(&mut self, frames: usize) -> Result<(), AudioError> {
        self.frames += frames as u64;
        if self.frames.saturating_mul(1000) > self.limit_ms.saturating_mul(u64::from(self.rate)) {
            return Err(AudioError::TooLong { duration_ms: self.duration_ms(), limit_ms: self.limit_ms });
        }
        let format = self.format;
        self.resampler.push(&self.mono).map_err(|detail| AudioError::Corrupt { format, detail })
    }

    fn duration_ms(&self) -> u64 {
        self.frames * 1000 / u64::from(self.rate)
    }

    /// Flush the resampler and check the minimum duration.
    fn finish(self, limits: &AudioLimits) -> Result<Vec<i16>, AudioError> {
        let duration_ms = self.duration_ms();
        if duration_ms < limits.min_duration_ms {
            return Err(AudioError::TooShort { duration_ms, min_ms: limits.min_duration_ms });
        }
        let format = self.format;
        self.resampler.finish().map_err(|detail| AudioError::Corrupt { format, detail })
    }
}

/// Streaming mono resampler to [`TARGET_SAMPLE_RATE`]: rubato's FFT resampler fed in fixed
/// input chunks, with its start-up delay trimmed and its tail flushed so the output is exactly
/// `ceil(input_frames * 16000 / rate)` samples aligned with the input. A pass-through at 16 kHz.
struct StreamResampler {
    inner: Option<FftState>,
    out: Vec<i16>,
}

struct FftState {
    fft: Fft<f32>,
    rate: u32,
    /// Input not yet consumed by the resampler.
    pending: Vec<f32>,
    scratch: Vec<f32>,
    /// Output frames still to drop (the resampler delay).
    delay_left: usize,
    frames_in: u64,
}

impl StreamResampler {
    fn new(rate: u32) -> Result<Self, rubato::ResamplerConstructionError> {
        if rate == TARGET_SAMPLE_RATE {
            return Ok(StreamResampler { inner: None, out: Vec::new() });
        }
        let fft = Fft::<f32>::new_custom(
            rate as usize,
            TARGET_SAMPLE_RATE as usize,
            RESAMPLER_CHUNK,
            RESAMPLER_SUB_CHUNKS,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )?;
        let scratch = vec![0.0; fft.output_frames_max()];
        let delay_left = fft.output_delay();
        let state = FftState { fft, rate, pending: Vec::new(), scratch, delay_left, frames_in: 0 };
        Ok(StreamResampler { inner: Some(state), out: Vec::new() })
    }

    fn push(&mut self, mono: &[f32]) -> Result<(), String> {
        let Some(state) = &mut self.inner else {
            self.out.extend(mono.iter().map(|s| to_i16(*s)));
            return Ok(());
        };
        state.frames_in += mono.len() as u64;
        state.pending.extend_from_slice(mono);
        let mut consumed = 0;
        while state.pending.len() - consumed >= state.fft.input_frames_next() {
            let used = state.process(consumed, None, &mut self.out)?;
            consumed += used;
        }
        state.pending.drain(..consumed);
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<i16>, String> {
        let Some(state) = &mut self.inner else {
            return Ok(self.out);
        };
        let rate = u64::from(state.rate);
        let expected = usize::try_from((state.frames_in * u64::from(TARGET_SAMPLE_RATE)).div_ceil(rate)).unwrap_or(usize::MAX);
        // Feed what is left as a partial chunk, then silence, until the delayed tail is out.
        let mut consumed = 0;
        let mut rounds = 0;
        while self.out.len() < expected && rounds < 10_000 {
            let partial = (state.pending.len() - consumed).min(state.fft.input_frames_next());
            consumed += state.process(consumed, Some(partial), &mut self.out)?;
            rounds += 1;
        }
        self.out.truncate(expected);
        Ok(self.out)
    }
}

impl FftState {
    /// Run one resampler chunk starting at `pending[offset..]`; returns input frames consumed.
    fn process(&mut self, offset: usize, partial_len: Option<usize>, out: &mut Vec<i16>) -> Result<usize, String> {
        let input = &self.pending[offset..];
        let resample_error = |err: &dyn std::error::Error| format!("internal resampling error ({err})");
        let input_frames = match partial_len {
            Some(n) => n,
            None => input.len(),
        };
        // The adapter needs at least one frame of backing storage even for a silent flush.
        let silence = [0.0f32; 1];
        let input = if input.is_empty() { &silence[..] } else { input };
        let input_adapter = InterleavedSlice::new(input, 1, input.len()).map_err(|e| resample_error(&e))?;
        let scratch_len = self.scratch.len();
        let mut output_adapter = InterleavedSlice::new_mut(&mut self.scratch, 1, scratch_len).map_err(|e| resample_error(&e))?;
        let indexing = partial_len.map(|_| Indexing { partial_len: Some(input_frames), ..Indexing::default() });
        let (used, produced) =
            self.fft.process_into_buffer(&input_adapter, &mut output_adapter, indexing.as_ref()).map_err(|e| resample_error(&e))?;
        let skip = self.delay_left.min(produced);
        self.delay_left -= skip;
        out.extend(self.scratch[skip..produced].iter().map(|s| to_i16(*s)));
        Ok(used.min(input_frames))
    }
}

/// f32 in [-1, 1) to i16, rounding and clamping.
fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// The fields of an Ogg Opus identification header ("OpusHead", RFC 7845 §5.1) that decoding
/// needs.
struct OpusHead {
    channels: u8,
    pre_skip: u16,
    /// Output gain in dB (Q7.8 in the header).
    gain_db: f32,
    /// Stream layout for channel mapping families other than 0 (multistream, e.g. surround).
    multistream: Option<ChannelMappingTable>,
}

impl OpusHead {
    fn parse(data: &[u8]) -> Option<OpusHead> {
        if data.len() < 19 || &data[0..8] != b"OpusHead" || data[8] >> 4 != 0 {
            return None;
        }
        let channels = data[9];
        let pre_skip = u16::from_le_bytes([data[10], data[11]]);
        let gain_db = f32::from(i16::from_le_bytes([data[16], data[17]])) / 256.0;
        let mapping_family = data[18];
        if channels == 0 || (mapping_family == 0 && channels > 2) {
            return None;
        }
        let multistream = if mapping_family == 0 {
            None
        } else {
            let table = ChannelMappingTable::parse(mapping_family, channels, &data[19..])?;
            // Every mapped channel must name a decoded channel (255 = silence).
            let decoded = usize::from(table.coupled_count) * 2 + usize::from(table.stream_count.checked_sub(table.coupled_count)?);
            if table.stream_count == 0 || table.mapping.iter().any(|m| *m != 255 && usize::from(*m) >= decoded) {
                return None;
            }
            Some(table)
        };
        Some(OpusHead { channels, pre_skip, gain_db, multistream })
    }
}

enum AnyOpusDecoder {
    Single(Box<OpusDecoder>),
    Multi(MultistreamDecoder),
}

impl AnyOpusDecoder {
    fn decode(&mut self, packet: &[u8], pcm: &mut [f32]) -> Result<usize, &'static str> {
        match self {
            AnyOpusDecoder::Single(decoder) => decoder.decode(packet, OPUS_MAX_FRAMES_16K, pcm),
            AnyOpusDecoder::Multi(decoder) => decoder.decode(packet, OPUS_MAX_FRAMES_16K, pcm),
        }
    }
}

/// Ogg Opus: symphonia demuxes, `opus-rs` decodes straight to 16 kHz (Opus decodes natively at
/// 8/12/16/24/48 kHz, so no resampling is needed). Pre-skip and end trimming are applied here.
/// Mono/stereo (mapping family 0) and multistream (surround, families 1 and 255) are supported.
fn decode_opus(
    reader: &mut dyn FormatReader,
    track_id: u32,
    params: &AudioCodecParameters,
    format: AudioFormat,
    limits: &AudioLimits,
) -> Result<Audio, AudioError> {
    let corrupt = |detail: &str| AudioError::Corrupt { format, detail: detail.to_owned() };
    let head = params.extra_data.as_deref().and_then(OpusHead::parse).ok_or_else(|| corrupt("the Opus header (OpusHead) is invalid"))?;
    check_sample_rate(OPUS_INTERNAL_RATE, limits)?;
    let channels = usize::from(head.channels);
    check_channels(channels, limits)?;
    let rate = TARGET_SAMPLE_RATE as i32;
    let mut decoder = match head.multistream {
        None => OpusDecoder::new(rate, channels).map(|decoder| AnyOpusDecoder::Single(Box::new(decoder))),
        Some(table) => MultistreamDecoder::new(rate, table).map(AnyOpusDecoder::Multi),
    }
    .map_err(|err| corrupt(&format!("the Opus stream layout is invalid ({err})")))?;

    // Timestamps, pre-skip and trims are in 48 kHz frames; the decoder outputs 16 kHz.
    let ratio = u64::from(OPUS_INTERNAL_RATE / TARGET_SAMPLE_RATE);
    let to_16k = |frames_48k: u64| usize::try_from(frames_48k.div_ceil(ratio)).unwrap_or(usize::MAX);
    let mut pre_skip_left = to_16k(u64::from(head.pre_skip));
    let gain = 10f32.powf(head.gain_db / 20.0);
    let mut pcm = vec![0f32; OPUS_MAX_FRAMES_16K * channels];
    let mut sink = MonoSink::new(TARGET_SAMPLE_RATE, limits, format)?;
    read_packets(reader, track_id, format, &mut |packet| {
        let frames = decoder.decode(&packet.data, &mut pcm).map_err(|_| PacketFailure::Skip)?.min(OPUS_MAX_FRAMES_16K);
        let trim_end = to_16k(packet.trim_end.get());
        let mut start = to_16k(packet.trim_start.get()).min(frames);
        let end = frames - trim_end.min(frames - start);
        let skip = pre_skip_left.min(end - start);
        pre_skip_left -= skip;
        start += skip;
        sink.push_interleaved(&pcm[start * channels..end * channels], channels, gain)?;
        Ok(())
    })?;
    let samples = sink.finish(limits)?;
    Ok(Audio {
        format,
        codec: "opus".to_owned(),
        source_sample_rate: OPUS_INTERNAL_RATE,
        source_channels: u16::from(head.channels),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A "speech-like" test signal: harmonic tone bursts with silent gaps.
    /// Tone at 0–0.6 s, 0.9–1.6 s and 2.2–3.0 s (scaled to `secs`), silence elsewhere; the gap
    /// 1.6–2.2 s is the longest. Returns interleaved frames (channels slightly different).
    fn speechlike(rate: u32, channels: u16, secs: f64) -> Vec<i16> {
        let frames = (f64::from(rate) * secs).round() as usize;
        let bursts = [(0.0, 0.6), (0.9, 1.6), (2.2, 3.0)];
        let mut out = Vec::with_capacity(frames * usize::from(channels));
        for i in 0..frames {
            let t = i as f64 / f64::from(rate);
            let phase = t % 3.0;
            let envelope = bursts
                .iter()
                .map(|(a, b)| {
                    if phase < *a || phase >= *b {
                        0.0
                    } else {
                        // 10 ms raised-cosine ramps so bursts have no clicks.
                        let ramp = ((phase - a).min(b - phase) / 0.01).min(1.0);
                        0.5 - 0.5 * (std::f64::consts::PI * ramp).cos()
                    }
                })
                .fold(0.0, f64::max);
            for ch in 0..channels {
                let f0 = 180.0 + 20.0 * f64::from(ch);
                let tone = (0..4).map(|k| (2.0 * std::f64::consts::PI * f0 * f64::from(k + 1) * t).sin() / f64::from(k + 1)).sum::<f64>();
                out.push((tone * envelope * 0.3 * 32767.0) as i16);
            }
        }
        out
    }

    fn wav_bytes(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for s in samples {
            writer.write_sample(*s).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn sine_wav_16k_mono(secs: f64) -> Vec<i16> {
        speechlike(16_000, 1, secs)
    }

    fn tool_available(tool: &str) -> bool {
        let found = Command::new(tool).arg("-version").output().is_ok() || Command::new(tool).arg("--version").output().is_ok();
        if !found {
            println!("note: `{tool}` is not installed; skipping this format");
        }
        found
    }

    /// Convert `input` to `dir/name` with ffmpeg; `None` (with a printed note) if ffmpeg is missing.
    fn ffmpeg(input: &Path, dir: &Path, name: &str, args: &[&str]) -> Option<Vec<u8>> {
        if !tool_available("ffmpeg") {
            return None;
        }
        let out = dir.join(name);
        let status = Command::new("ffmpeg").args(["-y", "-loglevel", "error", "-i"]).arg(input).args(args).arg(&out).status().unwrap();
        assert!(status.success(), "ffmpeg failed to make {name}");
        Some(std::fs::read(out).unwrap())
    }

    /// A temp dir holding the 3 s, 44.1 kHz stereo test WAV.
    fn source_wav() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = wav_bytes(44_100, 2, &speechlike(44_100, 2, 3.0));
        let path = dir.path().join("speech.wav");
        std::fs::write(&path, &bytes).unwrap();
        (dir, path, bytes)
    }

    fn assert_decoded(audio: &Audio, format: AudioFormat, codec: &str, rate: u32, channels: u16, tolerance_ms: u64) {
        assert_eq!(audio.format, format);
        assert_eq!(audio.codec, codec);
        assert_eq!(audio.source_sample_rate, rate);
        assert_eq!(audio.source_channels, channels);
        let duration = audio.duration_ms();
        assert!(duration.abs_diff(3000) <= tolerance_ms, "{format}/{codec}: duration {duration} ms, expected 3000 ± {tolerance_ms}");
        // The signal survived: loud in a burst, silent in the long gap.
        let rms = |a: &Audio, from: u64, to: u64| {
            let s = a.slice(from, to).samples;
            (s.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        assert!(rms(audio, 1000, 1400) > 1000.0, "{codec}: burst too quiet");
        assert!(rms(audio, 1750, 2050) < 100.0, "{codec}: gap not silent");
    }

    fn check_wav_roundtrip(audio: &Audio) {
        let wav = audio.to_wav();
        let mut reader = hound::WavReader::new(Cursor::new(&wav)).unwrap();
        let spec = reader.spec();
        assert_eq!(spec.sample_rate, 16_000);
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples, audio.samples);
    }

    #[test]
    fn decodes_wav_44k_stereo() {
        let (_dir, _path, bytes) = source_wav();
        assert_eq!(sniff(&bytes), Some(AudioFormat::Wav));
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Wav, "pcm_s16le", 44_100, 2, 0);
        // Resampling keeps the exact length: ceil(132300 * 16000 / 44100).
        assert_eq!(audio.samples.len(), 48_000);
        check_wav_roundtrip(&audio);
    }

    #[test]
    fn decodes_flac() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "out.flac", &[]) else { return };
        assert_eq!(sniff(&bytes), Some(AudioFormat::Flac));
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Flac, "flac", 44_100, 2, 0);
        check_wav_roundtrip(&audio);
    }

    #[test]
    fn decodes_mp3() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "out.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"]) else { return };
        assert_eq!(sniff(&bytes), Some(AudioFormat::Mp3));
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Mp3, "mp3", 44_100, 2, 100);
        check_wav_roundtrip(&audio);
    }

    #[test]
    fn decodes_mp3_without_id3_tag() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "bare.mp3", &["-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0"]) else {
            return;
        };
        assert!(!bytes.starts_with(b"ID3"));
        assert_eq!(sniff(&bytes), Some(AudioFormat::Mp3));
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Mp3, "mp3", 44_100, 2, 100);
    }

    #[test]
    fn decodes_ogg_vorbis() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "out.ogg", &["-c:a", "libvorbis"]) else { return };
        assert_eq!(sniff(&bytes), Some(AudioFormat::Ogg));
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Ogg, "vorbis", 44_100, 2, 60);
        check_wav_roundtrip(&audio);
    }

    #[test]
    fn decodes_m4a_aac() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "out.m4a", &["-c:a", "aac"]) else { return };
        assert_eq!(sniff(&bytes), Some(AudioFormat::M4a));
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::M4a, "aac", 44_100, 2, 100);
        check_wav_roundtrip(&audio);
    }

    #[test]
    fn decodes_ogg_opus() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "out.opus", &["-c:a", "libopus"]) else { return };
        assert_eq!(sniff(&bytes), Some(AudioFormat::Ogg));
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Ogg, "opus", 48_000, 2, 60);
        check_wav_roundtrip(&audio);
    }

    #[test]
    fn decodes_mono_opus_at_voice_bitrate() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "voice.opus", &["-ac", "1", "-ar", "16000", "-c:a", "libopus", "-b:a", "24k"]) else {
            return;
        };
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Ogg, "opus", 48_000, 1, 60);
    }

    /// Opus decoded here matches libopus (ffmpeg) decoding of the same file.
    #[test]
    fn opus_output_matches_libopus() {
        let (dir, path, _) = source_wav();
        let Some(opus) = ffmpeg(&path, dir.path(), "ref.opus", &["-c:a", "libopus"]) else { return };
        let Some(reference) =
            ffmpeg(&dir.path().join("ref.opus"), dir.path(), "ref16k.wav", &["-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le"])
        else {
            return;
        };
        let ours = decode(&opus, &AudioLimits::default()).unwrap();
        let theirs = decode(&reference, &AudioLimits::default()).unwrap();
        assert!(ours.samples.len().abs_diff(theirs.samples.len()) <= 16, "{} vs {}", ours.samples.len(), theirs.samples.len());
        let n = ours.samples.len().min(theirs.samples.len());
        let (a, b) = (&ours.samples[..n], &theirs.samples[..n]);
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let correlation = dot / (na * nb);
        assert!(correlation > 0.98, "correlation with libopus decode is {correlation}");
        assert!((na / nb - 1.0).abs() < 0.05, "level differs from libopus decode: {:.3}", na / nb);
    }

    #[test]
    fn alac_in_m4a_is_unsupported_codec() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "alac.m4a", &["-c:a", "alac"]) else { return };
        let err = decode(&bytes, &AudioLimits::default()).unwrap_err();
        assert_eq!(err, AudioError::UnsupportedCodec { format: AudioFormat::M4a, codec: "alac".into() });
        assert_eq!(err.status(), 415);
        assert!(err.to_string().contains("FLAC, WAV, MP3 or Ogg Vorbis"), "{err}");
    }

    #[test]
    fn sox_made_files_decode() {
        if !tool_available("sox") {
            return;
        }
        let (dir, path, _) = source_wav();
        for (name, format, codec) in [("sox.flac", AudioFormat::Flac, "flac"), ("sox24.wav", AudioFormat::Wav, "pcm_s24le")] {
            let out = dir.path().join(name);
            let mut cmd = Command::new("sox");
            cmd.arg(&path);
            if name == "sox24.wav" {
                cmd.args(["-b", "24"]);
            }
            assert!(cmd.arg(&out).status().unwrap().success());
            let audio = decode(&std::fs::read(&out).unwrap(), &AudioLimits::default()).unwrap();
            assert_decoded(&audio, format, codec, 44_100, 2, 0);
        }
    }

    #[test]
    fn sniff_by_magic_bytes() {
        let mut riff = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        riff.extend([0; 32]);
        assert_eq!(sniff(&riff), Some(AudioFormat::Wav));
        assert_eq!(sniff(b"fLaC\0\0\0\x22"), Some(AudioFormat::Flac));
        assert_eq!(sniff(b"OggS\0\x02\0\0"), Some(AudioFormat::Ogg));
        let mut ftyp = b"\0\0\0\x18ftypM4A \0\0\0\0M4A isom".to_vec();
        ftyp.extend([0; 16]);
        assert_eq!(sniff(&ftyp), Some(AudioFormat::M4a));
        let mut compat = b"\0\0\0\x18ftypXXXX\0\0\0\0abcdmp42".to_vec();
        compat.extend([0; 8]);
        assert_eq!(sniff(&compat), Some(AudioFormat::M4a));
        // ID3v2 tag (size 10, syncsafe) followed by fLaC, and by an MPEG-1 layer III frame.
        let mut id3 = b"ID3\x04\0\0\0\0\0\x0a".to_vec();
        id3.extend([0; 10]);
        let mut id3_flac = id3.clone();
        id3_flac.extend(b"fLaC\0\0\0\x22");
        assert_eq!(sniff(&id3_flac), Some(AudioFormat::Flac));
        let mut id3_mp3 = id3.clone();
        id3_mp3.extend([0xFF, 0xFB, 0x90, 0x64]);
        assert_eq!(sniff(&id3_mp3), Some(AudioFormat::Mp3));
        // Two consecutive MPEG-1 layer III 128 kbps 44.1 kHz frames (417 bytes each).
        let mut frames = vec![0u8; 417 * 2];
        frames[0..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        frames[417..421].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        assert_eq!(sniff(&frames), Some(AudioFormat::Mp3));
        // A frame header followed by garbage where the next frame should be is not MP3.
        frames[417] = 0x12;
        assert_eq!(sniff(&frames), None);

        // Not audio.
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[0u8; 64]), None);
        assert_eq!(sniff(b"hello, this is a text file that someone named speech.wav\n"), None);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), None);
        assert_eq!(sniff(b"%PDF-1.7\n"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI LIST"), None);
        let mut heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
        heic.extend([0; 8]);
        assert_eq!(sniff(&heic), None);
        // ADTS AAC (layer bits 00), reserved MPEG version, bad bitrate index.
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80, 0, 0]), None);
        assert_eq!(sniff(&[0xFF, 0xEB, 0x90, 0x64]), None);
        assert_eq!(sniff(&[0xFF, 0xFB, 0xF0, 0x64]), None);
        // An ID3 tag with nothing after it.
        assert_eq!(sniff(&id3), None);
    }

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

    /// Deterministic pseudo-random bytes (xorshift).
    fn noise_bytes(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
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
    fn truncated_files_are_refused_without_panicking() {
        let (dir, path, wav) = source_wav();
        let flac = ffmpeg(&path, dir.path(), "t.flac", &[]);
        let mut inputs = vec![("wav", wav)];
        inputs.extend(flac.map(|f| ("flac", f)));
        for (name, bytes) in inputs {
            for cut in [12, 30, 44, 100, 1000, bytes.len() / 3, bytes.len() / 2, bytes.len() - 7] {
                match decode(&bytes[..cut], &AudioLimits::default()) {
                    Err(AudioError::Corrupt { .. } | AudioError::TooShort { .. }) => {}
                    other => panic!("{name} cut at {cut}: expected Corrupt or TooShort, got {other:?}"),
                }
            }
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

    /// WAV written to a pipe has placeholder sizes; it decodes in full. A real size that
    /// overstates the data is still a truncated file.
    #[test]
    fn streamed_wav_with_placeholder_sizes_decodes() {
        let (dir, path, wav) = source_wav();
        let data_at = wav.windows(4).position(|w| w == b"data").unwrap();
        for placeholder in [u32::MAX, 0] {
            let mut streamed = wav.clone();
            streamed[4..8].copy_from_slice(&placeholder.to_le_bytes());
            streamed[data_at + 4..data_at + 8].copy_from_slice(&placeholder.to_le_bytes());
            let audio = decode(&streamed, &AudioLimits::default()).unwrap();
            assert_eq!(audio.samples.len(), 48_000, "placeholder {placeholder:#x}");
        }
        // An odd trailing byte (half a sample) is ignored.
        let mut streamed = wav.clone();
        streamed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        streamed[data_at + 4..data_at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        streamed.push(0);
        assert_eq!(decode(&streamed, &AudioLimits::default()).unwrap().samples.len(), 48_000);
        if tool_available("ffmpeg") {
            let out = Command::new("ffmpeg").args(["-loglevel", "error", "-i"]).arg(&path).args(["-f", "wav", "-"]).output().unwrap();
            assert!(out.status.success());
            let audio = decode(&out.stdout, &AudioLimits::default()).unwrap();
            assert_eq!(audio.samples.len(), 48_000);
        }
        let mut truncated = wav.clone();
        truncated.truncate(wav.len() / 2);
        assert!(matches!(decode(&truncated, &AudioLimits::default()), Err(AudioError::Corrupt { .. })));
        drop(dir);
    }

    /// 5.1 Opus (channel mapping family 1, four elementary streams).
    #[test]
    fn decodes_surround_opus() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "six.opus", &["-ac", "6", "-c:a", "libopus"]) else { return };
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Ogg, "opus", 48_000, 6, 60);
    }

    #[test]
    fn header_only_wav_is_too_short() {
        let bytes = wav_bytes(44_100, 2, &[]);
        assert_eq!(bytes.len(), 44);
        let err = decode(&bytes, &AudioLimits::default()).unwrap_err();
        assert_eq!(err, AudioError::TooShort { duration_ms: 0, min_ms: 100 });
        assert_eq!(err.status(), 422);
        // 50 ms of audio is also too short.
        let short = wav_bytes(16_000, 1, &vec![100; 800]);
        assert_eq!(decode(&short, &AudioLimits::default()), Err(AudioError::TooShort { duration_ms: 50, min_ms: 100 }));
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
    fn over_duration_stops_early() {
        let (dir, path, wav) = source_wav();
        let limits = AudioLimits { max_duration_ms: 1000, ..AudioLimits::default() };
        let mut inputs = vec![("wav", wav)];
        inputs.extend(ffmpeg(&path, dir.path(), "long.mp3", &[]).map(|b| ("mp3", b)));
        inputs.extend(ffmpeg(&path, dir.path(), "long.opus", &[]).map(|b| ("opus", b)));
        for (name, bytes) in inputs {
            match decode(&bytes, &limits) {
                Err(AudioError::TooLong { duration_ms, limit_ms: 1000 }) => {
                    assert!(duration_ms > 1000 && duration_ms < 1500, "{name}: stopped at {duration_ms} ms, not early");
                }
                other => panic!("{name}: expected TooLong, got {other:?}"),
            }
        }
        let err = AudioError::TooLong { duration_ms: 312_400, limit_ms: 300_000 };
        assert_eq!(err.status(), 413);
        assert!(err.to_string().contains("312.4 s") && err.to_string().contains("300.0 s"), "{err}");
    }

    #[test]
    fn channel_limit() {
        let eight = wav_bytes(16_000, 8, &speechlike(16_000, 8, 0.5));
        let audio = decode(&eight, &AudioLimits::default()).unwrap();
        assert_eq!(audio.source_channels, 8);
        assert_eq!(audio.samples.len(), 8000);
        let nine = wav_bytes(16_000, 9, &speechlike(16_000, 9, 0.5));
        let err = decode(&nine, &AudioLimits::default()).unwrap_err();
        assert_eq!(err, AudioError::BadChannels { channels: 9, max: 8 });
        assert_eq!(err.status(), 422);
    }

    #[test]
    fn sample_rate_limits() {
        let low = wav_bytes(4_000, 1, &speechlike(4_000, 1, 1.0));
        let err = decode(&low, &AudioLimits::default()).unwrap_err();
        assert_eq!(err, AudioError::BadSampleRate { rate: 4_000, min: 8_000, max: 192_000 });
        assert_eq!(err.status(), 422);
        assert!(err.to_string().contains("4000 Hz"));
        // The edges are accepted, with exact output lengths.
        for rate in [8_000u32, 11_025, 22_050, 48_000, 96_000, 192_000] {
            let samples = speechlike(rate, 1, 0.5);
            let audio = decode(&wav_bytes(rate, 1, &samples), &AudioLimits::default()).unwrap();
            assert_eq!(audio.source_sample_rate, rate);
            // Exactly ceil(frames * 16000 / rate) output samples: no lost tail, no padding.
            let expected = (samples.len() as u64 * 16_000).div_ceil(u64::from(rate)) as usize;
            assert_eq!(audio.samples.len(), expected, "{rate} Hz");
        }
    }

    #[test]
    fn sixteen_khz_mono_is_not_resampled() {
        let samples = sine_wav_16k_mono(1.0);
        let audio = decode(&wav_bytes(16_000, 1, &samples), &AudioLimits::default()).unwrap();
        assert_eq!(audio.samples, samples);
        assert_eq!(audio, Audio::from_pcm16(samples));
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        let frames: Vec<i16> = (0..16_000).flat_map(|i| [(i % 200) as i16 * 10, 1000]).collect();
        let audio = decode(&wav_bytes(16_000, 2, &frames), &AudioLimits::default()).unwrap();
        for (i, s) in audio.samples.iter().enumerate() {
            assert_eq!(*s, ((i % 200) as i16 * 10 + 1000) / 2);
        }
    }

    /// Resampling preserves a 1 kHz tone's level and frequency (distortion + noise below -60 dB)
    /// and keeps it in place to within one output sample.
    #[test]
    fn resampler_quality() {
        for rate in [48_000u32, 44_100, 22_050, 11_025] {
            let tone = |i: usize| ((2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin() * 16_000.0) as i16;
            let samples: Vec<i16> = (0..rate as usize).map(tone).collect();
            let audio = decode(&wav_bytes(rate, 1, &samples), &AudioLimits::default()).unwrap();
            assert_eq!(audio.samples.len(), 16_000);
            // Least-squares fit of a*sin + b*cos at 1 kHz away from the edges.
            let w = 2.0 * std::f64::consts::PI * 1000.0 / 16_000.0;
            let range = 1000..15_000;
            let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for i in range.clone() {
                let (s, c) = ((w * i as f64).sin(), (w * i as f64).cos());
                let y = f64::from(audio.samples[i]);
                (ss, sc, cc, ys, yc) = (ss + s * s, sc + s * c, cc + c * c, ys + y * s, yc + y * c);
            }
            let det = ss * cc - sc * sc;
            let (a, b) = ((ys * cc - yc * sc) / det, (yc * ss - ys * sc) / det);
            let (mut residual, mut power) = (0.0, 0.0);
            for i in range {
                let fit = a * (w * i as f64).sin() + b * (w * i as f64).cos();
                residual += (f64::from(audio.samples[i]) - fit).powi(2);
                power += fit.powi(2);
            }
            let snr_db = 10.0 * (power / residual).log10();
            let amplitude = (a * a + b * b).sqrt();
            let offset_samples = -b.atan2(a) / w;
            assert!(snr_db > 60.0, "{rate} Hz: distortion+noise only {snr_db:.1} dB below the tone");
            assert!((amplitude / 16_000.0 - 1.0).abs() < 0.01, "{rate} Hz: amplitude {amplitude}");
            assert!(offset_samples.abs() < 1.0, "{rate} Hz: shifted by {offset_samples} samples");
        }
        let rate = 48_000u32;
        // Content above the new Nyquist frequency is filtered out, not aliased.
        let high: Vec<i16> = (0..rate as usize)
            .map(|i| ((2.0 * std::f64::consts::PI * 12_000.0 * i as f64 / f64::from(rate)).sin() * 16_000.0) as i16)
            .collect();
        let audio = decode(&wav_bytes(rate, 1, &high), &AudioLimits::default()).unwrap();
        let peak = audio.samples[1000..15_000].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak < 50, "aliased 12 kHz tone peaks at {peak}");
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
