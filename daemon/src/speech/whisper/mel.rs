//! Whisper's log-mel spectrogram, computed the way OpenAI's `log_mel_spectrogram` does:
//! centred STFT (reflect padding, periodic Hann window, n_fft 400, hop 160), power
//! spectrum, Slaney-normalised mel filterbank (librosa's default, built here rather than
//! shipped as a table), log10 with a 1e-10 floor, clamp to max − 8, then (x + 4) / 4.
//!
//! Audio is treated as followed by silence (OpenAI pads with 30 s of zeros), so frames
//! past the end are not computed: their power is 0, i.e. log10(1e-10).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// log10 of the power floor: the value of a frame of pure silence.
const SILENCE: f32 = -10.0;

/// Triangular mel filters, stored as their non-zero span per band.
pub struct MelFilters {
    n_mels: usize,
    /// Per band: first FFT bin and the weights from there on.
    bands: Vec<(usize, Vec<f32>)>,
}

fn hz_to_mel(hz: f64) -> f64 {
    // Slaney's scale: linear to 1 kHz, logarithmic above (librosa, htk=False).
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

impl MelFilters {
    /// `librosa.filters.mel(sr, n_fft, n_mels)` with its defaults (fmin 0, fmax sr/2,
    /// Slaney scale and area normalisation), which is what Whisper's `mel_filters.npz` holds.
    pub fn new(sample_rate: usize, n_fft: usize, n_mels: usize) -> Self {
        let n_bins = n_fft / 2 + 1;
        let fft_freqs: Vec<f64> = (0..n_bins)
            .map(|k| k as f64 * sample_rate as f64 / n_fft as f64)
            .collect();
        let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate as f64 / 2.0));
        let mel_f: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
            .collect();
        let bands = (0..n_mels)
            .map(|m| {
                let (f0, f1, f2) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
                let enorm = 2.0 / (f2 - f0);
                let w: Vec<f32> = fft_freqs
                    .iter()
                    .map(|&f| {
                        let lower = (f - f0) / (f1 - f0);
                        let upper = (f2 - f) / (f2 - f1);
                        (lower.min(upper).max(0.0) * enorm) as f32
                    })
                    .collect();
                let start = w.iter().position(|&x| x > 0.0).unwrap_or(0);
                let end = w.iter().rposition(|&x| x > 0.0).map_or(start, |e| e + 1);
                (start, w[start..end].to_vec())
            })
            .collect();
        Self { n_mels, bands }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The dense filter matrix (n_mels × (n_fft/2+1)), for tests and comparisons.
    pub fn dense(&self, n_bins: usize) -> Vec<Vec<f32>> {
        self.bands
            .iter()
            .map(|(start, w)| {
                let mut row = vec![0.0; n_bins];
                for (i, &x) in w.iter().enumerate() {
                    if let Some(r) = row.get_mut(start + i) {
                        *r = x;
                    }
                }
                row
            })
            .collect()
    }
}

/// A normalised log-mel spectrogram of some audio followed by endless silence.
pub struct LogMel {
    n_mels: usize,
    /// Frames actually computed, band-major: `data[m * n_frames + t]`.
    n_frames: usize,
    data: Vec<f32>,
    /// What a silent frame normalises to.
    silence: f32,
    /// Frames of real audio (OpenAI's `content_frames`): samples / hop.
    pub content_frames: usize,
}

impl LogMel {
    /// Band-major mel frames `offset..offset + n` (n_mels × n), silence past the end.
    pub fn window(&self, offset: usize, n: usize) -> Vec<f32> {
        let mut out = vec![self.silence; self.n_mels * n];
        let have = self.n_frames.saturating_sub(offset).min(n);
        for m in 0..self.n_mels {
            let src = &self.data[m * self.n_frames + offset..][..have];
            out[m * n..m * n + have].copy_from_slice(src);
        }
        out
    }
}

/// Computes Whisper's input features for `samples` (16 kHz mono).
pub struct MelComputer {
    filters: MelFilters,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
}

impl MelComputer {
    pub fn new(n_mels: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        // torch.hann_window(400) is periodic: the denominator is N, not N − 1.
        let window = (0..N_FFT)
            .map(|i| {
                let x = 2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64;
                (0.5 * (1.0 - x.cos())) as f32
            })
            .collect();
        Self {
            filters: MelFilters::new(SAMPLE_RATE, N_FFT, n_mels),
            fft: planner.plan_fft_forward(N_FFT),
            window,
        }
    }

    pub fn n_mels(&self) -> usize {
        self.filters.n_mels
    }

