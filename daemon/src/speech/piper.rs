//! Piper text-to-speech (VITS voices exported to ONNX, <https://github.com/OHF-Voice/piper1-gpl>).
//!
//! A voice is a `.onnx` model plus its `.onnx.json` config (sample rate, espeak voice,
//! phoneme ids, inference defaults). Text becomes IPA through the `espeak-ng` program
//! ([`super::espeak`]), IPA becomes ids exactly as Piper's phonemizer maps them, and each
//! sentence is one model run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use super::{SpeechError, espeak, onnx};
use crate::pcm::Pcm;

const WHAT: &str = "Piper voice";
const MISSING_HINT: &str = "run scripts/fetch-model.sh --only tts, or point the TTS config at a Piper voice (.onnx with its .onnx.json)";
/// Silence between the sentences of one call. Piper's CLI uses 0.2 s; the daemon already
/// speaks sentence by sentence, so this only separates sentences within one request.
const SENTENCE_GAP_SECS: f32 = 0.1;
/// Peak level of the output. Piper normalises to full scale; a little headroom avoids
/// clipping after resampling.
const PEAK: f32 = 0.95;
/// Default intra-op threads for a run: enough to stay well under real time, few enough to
/// leave the LLM its cores.
const THREADS: usize = 2;

const BOS: char = '^';
const EOS: char = '$';
const PAD: char = '_';

