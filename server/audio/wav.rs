//! The 16 kHz mono PCM16 WAV format of the worker contract, and files of it: where decoded audio
//! goes ([`PcmSink`]: a `Vec`, or a [`WavFileWriter`] that streams it to disk), and how a stored
//! file is read back a window at a time ([`WavFileReader`]), so that neither writing nor reading
//! a long recording holds all of it in memory.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::{Audio, SAMPLES_PER_MS, TARGET_SAMPLE_RATE};

const BYTES_PER_SAMPLE: u32 = 2;

/// Most data bytes a WAV file holds: a RIFF chunk size is a u32 (about 37 hours of 16 kHz mono
/// PCM16).
pub const MAX_WAV_DATA_BYTES: u32 = (u32::MAX - 36) / BYTES_PER_SAMPLE * BYTES_PER_SAMPLE;

/// Where decoded audio goes: 16 kHz mono PCM16, block by block, as it is decoded.
pub trait PcmSink {
    /// Takes the next samples; an error stops the decode ([`super::AudioError::Output`]).
    fn write(&mut self, samples: &[i16]) -> io::Result<()>;
}

impl PcmSink for Vec<i16> {
    fn write(&mut self, samples: &[i16]) -> io::Result<()> {
        self.extend_from_slice(samples);
        Ok(())
    }
}

/// `samples` as little-endian PCM16 bytes: the samples' own memory on a little-endian machine,
/// else a conversion into `scratch`.
pub fn pcm16_le_bytes<'a>(samples: &'a [i16], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if cfg!(target_endian = "little") {
        return bytemuck::cast_slice(samples);
    }
    scratch.clear();
    scratch.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    scratch
}

/// The canonical 44-byte RIFF/WAVE header (`WAVE_FORMAT_PCM`, the layout hound writes for
/// 16-bit mono) for `data_len` bytes of 16 kHz mono PCM16.
pub(super) fn wav_header(data_len: u32) -> [u8; 44] {
    let mut out = [0u8; 44];
    let fields: [&[u8]; 13] = [
        b"RIFF",
        &(36u32.saturating_add(data_len)).to_le_bytes(),
        b"WAVE",
        b"fmt ",
        &16u32.to_le_bytes(), // fmt chunk size
        &1u16.to_le_bytes(),  // WAVE_FORMAT_PCM
        &1u16.to_le_bytes(),  // channels
        &TARGET_SAMPLE_RATE.to_le_bytes(),
        &(TARGET_SAMPLE_RATE * BYTES_PER_SAMPLE).to_le_bytes(), // byte rate
        &(BYTES_PER_SAMPLE as u16).to_le_bytes(),               // block align
        &16u16.to_le_bytes(),                                   // bits per sample
        b"data",
        &data_len.to_le_bytes(),
    ];
    let mut at = 0;
    for field in fields {
        out[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    out
}

/// Streams decoded audio into a WAV file: the header goes first with a zero length and is
/// rewritten with the real one by [`WavFileWriter::finish`]. Memory use is one write buffer.
pub struct WavFileWriter {
    file: BufWriter<File>,
    data_len: u32,
    bytes: Vec<u8>,
}

impl WavFileWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> io::Result<WavFileWriter> {
        let mut file = BufWriter::with_capacity(256 * 1024, File::create(path)?);
        file.write_all(&wav_header(0))?;
        Ok(WavFileWriter { file, data_len: 0, bytes: Vec::new() })
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        u64::from(self.data_len / BYTES_PER_SAMPLE)
    }

    /// Writes what is buffered and the header with the final length.
    pub fn finish(self) -> io::Result<()> {
        let mut file = self.file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&wav_header(self.data_len))?;
        file.flush()
    }
}

impl PcmSink for WavFileWriter {
    fn write(&mut self, samples: &[i16]) -> io::Result<()> {
        let len = u32::try_from(samples.len()).ok().and_then(|n| n.checked_mul(BYTES_PER_SAMPLE));
        let Some(data_len) = len.and_then(|n| self.data_len.checked_add(n)).filter(|n| *n <= MAX_WAV_DATA_BYTES) else {
            return Err(io::Error::other("the audio is longer than a WAV file holds (about 37 hours)"));
        };
        self.file.write_all(pcm16_le_bytes(samples, &mut self.bytes))?;
        self.data_len = data_len;
        Ok(())
    }
}

/// A stored 16 kHz mono PCM16 WAV file, read a window at a time.
pub struct WavFileReader {
    reader: hound::WavReader<BufReader<File>>,
}

impl WavFileReader {
    /// Opens the file and checks that it is 16 kHz mono PCM16.
    pub fn open(path: &Path) -> io::Result<WavFileReader> {
        let reader = hound::WavReader::open(path).map_err(hound_error)?;
        let spec = reader.spec();
        if spec.sample_rate != TARGET_SAMPLE_RATE
            || spec.channels != 1
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is not 16 kHz mono PCM16", path.display())));
        }
        Ok(WavFileReader { reader })
    }

    /// Duration in whole milliseconds (rounded down), as [`Audio::duration_ms`].
    pub fn duration_ms(&self) -> u64 {
        u64::from(self.reader.duration()) / SAMPLES_PER_MS
    }

    /// The samples of `[start_ms, end_ms)`, both ends clamped to the file, as [`Audio::slice`]
    /// would cut them from the whole recording.
    pub fn read(&mut self, start_ms: u64, end_ms: u64) -> io::Result<Audio> {
        let len = self.reader.duration();
        let index = |ms: u64| u32::try_from(ms.saturating_mul(SAMPLES_PER_MS)).unwrap_or(u32::MAX).min(len);
        let end = index(end_ms);
        let start = index(start_ms).min(end);
        self.reader.seek(start)?;
        let samples = self.reader.samples::<i16>().take((end - start) as usize).collect::<Result<Vec<_>, _>>().map_err(hound_error)?;
        if samples.len() != (end - start) as usize {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stored audio ends early"));
        }
        Ok(Audio::from_pcm16(samples))
    }
}

