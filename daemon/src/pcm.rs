//! PCM samples: mono float buffers, WAV encoding/decoding, resampling and loudness. The
//! audio plumbing that speech engines, sound devices and clients share, so it depends on
//! none of them.

use std::io::Cursor;

/// Why audio could not be decoded or resampled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PcmError {
    /// The bytes are not usable audio (not WAV, truncated, no channels).
    #[error("bad audio: {0}")]
    BadAudio(String),
    /// The resampler refused its input or settings.
    #[error("resampler failed: {0}")]
    Resample(String),
}

/// Mono audio as float samples in −1..1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pcm {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Pcm {
    pub fn new(samples: Vec<f32>, sample_rate: u32) -> Self {
        Self {
            samples,
            sample_rate,
        }
    }

    pub fn duration_secs(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }

    pub fn duration_ms(&self) -> u32 {
        (self.duration_secs() * 1000.0).round() as u32
    }

    /// The same audio at `rate` (a no-op when it already is).
    pub fn resampled(&self, rate: u32) -> Result<Pcm, PcmError> {
        if rate == self.sample_rate || self.samples.is_empty() {
            return Ok(Pcm::new(self.samples.clone(), rate));
        }
        Ok(Pcm::new(
            resample(&self.samples, self.sample_rate, rate)?,
            rate,
        ))
    }

    /// 16-bit mono WAV bytes.
    pub fn to_wav(&self) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: self.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::with_capacity(44 + self.samples.len() * 2));
        // Writing to memory cannot fail for I/O reasons; the spec is valid by construction.
        if let Ok(mut w) = hound::WavWriter::new(&mut out, spec) {
            for &s in &self.samples {
                let _ = w.write_sample(to_i16(s));
            }
            let _ = w.finalize();
        }
        out.into_inner()
    }

    /// Decodes a WAV file (8/16/24/32-bit integer or float, any channel count); channels
    /// are averaged to mono.
    pub fn from_wav(bytes: &[u8]) -> Result<Pcm, PcmError> {
        let reader = hound::WavReader::new(Cursor::new(bytes))
            .map_err(|e| PcmError::BadAudio(format!("not a readable WAV file: {e}")))?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(PcmError::BadAudio(
                "WAV header has no channels or a zero sample rate".into(),
            ));
        }
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader
                .into_samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| PcmError::BadAudio(format!("truncated WAV data: {e}")))?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| PcmError::BadAudio(format!("truncated WAV data: {e}")))?
            }
        };
        let ch = usize::from(spec.channels);
        let samples = if ch == 1 {
            interleaved
        } else {
            interleaved
                .chunks(ch)
                .map(|f| f.iter().sum::<f32>() / ch as f32)
                .collect()
        };
        Ok(Pcm::new(samples, spec.sample_rate))
    }

    /// RMS of each `slice_ms` slice, divided by the loudest slice's RMS (so the loudest
    /// is 1.0; silence is all zeros). What avatars use for lip sync.
    pub fn volumes(&self, slice_ms: u32) -> Vec<f32> {
        let slice = (self.sample_rate as usize * slice_ms as usize / 1000).max(1);
        let rms: Vec<f32> = self
            .samples
            .chunks(slice)
            .map(|c| (c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32).sqrt())
            .collect();
        let max = rms.iter().copied().fold(0.0f32, f32::max);
        if max <= f32::EPSILON {
            return vec![0.0; rms.len()];
        }
        rms.into_iter().map(|r| r / max).collect()
    }

    /// Root-mean-square level of the whole buffer (0 for silence).
    pub fn rms(&self) -> f32 {
        rms(&self.samples)
    }
}

/// Root-mean-square of `samples`.
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

fn to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16
}

/// Band-limited resampling (sinc interpolation) of a whole buffer.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, PcmError> {
    use rubato::{
        Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
    };
    let params = SincInterpolationParameters {
        sinc_len: 128,
        f_cutoff: 0.95,
        interpolation: SincInterpolationType::Linear,
        oversampling_factor: 128,
        window: WindowFunction::BlackmanHarris2,
    };
    let ratio = f64::from(to) / f64::from(from);
    let chunk = 1024;
    let mut r = SincFixedIn::<f32>::new(ratio, 1.0, params, chunk, 1)
        .map_err(|e| PcmError::Resample(e.to_string()))?;
    let delay = r.output_delay();
    let expected = (samples.len() as f64 * ratio).round() as usize;
    let mut out = Vec::with_capacity(expected + delay + chunk * 2);
    // Whole chunks of input, then zero-padded chunks until the filter's delay is flushed.
    let mut block = vec![0.0f32; chunk];
    let mut pos = 0;
    while out.len() < expected + delay {
        let n = samples.len().saturating_sub(pos).min(chunk);
        block[..n].copy_from_slice(&samples[pos..pos + n]);
        block[n..].fill(0.0);
        pos += n;
        let got = r
            .process(&[&block[..]], None)
            .map_err(|e| PcmError::Resample(e.to_string()))?;
        if got[0].is_empty() && n == 0 {
            break;
        }
        out.extend_from_slice(&got[0]);
    }
    let end = (delay + expected).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

