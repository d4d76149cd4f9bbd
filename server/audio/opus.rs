//! Ogg Opus: symphonia demuxes it but has no Opus decoder, so the packets are decoded here with
//! the pure-Rust `opus-rs` crate (identification header, single and multistream decoders).

use opus_rs::OpusDecoder;
use opus_rs::multistream::{ChannelMappingTable, MultistreamDecoder};
use symphonia::core::codecs::audio::AudioCodecParameters;
use symphonia::core::formats::FormatReader;

use super::container::{PacketFailure, check_channels, check_sample_rate, read_packets};
use super::resample::MonoSink;
use super::{AudioError, AudioFormat, AudioLimits, Decoded, PcmSink, TARGET_SAMPLE_RATE};

/// Opus always runs at 48 kHz internally; this is the rate its timestamps and pre-skip use.
const OPUS_INTERNAL_RATE: u32 = 48_000;

/// Largest Opus packet duration (120 ms) in frames at [`TARGET_SAMPLE_RATE`].
const OPUS_MAX_FRAMES_16K: usize = 1_920;

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
pub(super) fn decode_opus(
    reader: &mut dyn FormatReader,
    track_id: u32,
    params: &AudioCodecParameters,
    format: AudioFormat,
    limits: &AudioLimits,
    out: &mut dyn PcmSink,
) -> Result<Decoded, AudioError> {
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
        sink.push_interleaved(&pcm[start * channels..end * channels], channels, gain, out)?;
        Ok(())
    })?;
    let samples = sink.finish(limits, out)?;
    Ok(Decoded {
        format,
        codec: "opus".to_owned(),
        source_sample_rate: OPUS_INTERNAL_RATE,
        source_channels: u16::from(head.channels),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use crate::audio::test_support::{assert_decoded, check_wav_roundtrip, ffmpeg, source_wav};
    use crate::audio::{AudioFormat, AudioLimits, decode, sniff};

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

    /// 5.1 Opus (channel mapping family 1, four elementary streams).
    #[test]
    fn decodes_surround_opus() {
        let (dir, path, _) = source_wav();
        let Some(bytes) = ffmpeg(&path, dir.path(), "six.opus", &["-ac", "6", "-c:a", "libopus"]) else { return };
        let audio = decode(&bytes, &AudioLimits::default()).unwrap();
        assert_decoded(&audio, AudioFormat::Ogg, "opus", 48_000, 6, 60);
    }
}
