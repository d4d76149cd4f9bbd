//! Decoding cost of a 300 s upload (the sync route's ceiling) in each accepted format: a
//! 44.1 kHz stereo WAV made here, converted with ffmpeg, decoded and resampled to 16 kHz mono by
//! `gatehouse::audio::decode`. Printed (best of 3), not timed by criterion.
//! Run with `cargo bench --bench audio`; needs ffmpeg.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use gatehouse::audio::{AudioLimits, decode};

fn wav(seconds: u32, rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec { channels: 2, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut out = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..seconds * rate {
        let t = f64::from(i) / f64::from(rate);
        let s = if (t % 0.5) < 0.3 { ((t * 2.0 * std::f64::consts::PI * 220.0).sin() * 8000.0) as i16 } else { 0 };
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("long.wav");
    std::fs::write(&source, wav(300, 44_100)).unwrap();
    let mut inputs = vec![("WAV 44.1 kHz stereo", std::fs::read(&source).unwrap())];
    for (name, file, args) in [
        ("MP3 128 kbps", "long.mp3", &["-b:a", "128k"][..]),
        ("FLAC", "long.flac", &[][..]),
        ("Ogg Vorbis", "long.ogg", &["-c:a", "libvorbis"][..]),
        ("M4A AAC", "long.m4a", &["-c:a", "aac"][..]),
        ("Ogg Opus", "long.opus", &[][..]),
    ] {
        let out = dir.path().join(file);
        let ok = std::process::Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-i"])
            .arg(&source)
            .args(args)
            .arg(&out)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            inputs.push((name, std::fs::read(out).unwrap()));
        } else {
            eprintln!("{name}: ffmpeg unavailable or failed; skipped");
        }
    }
    let limits = AudioLimits { max_bytes: usize::MAX, max_duration_ms: 301_000, ..AudioLimits::default() };
    println!("decoding 300 s to 16 kHz mono (best of 3)");
    for (name, bytes) in inputs {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let audio = decode(&bytes, &limits).unwrap();
            best = best.min(start.elapsed());
            assert!(audio.duration_ms().abs_diff(300_000) < 100, "{name}: {} ms", audio.duration_ms());
        }
        println!("{name:<22} {:>10} bytes  {:>8.0} ms", bytes.len(), best.as_secs_f64() * 1000.0);
    }
}
