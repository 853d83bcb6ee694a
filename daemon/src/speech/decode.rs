//! Audio as speech services return it (WAV, MP3, Ogg Vorbis, raw 16-bit PCM) decoded to
//! mono [`Pcm`] at the audio's own rate. Resampling is left to whoever plays it (the
//! speaker resamples once to the device rate), so a sentence is never resampled twice.
//!
//! WAV goes through hound (with streamed placeholder lengths fixed); compressed formats
//! through symphonia, built with only the codecs services send. Opus has no pure-Rust
//! decoder in symphonia, so engines ask their service for one of these formats instead.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::pcm::{Pcm, PcmError};

/// What a service said it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// Tell from the bytes (RIFF, OggS, an ID3 tag or an MPEG frame sync).
    Sniff,
    Wav,
    Mp3,
    Ogg,
    /// Headerless signed 16-bit little-endian mono samples at this rate.
    Pcm16 {
        rate: u32,
    },
}

impl AudioFormat {
    /// The format of `bytes` by their first bytes, if it is one this decoder knows.
    fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"RIFF") {
            Some(Self::Wav)
        } else if bytes.starts_with(b"OggS") {
            Some(Self::Ogg)
        } else if bytes.starts_with(b"ID3")
            || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
        {
            Some(Self::Mp3)
        } else {
            None
        }
    }
}

/// Decodes `bytes` sent as `format` to mono samples.
pub fn decode(bytes: &[u8], format: AudioFormat) -> Result<Pcm, PcmError> {
    if bytes.is_empty() {
        return Err(PcmError::BadAudio("the service sent no audio".into()));
    }
    let format = match format {
        AudioFormat::Sniff => AudioFormat::sniff(bytes).ok_or_else(|| {
            PcmError::BadAudio(format!(
                "unknown audio format (starts with {:02x?}); expected WAV, MP3 or Ogg",
                &bytes[..bytes.len().min(8)]
            ))
        })?,
        // A service asked for raw PCM may still wrap it in a WAV header.
        AudioFormat::Pcm16 { .. } if bytes.starts_with(b"RIFF") => AudioFormat::Wav,
        f => f,
    };
    match format {
        AudioFormat::Wav => Pcm::from_wav(&fix_streamed_wav(bytes)),
        AudioFormat::Pcm16 { rate } => Ok(pcm16(bytes, rate)),
        AudioFormat::Mp3 => compressed(bytes, "mp3"),
        AudioFormat::Ogg => compressed(bytes, "ogg"),
        AudioFormat::Sniff => Err(PcmError::BadAudio("unknown audio format".into())),
    }
}

/// Streaming servers (and espeak-ng) write WAV headers with placeholder lengths
/// (0 or 0xFFFFFFFF) because they do not know the length up front; put the real ones in.
pub fn fix_streamed_wav(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return bytes.into();
    }
    let mut out = bytes.to_vec();
    let riff_len = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff_len.to_le_bytes());
    let mut pos = 12;
    while pos + 8 <= out.len() {
        let id = [out[pos], out[pos + 1], out[pos + 2], out[pos + 3]];
        let len = u32::from_le_bytes([out[pos + 4], out[pos + 5], out[pos + 6], out[pos + 7]]);
        if &id == b"data" {
            let actual = (out.len() - pos - 8) as u32;
            if len == 0 || len > actual {
                out[pos + 4..pos + 8].copy_from_slice(&actual.to_le_bytes());
            }
            break;
        }
        pos += 8 + len as usize + (len as usize & 1);
    }
    out.into()
}

/// Raw signed 16-bit little-endian samples (a trailing odd byte is dropped).
fn pcm16(bytes: &[u8], rate: u32) -> Pcm {
    let samples = bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    Pcm::new(samples, rate)
}