    /// The normalised log-mel spectrogram. Non-finite samples count as silence.
    pub fn compute(&self, samples: &[f32]) -> LogMel {
        let n_mels = self.filters.n_mels;
        let len = samples.len();
        let half = N_FFT / 2;
        // With torch.stft(center=True) frame t covers samples t·hop − 200 .. t·hop + 200 of
        // the reflect-padded signal; frames whose span starts past the audio are silence.
        let content_frames = len / HOP;
        let n_frames = if len == 0 {
            0
        } else {
            (len + half).div_ceil(HOP)
        };
        // OpenAI pads the audio with zeros before the STFT, so the reflection at the end
        // mirrors silence; at the start it mirrors the audio (or zeros past its end).
        let at = |i: isize| -> f32 {
            let i = if i < 0 { -i } else { i };
            samples
                .get(i as usize)
                .copied()
                .filter(|s| s.is_finite())
                .unwrap_or(0.0)
        };
        let mut data = vec![0.0f32; n_mels * n_frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; spectrum.len()];
        let mut max = f32::NEG_INFINITY;
        for t in 0..n_frames {
            let start = (t * HOP) as isize - half as isize;
            for (j, x) in input.iter_mut().enumerate() {
                *x = at(start + j as isize) * self.window[j];
            }
            // Lengths come from the planner, so this cannot fail.
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (m, (start, w)) in self.filters.bands.iter().enumerate() {
                let e: f32 = w.iter().zip(&power[*start..]).map(|(a, b)| a * b).sum();
                let v = e.max(1e-10).log10();
                max = max.max(v);
                data[m * n_frames + t] = v;
            }
        }
        // The padding is silence too, and OpenAI takes the maximum over it as well.
        let max = max.max(SILENCE);
        let floor = max - 8.0;
        let norm = |v: f32| (v.max(floor) + 4.0) / 4.0;
        for v in &mut data {
            *v = norm(*v);
        }
        LogMel {
            n_mels,
            n_frames,
            data,
            silence: norm(SILENCE),
            content_frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterbank_matches_librosa() {
        // Spot values of librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), i.e.
        // Whisper's mel_filters.npz["mel_80"].
        let f = MelFilters::new(16_000, 400, 80).dense(201);
        assert_eq!(f.len(), 80);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6 * b.abs().max(1e-3);
        assert!(close(f[0][1], 0.024_862_595), "{}", f[0][1]);
        assert!(close(f[1][2], 0.022_871_772), "{}", f[1][2]);
        for (m, k, v) in [
            (10, 11, 0.004_954_375),
            (40, 43, 0.014_735_566),
            (60, 93, 0.006_591_093),
            (79, 193, 0.003_141_313_3),
        ] {
            assert!(close(f[m][k], v), "band {m} bin {k}: {} vs {v}", f[m][k]);
        }
        let peak79 = f[79].iter().copied().fold(0.0, f32::max);
        assert!(close(peak79, 0.003_164_711_9), "{peak79}");
        assert!(f[0][0] == 0.0 && f[0][2] == 0.0);
        // Area normalisation: higher bands are wider and lower.
        let peak = |r: &Vec<f32>| r.iter().copied().fold(0.0, f32::max);
        assert!(peak(&f[79]) < peak(&f[10]));
        assert!(f.iter().all(|r| r.iter().any(|&x| x > 0.0)));
    }

    fn sine(freq: f32, secs: f32) -> Vec<f32> {
        (0..(SAMPLE_RATE as f32 * secs) as usize)
            .map(|i| {
                0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / SAMPLE_RATE as f32).sin()
            })
            .collect()
    }

    #[test]
    fn sine_energy_lands_in_its_band() {
        let mc = MelComputer::new(80);
        let dense = mc.filters.dense(201);
        for freq in [440.0f32, 1000.0, 3000.0] {
            let mel = mc.compute(&sine(freq, 1.0));
            assert_eq!(mel.content_frames, 100);
            let frames = mel.window(0, 100);
            // A middle frame: the loudest band is the one whose filter peaks nearest freq.
            let t = 50;
            let col: Vec<f32> = (0..80).map(|m| frames[m * 100 + t]).collect();
            let loudest = (0..80)
                .max_by(|&a, &b| col[a].total_cmp(&col[b]))
                .unwrap_or(0);
            let bin = (freq as usize * N_FFT) / SAMPLE_RATE;
            let expected = (0..80)
                .max_by(|&a, &b| dense[a][bin].total_cmp(&dense[b][bin]))
                .unwrap_or(0);
            assert!(
                loudest.abs_diff(expected) <= 1,
                "{freq} Hz: band {loudest}, want {expected}"
            );
            // Normalised to at most (max + 4) / 4, floored 8 below the max.
            let top = col[loudest];
            assert!(col.iter().all(|&v| v >= top - 2.0 - 1e-5 && v <= top));
        }
    }

    #[test]
    fn silence_and_padding() {
        let mc = MelComputer::new(80);
        let mel = mc.compute(&vec![0.0; 1600]);
        assert_eq!(mel.content_frames, 10);
        // All silence: log10(1e-10) = −10, normalised to −1.5 everywhere, padding included.
        assert!(mel.window(0, 30).iter().all(|&v| (v + 1.5).abs() < 1e-6));
        let empty = mc.compute(&[]);
        assert_eq!(empty.content_frames, 0);
        assert_eq!(empty.window(0, 4).len(), 320);
        // A loud tone then silence: the padding is the floor, max − 8.
        let mel = mc.compute(&sine(440.0, 0.5));
        let w = mel.window(0, 3000);
        let top = w.iter().copied().fold(f32::MIN, f32::max);
        assert!((w[2999] - (top - 2.0)).abs() < 1e-5);
    }
}
