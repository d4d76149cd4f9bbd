//! From decoded frames to the output samples: [`MonoSink`] averages channels to mono, measures
//! the duration against the limit, and streams the result through a rubato FFT resampler to
//! [`TARGET_SAMPLE_RATE`], converting to `i16` and handing each block to the caller's
//! [`PcmSink`] as soon as it is out of the resampler. Both decode paths (symphonia and Opus) feed
//! it. Nothing here grows with the audio's duration.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, WindowFunction};

use super::{AudioError, AudioFormat, AudioLimits, PcmSink, TARGET_SAMPLE_RATE};

/// Input chunk fed to the FFT resampler, in source frames.
const RESAMPLER_CHUNK: usize = 4096;

/// FFT sub-chunks per resampler chunk (about 2048 frames each: a sharp anti-aliasing filter with
/// a small delay).
const RESAMPLER_SUB_CHUNKS: usize = 2;

/// Collects decoded audio: measures its duration against the limit, averages channels to mono,
/// and streams it through the 16 kHz resampler to the output.
pub(super) struct MonoSink {
    /// Rate of the samples pushed in.
    pub(super) rate: u32,
    format: AudioFormat,
    /// Frames pushed so far (the measured duration).
    frames: u64,
    limit_ms: u64,
    mono: Vec<f32>,
    resampler: StreamResampler,
}

impl MonoSink {
    pub(super) fn new(rate: u32, limits: &AudioLimits, format: AudioFormat) -> Result<Self, AudioError> {
        let resampler = StreamResampler::new(rate)
            .map_err(|err| AudioError::Corrupt { format, detail: format!("cannot resample from {rate} Hz ({err})") })?;
        Ok(MonoSink { rate, format, frames: 0, limit_ms: limits.max_duration_ms, mono: Vec::new(), resampler })
    }

    /// Push `frames` frames of planar audio (one `Vec` per channel).
    pub(super) fn push_planar(&mut self, planes: &[Vec<f32>], frames: usize, out: &mut dyn PcmSink) -> Result<(), AudioError> {
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
        self.flush_mono(frames, out)
    }

    /// Push interleaved frames, scaled by `gain`.
    pub(super) fn push_interleaved(&mut self, pcm: &[f32], channels: usize, gain: f32, out: &mut dyn PcmSink) -> Result<(), AudioError> {
        let scale = gain / channels as f32;
        self.mono.clear();
        self.mono.extend(pcm.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() * scale));
        self.flush_mono(pcm.len() / channels, out)
    }

    fn flush_mono(&mut self, frames: usize, out: &mut dyn PcmSink) -> Result<(), AudioError> {
        self.frames += frames as u64;
        if self.frames.saturating_mul(1000) > self.limit_ms.saturating_mul(u64::from(self.rate)) {
            return Err(AudioError::TooLong { duration_ms: self.duration_ms(), limit_ms: self.limit_ms });
        }
        let format = self.format;
        self.resampler.push(&self.mono).map_err(|detail| AudioError::Corrupt { format, detail })?;
        self.resampler.emit(out)
    }

    fn duration_ms(&self) -> u64 {
        self.frames * 1000 / u64::from(self.rate)
    }

    /// Check the minimum duration, flush the resampler's tail to `out`, and return the number of
    /// samples written in all.
    pub(super) fn finish(mut self, limits: &AudioLimits, out: &mut dyn PcmSink) -> Result<u64, AudioError> {
        let duration_ms = self.duration_ms();
        if duration_ms < limits.min_duration_ms {
            return Err(AudioError::TooShort { duration_ms, min_ms: limits.min_duration_ms });
        }
        let format = self.format;
        self.resampler.flush().map_err(|detail| AudioError::Corrupt { format, detail })?;
        self.resampler.emit(out)?;
        Ok(self.resampler.written)
    }
}

/// Streaming mono resampler to [`TARGET_SAMPLE_RATE`]: rubato's FFT resampler fed in fixed
/// input chunks, with its start-up delay trimmed and its tail flushed so the output is exactly
/// `ceil(input_frames * 16000 / rate)` samples aligned with the input. A pass-through at 16 kHz.
/// Output waits in `staged` only until [`StreamResampler::emit`] hands it on.
struct StreamResampler {
    inner: Option<FftState>,
    staged: Vec<i16>,
    /// Samples handed to the output so far.
    written: u64,
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
            return Ok(StreamResampler { inner: None, staged: Vec::new(), written: 0 });
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
        Ok(StreamResampler { inner: Some(state), staged: Vec::new(), written: 0 })
    }

    fn push(&mut self, mono: &[f32]) -> Result<(), String> {
        let Some(state) = &mut self.inner else {
            self.staged.extend(mono.iter().map(|s| to_i16(*s)));
            return Ok(());
        };
        state.frames_in += mono.len() as u64;
        state.pending.extend_from_slice(mono);
        let mut consumed = 0;
        while state.pending.len() - consumed >= state.fft.input_frames_next() {
            let used = state.process(consumed, None, &mut self.staged)?;
            consumed += used;
        }
        state.pending.drain(..consumed);
        Ok(())
    }

    /// Hands the staged output to `out`.
    fn emit(&mut self, out: &mut dyn PcmSink) -> Result<(), AudioError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        out.write(&self.staged).map_err(|err| AudioError::Output(err.to_string()))?;
        self.written += self.staged.len() as u64;
        self.staged.clear();
        Ok(())
    }

    /// Stages the tail: what is left as a partial chunk, then silence until the delayed output is
    /// out, cut to the exact output length.
    fn flush(&mut self) -> Result<(), String> {
        let Some(state) = &mut self.inner else {
            return Ok(());
        };
        let rate = u64::from(state.rate);
        let expected = (state.frames_in * u64::from(TARGET_SAMPLE_RATE)).div_ceil(rate);
        let written = self.written;
        let missing = |staged: &Vec<i16>| expected.saturating_sub(written).saturating_sub(staged.len() as u64);
        let mut consumed = 0;
        let mut rounds = 0;
        while missing(&self.staged) > 0 && rounds < 10_000 {
            let partial = (state.pending.len() - consumed).min(state.fft.input_frames_next());
            consumed += state.process(consumed, Some(partial), &mut self.staged)?;
            rounds += 1;
        }
        let keep = usize::try_from(expected.saturating_sub(written)).unwrap_or(usize::MAX);
        self.staged.truncate(keep);
        Ok(())
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

#[cfg(test)]
mod tests {
    use crate::audio::test_support::{ffmpeg, sine_wav_16k_mono, source_wav, wav_bytes};
    use crate::audio::{Audio, AudioError, AudioLimits, decode};

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
}