fn hound_error(err: hound::Error) -> io::Error {
    match err {
        hound::Error::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_support::{ffmpeg, source_wav, speechlike, wav_bytes};
    use crate::audio::{AudioError, AudioLimits, decode, decode_into};

    /// Records the size of each block it is handed.
    #[derive(Default)]
    struct Blocks {
        samples: Vec<i16>,
        largest: usize,
    }

    impl PcmSink for Blocks {
        fn write(&mut self, samples: &[i16]) -> io::Result<()> {
            self.largest = self.largest.max(samples.len());
            self.samples.extend_from_slice(samples);
            Ok(())
        }
    }

    /// Streaming gives exactly what decoding in memory gives, in blocks of about a packet or a
    /// resampler chunk: nothing waits for the end of the stream.
    #[test]
    fn decoding_streams_the_same_samples_in_small_blocks() {
        let (dir, path, wav) = source_wav();
        let mut inputs = vec![("wav 44.1 kHz", wav), ("wav 8 kHz", wav_bytes(8_000, 1, &speechlike(8_000, 1, 3.0)))];
        inputs.extend(ffmpeg(&path, dir.path(), "s.mp3", &[]).map(|b| ("mp3", b)));
        inputs.extend(ffmpeg(&path, dir.path(), "s.opus", &[]).map(|b| ("opus", b)));
        for (name, bytes) in inputs {
            let whole = decode(&bytes, &AudioLimits::default()).unwrap();
            let mut blocks = Blocks::default();
            let decoded = decode_into(&bytes, &AudioLimits::default(), &mut blocks).unwrap();
            assert_eq!(blocks.samples, whole.samples, "{name}");
            assert_eq!(decoded.samples, whole.samples.len() as u64, "{name}");
            assert_eq!((decoded.format, decoded.codec.as_str()), (whole.format, whole.codec.as_str()), "{name}");
            // At most a second of output at once, whatever the duration (these are 3 s long).
            assert!(blocks.largest <= 16_000, "{name}: a block of {} samples", blocks.largest);

            let out = dir.path().join(format!("{name}.wav"));
            let mut file = WavFileWriter::create(&out).unwrap();
            decode_into(&bytes, &AudioLimits::default(), &mut file).unwrap();
            file.finish().unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), whole.to_wav(), "{name}: the file is what to_wav gives");
        }
    }

    /// A sink that fails stops the decode with an error of this side (500), not the upload's.
    #[test]
    fn a_failing_sink_stops_the_decode() {
        struct Full(usize);
        impl PcmSink for Full {
            fn write(&mut self, samples: &[i16]) -> io::Result<()> {
                self.0 += 1;
                if self.0 > 2 && !samples.is_empty() { Err(io::Error::other("disk full")) } else { Ok(()) }
            }
        }
        let (_dir, _path, wav) = source_wav();
        let mut sink = Full(0);
        let err = decode_into(&wav, &AudioLimits::default(), &mut sink).unwrap_err();
        assert_eq!(err, AudioError::Output("disk full".into()));
        assert_eq!(err.status(), 500);
        assert_eq!(sink.0, 3, "no block after the failure");
    }

    #[test]
    fn a_streamed_file_reads_back_window_by_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..48_000).map(|i| (i % 30_000) as i16 - 15_000).collect();
        let mut writer = WavFileWriter::create(&path).unwrap();
        for block in samples.chunks(1000) {
            writer.write(block).unwrap();
        }
        assert_eq!(writer.samples(), 48_000);
        writer.finish().unwrap();
        // The file is the same bytes `to_wav` gives for the whole recording.
        let whole = Audio::from_pcm16(samples.clone());
        assert_eq!(std::fs::read(&path).unwrap(), whole.to_wav());

        let mut reader = WavFileReader::open(&path).unwrap();
        assert_eq!(reader.duration_ms(), 3000);
        for (from, to) in [(0, 3000), (250, 500), (2900, 5000), (1000, 1000), (2000, 1000), (4000, 5000)] {
            assert_eq!(reader.read(from, to).unwrap(), whole.slice(from, to), "{from}..{to}");
        }
    }

    #[test]
    fn other_formats_are_not_read_as_stored_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo.wav");
        let spec = hound::WavSpec { channels: 2, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        hound::WavWriter::create(&path, spec).unwrap().finalize().unwrap();
        assert_eq!(WavFileReader::open(&path).err().unwrap().kind(), io::ErrorKind::InvalidData);
        assert!(WavFileReader::open(&dir.path().join("missing.wav")).is_err());
    }
}
