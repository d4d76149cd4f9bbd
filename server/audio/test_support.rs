//! Test fixtures shared by the audio tests: synthetic speech-like signals, WAV encoding, ffmpeg
//! conversions (skipped with a note when the tool is missing) and assertions on decoded audio.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Audio, AudioFormat};

/// A "speech-like" test signal: harmonic tone bursts with silent gaps.
/// Tone at 0–0.6 s, 0.9–1.6 s and 2.2–3.0 s (scaled to `secs`), silence elsewhere; the gap
/// 1.6–2.2 s is the longest. Returns interleaved frames (channels slightly different).
pub(super) fn speechlike(rate: u32, channels: u16, secs: f64) -> Vec<i16> {
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

pub(super) fn wav_bytes(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cursor = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for s in samples {
        writer.write_sample(*s).unwrap();
    }
    writer.finalize().unwrap();
    cursor.into_inner()
}

pub(super) fn sine_wav_16k_mono(secs: f64) -> Vec<i16> {
    speechlike(16_000, 1, secs)
}

pub(super) fn tool_available(tool: &str) -> bool {
    let found = Command::new(tool).arg("-version").output().is_ok() || Command::new(tool).arg("--version").output().is_ok();
    if !found {
        println!("note: `{tool}` is not installed; skipping this format");
    }
    found
}

/// Convert `input` to `dir/name` with ffmpeg; `None` (with a printed note) if ffmpeg is missing.
pub(super) fn ffmpeg(input: &Path, dir: &Path, name: &str, args: &[&str]) -> Option<Vec<u8>> {
    if !tool_available("ffmpeg") {
        return None;
    }
    let out = dir.join(name);
    let status = Command::new("ffmpeg").args(["-y", "-loglevel", "error", "-i"]).arg(input).args(args).arg(&out).status().unwrap();
    assert!(status.success(), "ffmpeg failed to make {name}");
    Some(std::fs::read(out).unwrap())
}

/// A temp dir holding the 3 s, 44.1 kHz stereo test WAV.
pub(super) fn source_wav() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wav_bytes(44_100, 2, &speechlike(44_100, 2, 3.0));
    let path = dir.path().join("speech.wav");
    std::fs::write(&path, &bytes).unwrap();
    (dir, path, bytes)
}

pub(super) fn assert_decoded(audio: &Audio, format: AudioFormat, codec: &str, rate: u32, channels: u16, tolerance_ms: u64) {
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

pub(super) fn check_wav_roundtrip(audio: &Audio) {
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

/// Deterministic pseudo-random bytes (xorshift).
pub(super) fn noise_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}
