//! Content sniffing: which audio container an upload is, told from its first bytes (magic numbers,
//! ID3v2 tags, ISO BMFF brands, MPEG audio frame headers), never from a file name.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