/// Resamples a live stream block by block (microphone audio to 16 kHz).
pub struct StreamResampler {
    inner: rubato::FastFixedIn<f32>,
    pending: Vec<f32>,
    chunk: usize,
}

impl StreamResampler {
    /// `None` when no resampling is needed.
    pub fn new(from: u32, to: u32) -> Option<Self> {
        if from == to || from == 0 || to == 0 {
            return None;
        }
        let chunk = (from as usize / 100).max(1);
        let inner = rubato::FastFixedIn::<f32>::new(
            f64::from(to) / f64::from(from),
            1.0,
            rubato::PolynomialDegree::Septic,
            chunk,
            1,
        )
        .ok()?;
        Some(Self {
            inner,
            pending: Vec::with_capacity(chunk * 2),
            chunk,
        })
    }

    /// Feeds samples; returns whatever whole chunks produced.
    pub fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        use rubato::Resampler;
        self.pending.extend_from_slice(samples);
        let mut out = Vec::new();
        let mut start = 0;
        while self.pending.len() - start >= self.chunk {
            if let Ok(got) = self
                .inner
                .process(&[&self.pending[start..start + self.chunk]], None)
            {
                out.extend_from_slice(&got[0]);
            }
            start += self.chunk;
        }
        self.pending.drain(..start);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn wav_round_trip_keeps_samples() {
        let pcm = Pcm::new(tone(440.0, 22050, 0.3), 22050);
        let back = Pcm::from_wav(&pcm.to_wav()).expect("decodes");
        assert_eq!(back.sample_rate, 22050);
        assert_eq!(back.samples.len(), pcm.samples.len());
        let err = pcm
            .samples
            .iter()
            .zip(&back.samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "max error {err}");
    }

    #[test]
    fn bad_wav_is_an_error() {
        assert!(matches!(
            Pcm::from_wav(b"RIFF....nonsense"),
            Err(PcmError::BadAudio(_))
        ));
    }

    #[test]
    fn resampling_keeps_length_and_pitch() {
        let src = tone(440.0, 48_000, 1.0);
        let out = resample(&src, 48_000, 16_000).expect("resamples");
        assert_eq!(out.len(), 16_000);
        // Count zero crossings: a 440 Hz tone has ~880 per second at any rate.
        let crossings = out
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((860..=900).contains(&crossings), "{crossings} crossings");
        let level = rms(&out[1000..15000]);
        assert!((level - 0.3535).abs() < 0.02, "rms {level}");
        // Shorter than one resampler chunk, and empty.
        assert_eq!(
            resample(&[0.1; 100], 22_050, 48_000).expect("short").len(),
            218
        );
        assert!(resample(&[], 22_050, 48_000).expect("empty").is_empty());
    }

    #[test]
    fn stream_resampler_keeps_the_rate() {
        let src = tone(440.0, 48_000, 1.0);
        let mut r = StreamResampler::new(48_000, 16_000).expect("resampler");
        let mut out = Vec::new();
        for block in src.chunks(333) {
            out.extend(r.push(block));
        }
        assert!((15_800..=16_000).contains(&out.len()), "{}", out.len());
        assert!(StreamResampler::new(16_000, 16_000).is_none());
    }

    #[test]
    fn volumes_are_normalised_per_slice() {
        let mut samples = vec![0.0; 441];
        samples.extend(std::iter::repeat_n(0.5, 441));
        samples.extend(std::iter::repeat_n(0.25, 441));
        let v = Pcm::new(samples, 22050).volumes(20);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], 0.0);
        assert!((v[1] - 1.0).abs() < 1e-6);
        assert!((v[2] - 0.5).abs() < 1e-6);
        assert!(
            Pcm::new(vec![0.0; 100], 16000)
                .volumes(20)
                .iter()
                .all(|&x| x == 0.0)
        );
    }
}