/// The parts of a Piper voice config this engine uses.
#[derive(Debug, Clone, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    #[serde(default)]
    espeak: Option<EspeakConfig>,
    #[serde(default)]
    inference: InferenceConfig,
    #[serde(default)]
    phoneme_type: Option<String>,
    #[serde(default)]
    phoneme_map: HashMap<String, Vec<String>>,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    num_speakers: u32,
    #[serde(default)]
    dataset: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for InferenceConfig {
    /// Piper's defaults, for configs that leave them out.
    fn default() -> Self {
        Self {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

/// How text turns into the phoneme symbols the voice was trained on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phonemes {
    /// IPA from espeak-ng with this voice.
    Espeak(String),
    /// The text's own characters (Piper's `"text"` phoneme type).
    Text,
}

/// A loaded Piper voice.
pub struct PiperVoice {
    session: Session,
    path: PathBuf,
    name: String,
    sample_rate: u32,
    phonemes: Phonemes,
    inference: InferenceConfig,
    ids: HashMap<char, Vec<i64>>,
    phoneme_map: HashMap<char, Vec<char>>,
    /// Speaker id for multi-speaker voices (the model then has a `sid` input).
    speaker: Option<i64>,
    output: String,
}

impl PiperVoice {
    /// Loads `model` and its config (`config`, default: the model path + `.json`), running
    /// on two threads.
    pub fn load(model: &Path, config: Option<&Path>) -> Result<Self, SpeechError> {
        Self::load_with_threads(model, config, THREADS)
    }

    /// [`PiperVoice::load`] with the number of threads one synthesis may use.
    pub fn load_with_threads(
        model: &Path,
        config: Option<&Path>,
        threads: usize,
    ) -> Result<Self, SpeechError> {
        let config_path = config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(format!("{}.json", model.display())));
        for path in [model, config_path.as_path()] {
            if !path.is_file() {
                return Err(SpeechError::Missing {
                    what: WHAT,
                    path: path.to_path_buf(),
                    hint: MISSING_HINT.into(),
                });
            }
        }
        let config_error = |reason: String| SpeechError::Load {
            what: "Piper voice config",
            path: config_path.clone(),
            reason,
        };
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| config_error(e.to_string()))?;
        let cfg: VoiceConfig =
            serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?;
        let phonemes = match (cfg.phoneme_type.as_deref(), &cfg.espeak) {
            (Some("text"), _) => Phonemes::Text,
            (None | Some("espeak"), Some(e)) => Phonemes::Espeak(e.voice.clone()),
            (None | Some("espeak"), None) => {
                return Err(config_error("no `espeak.voice` to phonemize with".into()));
            }
            (Some(other), _) => {
                return Err(config_error(format!("unsupported phoneme_type `{other}`")));
            }
        };
        if cfg.audio.sample_rate == 0 {
            return Err(config_error("audio.sample_rate is 0".into()));
        }
        let mut ids = HashMap::new();
        for (key, value) in &cfg.phoneme_id_map {
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => {
                    ids.insert(c, value.clone());
                }
                _ => tracing::debug!(key, "ignoring multi-character phoneme in Piper id map"),
            }
        }
        for required in [BOS, EOS, PAD] {
            if !ids.contains_key(&required) {
                return Err(config_error(format!("phoneme_id_map has no `{required}`")));
            }
        }
        let phoneme_map = cfg
            .phoneme_map
            .iter()
            .filter_map(|(k, v)| {
                let mut chars = k.chars();
                let from = chars.next()?;
                chars
                    .next()
                    .is_none()
                    .then(|| (from, v.iter().flat_map(|s| s.chars()).collect()))
            })
            .collect();

        let session = onnx::session(model, WHAT, threads)?;
        let inputs = onnx::input_names(&session);
        for want in ["input", "input_lengths", "scales"] {
            if !inputs.iter().any(|n| n == want) {
                return Err(SpeechError::Load {
                    what: WHAT,
                    path: model.to_path_buf(),
                    reason: format!(
                        "not a Piper model: no `{want}` input ({})",
                        onnx::describe_io(&session)
                    ),
                });
            }
        }
        let speaker = inputs.iter().any(|n| n == "sid").then_some(0);
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_owned())
            .unwrap_or_else(|| "output".into());
        let name = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .or(cfg.dataset.clone())
            .unwrap_or_else(|| "piper".into());
        tracing::debug!(path = %model.display(), io = %onnx::describe_io(&session), speakers = cfg.num_speakers, "loaded Piper voice");
        Ok(Self {
            session,
            path: model.to_path_buf(),
            name,
            sample_rate: cfg.audio.sample_rate,
            phonemes,
            inference: cfg.inference,
            ids,
            phoneme_map,
            speaker,
            output,
        })
    }

    /// The rate of the audio [`PiperVoice::synthesize`] returns (22050 Hz for most voices).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn model_path(&self) -> &Path {
        &self.path
    }

    /// Speaks `text`. `speed` 1.0 is the voice's normal pace, 2.0 twice as fast. Text with
    /// nothing to say gives empty audio.
    pub fn synthesize(&mut self, text: &str, speed: f32) -> Result<Pcm, SpeechError> {
        let sentences = match &self.phonemes {
            Phonemes::Espeak(voice) => espeak::phonemize(text, voice)?,
            Phonemes::Text => vec![text.trim().to_owned()],
        };
        let speed = if speed.is_finite() && speed > 0.0 {
            speed.clamp(0.25, 4.0)
        } else {
            1.0
        };
        let gap = (SENTENCE_GAP_SECS * self.sample_rate as f32) as usize;
        let mut samples = Vec::new();
        for sentence in sentences {
            let ids = self.phoneme_ids(&sentence);
            // Only BOS, pad and EOS: nothing to say.
            if ids.len() <= self.empty_len() {
                continue;
            }
            if !samples.is_empty() {
                samples.resize(samples.len() + gap, 0.0);
            }
            samples.extend(self.infer(ids, speed)?);
        }
        let peak = samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        // As Piper does, bring quiet output up (but never boost near-silence into noise).
        let gain = PEAK / peak.max(0.01);
        for s in &mut samples {
            *s = (*s * gain).clamp(-1.0, 1.0);
        }
        Ok(Pcm::new(samples, self.sample_rate))
    }

    /// Length of the id sequence for no phonemes at all.
    fn empty_len(&self) -> usize {
        [BOS, PAD, EOS]
            .iter()
            .map(|c| self.ids.get(c).map_or(0, Vec::len))
            .sum()
    }

    /// Piper's id sequence: BOS, pad, then each phoneme's ids followed by pad, then EOS.
    /// Phonemes are NFD-decomposed first, as Piper does (so `ç` can be `c` + cedilla).
    fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let pad = self.ids.get(&PAD).cloned().unwrap_or_default();
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        ids.extend(self.ids.get(&BOS).into_iter().flatten());
        ids.extend(&pad);
        let mapped = phonemes.nfd().flat_map(|c| match self.phoneme_map.get(&c) {
            Some(to) => to.clone(),
            None => vec![c],
        });
        for c in mapped {
            match self.ids.get(&c) {
                Some(id) => {
                    ids.extend(id);
                    ids.extend(&pad);
                }
                None => tracing::debug!(phoneme = %c, "phoneme not in the voice's id map; skipped"),
            }
        }
        ids.extend(self.ids.get(&EOS).into_iter().flatten());
        ids
    }

    fn infer(&mut self, ids: Vec<i64>, speed: f32) -> Result<Vec<f32>, SpeechError> {
        let fail = |e: ort::Error| SpeechError::inference("Piper synthesis", e);
        let n = ids.len();
        let input = Tensor::from_array(([1usize, n], ids)).map_err(fail)?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(fail)?;
        let scales = Tensor::from_array((
            [3usize],
            vec![
                self.inference.noise_scale,
                self.inference.length_scale / speed,
                self.inference.noise_w,
            ],
        ))
        .map_err(fail)?;
        let mut inputs = ort::inputs! {
            "input" => input,
            "input_lengths" => lengths,
            "scales" => scales,
        };
        if let Some(sid) = self.speaker {
            let sid = Tensor::from_array(([1usize], vec![sid])).map_err(fail)?;
            inputs.push(("sid".into(), sid.into()));
        }
        let outputs = self.session.run(inputs).map_err(fail)?;
        let audio = outputs.get(&self.output).ok_or_else(|| {
            SpeechError::inference("Piper synthesis", format!("no `{}` output", self.output))
        })?;
        let (_, samples) = audio.try_extract_tensor::<f32>().map_err(fail)?;
        Ok(samples.to_vec())
    }

    /// One line for logs and status: voice, rate, phonemizer.
    pub fn describe(&self) -> String {
        let phonemes = match &self.phonemes {
            Phonemes::Espeak(v) => format!("espeak-ng {v}"),
            Phonemes::Text => "text".into(),
        };
        format!(
            "Piper voice {} ({} Hz, {phonemes}{})",
            self.name,
            self.sample_rate,
            if self.speaker.is_some() {
                ", multi-speaker"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_path() -> PathBuf {
        vtuber_shared::paths::models_dir().join("piper/en_US-joe-medium.onnx")
    }

    /// The real voice is required (CI installs it); missing means setup was not run.
    fn load_voice() -> PiperVoice {
        if let Err(e) = onnx::init_runtime(None) {
            panic!("ONNX Runtime missing ({e}); run scripts/setup.sh");
        }
        match PiperVoice::load(&model_path(), None) {
            Ok(v) => v,
            Err(e) => panic!("Piper voice unavailable ({e}); run scripts/setup.sh"),
        }
    }

    #[test]
    fn engines_can_move_to_their_threads() {
        fn send<T: Send>() {}
        send::<PiperVoice>();
        send::<crate::speech::vad::SileroVad>();
        send::<crate::speech::vad::Segmenter>();
    }

    #[test]
    fn missing_files_are_reported() {
        let err = PiperVoice::load(Path::new("/nonexistent/voice.onnx"), None)
            .err()
            .expect("missing");
        assert!(
            matches!(err, SpeechError::Missing { what: WHAT, .. }),
            "{err:?}"
        );
        let err = PiperVoice::load(&model_path(), Some(Path::new("/nonexistent/voice.json")))
            .err()
            .expect("missing config");
        assert!(
            matches!(&err, SpeechError::Missing { path, .. } if path.ends_with("voice.json")),
            "{err:?}"
        );
    }

    #[test]
    fn ids_follow_piper() {
        let voice = load_voice();
        // "^", "_", then h _ ə _ ... , "$" with the joe voice's map.
        let ids = voice.phoneme_ids("hə.");
        let id = |c: char| voice.ids[&c][0];
        assert_eq!(
            ids,
            [
                id('^'),
                id('_'),
                id('h'),
                id('_'),
                id('ə'),
                id('_'),
                id('.'),
                id('_'),
                id('$')
            ]
        );
        // Unknown symbols are skipped; precomposed letters are decomposed first.
        assert_eq!(voice.phoneme_ids("h☃"), voice.phoneme_ids("h"));
        assert_eq!(voice.phoneme_ids("ã"), voice.phoneme_ids("a\u{303}"));
        assert!(
            voice.describe().contains("22050 Hz"),
            "{}",
            voice.describe()
        );
    }

    #[test]
    fn speaks_a_sentence() {
        let mut voice = load_voice();
        assert_eq!(voice.sample_rate(), 22050);
        let pcm = voice
            .synthesize("Hello there, how are you today?", 1.0)
            .expect("synthesizes");
        assert_eq!(pcm.sample_rate, 22050);
        let secs = pcm.duration_secs();
        assert!((1.0..4.0).contains(&secs), "{secs} s");
        assert!(pcm.rms() > 0.05, "rms {}", pcm.rms());
        // Faster speech is shorter.
        let fast = voice
            .synthesize("Hello there, how are you today?", 2.0)
            .expect("synthesizes");
        assert!(
            fast.duration_secs() < secs * 0.75,
            "{} vs {secs}",
            fast.duration_secs()
        );
        assert!(
            voice
                .synthesize(" ... ", 1.0)
                .expect("empty")
                .samples
                .is_empty()
        );
    }
}
