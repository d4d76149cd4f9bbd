//! The sample clip `gatehouse dev` writes into its data folder for the README's alignment example:
//! two seconds of a speech-like signal (16 kHz mono 16-bit PCM WAV), one harmonic tone burst per
//! word of `SAMPLE_TRANSCRIPT`, so the demo aligner accepts it with that transcript (four words in
//! two seconds is well inside the words-per-second plausibility check). Not speech: a stand-in
//! that needs no download.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// File name of the clip inside the data folder.
pub const SAMPLE_FILE: &str = "sample.wav";
/// The transcript the README aligns to the clip.
pub const SAMPLE_TRANSCRIPT: &str = "hello from the gateway";

const RATE: u32 = 16_000;
const SECONDS: f64 = 2.0;
/// Silence before the first burst and after the last, in seconds.
const MARGIN_S: f64 = 0.1;
/// Fade in and out of each burst, in seconds (no clicks).
const RAMP_S: f64 = 0.01;

/// Writes the clip (replacing an earlier one) and returns its path.
pub fn write(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(SAMPLE_FILE);
    let partial = data_dir.join(format!(".{SAMPLE_FILE}.partial"));
    let spec = hound::WavSpec { channels: 1, sample_rate: RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut writer = hound::WavWriter::create(&partial, spec).with_context(|| format!("cannot write {}", partial.display()))?;
    for sample in samples() {
        writer.write_sample(sample).with_context(|| format!("cannot write {}", partial.display()))?;
    }
    writer.finalize().with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The clip's samples: bursts of a falling four-harmonic tone, one per word, each filling 70% of
/// its word's share of the clip.
fn samples() -> Vec<i16> {
    let words = SAMPLE_TRANSCRIPT.split_whitespace().count().max(1);
    let frames = (f64::from(RATE) * SECONDS).round() as usize;
    let slot = (SECONDS - 2.0 * MARGIN_S) / words as f64;
    (0..frames)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let word = ((t - MARGIN_S) / slot).floor();
            if word < 0.0 || word >= words as f64 {
                return 0;
            }
            let start = MARGIN_S + word * slot;
            let end = start + 0.7 * slot;
            if t >= end {
                return 0;
            }
            let ramp = ((t - start).min(end - t) / RAMP_S).min(1.0);
            let envelope = 0.5 - 0.5 * (PI * ramp).cos();
            let f0 = 170.0 - 12.0 * word;
            let tone: f64 = (1..=4).map(|k| (2.0 * PI * f0 * f64::from(k) * t).sin() / f64::from(k)).sum();
            (tone * envelope * 0.3 * f64::from(i16::MAX)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clip_is_two_seconds_of_16_khz_mono_with_a_burst_per_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path()).unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        let spec = reader.spec();
        assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (16_000, 1, 16));
        assert_eq!(reader.duration(), 32_000);
        let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
        // Loud inside each word's burst, silent in the gaps between them.
        let slot = (SECONDS - 2.0 * MARGIN_S) / 4.0;
        for word in 0..4 {
            let middle = ((MARGIN_S + (word as f64 + 0.35) * slot) * 16_000.0) as usize;
            let gap = ((MARGIN_S + (word as f64 + 0.85) * slot) * 16_000.0) as usize;
            assert!(samples[middle - 200..middle + 200].iter().any(|s| s.unsigned_abs() > 3_000), "burst {word}");
            assert!(samples[gap - 200..gap + 200].iter().all(|s| *s == 0), "gap after {word}");
        }
        assert!(!dir.path().join(format!(".{SAMPLE_FILE}.partial")).exists());
    }
}
