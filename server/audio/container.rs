//! The symphonia decode path: demux the container, repair streamed WAV headers, pick the audio
//! track, check its sample rate and channels, read and decode packets (skipping a few damaged
//! ones), hand the output to the caller's [`PcmSink`] packet by packet, and name the codec. Ogg
//! Opus is handed to [`decode_opus`] once its track is found.

use std::io::Cursor;

use symphonia::core::codecs::audio::well_known as codec_ids;
use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters, AudioDecoderOptions, CODEC_ID_NULL_AUDIO};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;

use super::opus::decode_opus;
use super::resample::MonoSink;
use super::{AudioError, AudioFormat, AudioLimits, Decoded, PcmSink};

/// A single damaged packet is skipped; more than this many (or more than 10 % of all packets)
/// means the file is damaged rather than glitchy, and it is refused as corrupt.
const MAX_SKIPPED_PACKETS: u64 = 5;

pub(super) fn decode_container(
    bytes: &[u8],
    format: AudioFormat,
    limits: &AudioLimits,
    out: &mut dyn PcmSink,
) -> Result<Decoded, AudioError> {
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
        return decode_opus(reader.as_mut(), track_id, &params, format, limits, out);
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
        sink.push_planar(&planes, frames, out)?;
        Ok(())
    })?;

    let Some(sink) = sink else {
        return Err(AudioError::TooShort { duration_ms: 0, min_ms: limits.min_duration_ms });
    };
    let source_sample_rate = sink.rate;
    let samples = sink.finish(limits, out)?;
    Ok(Decoded {
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

pub(super) fn check_sample_rate(rate: u32, limits: &AudioLimits) -> Result<(), AudioError> {
    if rate < limits.min_sample_rate || rate > limits.max_sample_rate {
        return Err(AudioError::BadSampleRate { rate, min: limits.min_sample_rate, max: limits.max_sample_rate });
    }
    Ok(())
}

pub(super) fn check_channels(channels: usize, limits: &AudioLimits) -> Result<(), AudioError> {
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
pub(super) enum PacketFailure {
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
pub(super) fn read_packets(
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

#[cfg(test)]
mod tests {
    use std::process::Command;

    use crate::audio::test_support::{assert_decoded, check_wav_roundtrip, ffmpeg, source_wav, speechlike, tool_available, wav_bytes};
    use crate::audio::{AudioError, AudioFormat, AudioLimits, decode, sniff};

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
}