/// MP3 or Ogg Vorbis through symphonia; channels averaged to mono. A corrupt frame is
/// skipped (as players do) rather than losing the sentence.
fn compressed(bytes: &[u8], extension: &str) -> Result<Pcm, PcmError> {
    let bad = |e: SymphoniaError| PcmError::BadAudio(format!("{extension}: {e}"));
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(bad)?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| PcmError::BadAudio(format!("{extension}: no audio track")))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(bad)?;
    let mut samples = Vec::new();
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(bad(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymphoniaError::DecodeError(e)) => {
                tracing::debug!("{extension}: skipped a corrupt frame: {e}");
                continue;
            }
            Err(e) => return Err(bad(e)),
        };
        let spec = *decoded.spec();
        rate = spec.rate;
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        samples.extend(
            buf.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
    }
    if rate == 0 || samples.is_empty() {
        return Err(PcmError::BadAudio(format!("{extension}: no audio decoded")));
    }
    Ok(Pcm::new(samples, rate))
}

/// 0.6 s of a 300→600 Hz sweep at half scale, 24 kHz mono, made with sox and lame: what
/// engine tests serve as a service's MP3.
#[cfg(test)]
pub(crate) const TEST_MP3: &[u8] = include_bytes!("fixtures/tone-24k.mp3");

#[cfg(test)]
mod tests {
    use super::*;

    const MP3: &[u8] = TEST_MP3;
    /// The same as Ogg Vorbis (sox).
    const OGG: &[u8] = include_bytes!("fixtures/tone-24k.ogg");

    fn check_tone(pcm: &Pcm) {
        assert_eq!(pcm.sample_rate, 24_000);
        let secs = pcm.duration_secs();
        // MP3 adds encoder delay and padding frames.
        assert!((0.55..0.75).contains(&secs), "duration {secs}");
        let rms = pcm.rms();
        assert!((0.25..0.45).contains(&rms), "rms {rms}");
    }

    #[test]
    fn placeholder_wav_lengths_are_fixed() {
        let pcm = Pcm::new(vec![0.25; 100], 16000);
        let mut wav = pcm.to_wav();
        wav[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let data = wav
            .windows(4)
            .position(|w| w == b"data")
            .expect("data chunk");
        wav[data + 4..data + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let back = Pcm::from_wav(&fix_streamed_wav(&wav)).expect("decodes");
        assert_eq!(back.samples.len(), 100);
    }

    #[test]
    fn mp3_decodes_by_name_and_by_sniffing() {
        check_tone(&decode(MP3, AudioFormat::Mp3).expect("mp3"));
        check_tone(&decode(MP3, AudioFormat::Sniff).expect("sniffed mp3"));
    }

    #[test]
    fn ogg_vorbis_decodes() {
        check_tone(&decode(OGG, AudioFormat::Sniff).expect("ogg"));
    }

    #[test]
    fn wav_and_raw_pcm_decode_at_their_rate() {
        let pcm = Pcm::new(
            (0..2400).map(|i| (i as f32 / 50.0).sin() * 0.5).collect(),
            24_000,
        );
        let wav = pcm.to_wav();
        let back = decode(&wav, AudioFormat::Sniff).expect("wav");
        assert_eq!(back.samples.len(), 2400);
        let raw = &wav[44..];
        let back = decode(raw, AudioFormat::Pcm16 { rate: 24_000 }).expect("raw");
        assert_eq!((back.samples.len(), back.sample_rate), (2400, 24_000));
        assert!((back.samples[100] - pcm.samples[100]).abs() < 1e-3);
        // A WAV sent where raw PCM was asked for is still read as WAV.
        let back = decode(&wav, AudioFormat::Pcm16 { rate: 8000 }).expect("wav");
        assert_eq!(back.sample_rate, 24_000);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(decode(b"", AudioFormat::Sniff).is_err());
        assert!(decode(b"{\"error\":1}", AudioFormat::Sniff).is_err());
        assert!(decode(&MP3[..20], AudioFormat::Mp3).is_err());
        assert!(decode(b"OggS\0\0\0garbage", AudioFormat::Ogg).is_err());
        // Half an MP3 is the first half of the audio.
        let half = decode(&MP3[..MP3.len() / 2], AudioFormat::Mp3).expect("half");
        assert!(half.duration_secs() > 0.2, "{}", half.duration_secs());
    }
}
