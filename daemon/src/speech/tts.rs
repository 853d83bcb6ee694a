//! Speech synthesis: [`Tts`] speaks every character's voice with Piper (on its own
//! thread), espeak-ng, an OpenAI-compatible service or one of the [`super::tts_http`]
//! services, falling back to espeak-ng when a Piper voice cannot load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vtuber_shared::{EngineStatus, ModelLoad};

use super::espeak::EspeakTts;
use super::model_paths::ModelPaths;
use super::piper::PiperVoice;
use super::remote::Endpoint;
use super::tts_http::{Engines, SpeakRequest};
use super::worker::Worker;
use super::{DEFAULT_PIPER_VOICE, SpeechError, Voice};
use crate::config::SpeechConfig;
use crate::pcm::Pcm;

/// Loaded Piper voices by file, on one thread (synthesis is serial anyway: the next
/// sentence is made while the current one plays).
pub struct PiperVoices {
    voices: HashMap<PathBuf, PiperVoice>,
    /// Inference threads for each voice (`speech.tts.threads`).
    threads: usize,
}

impl PiperVoices {
    fn voice(&mut self, path: &Path) -> Result<&mut PiperVoice, SpeechError> {
        if !self.voices.contains_key(path) {
            let v = PiperVoice::load_with_threads(path, None, self.threads)?;
            self.voices.insert(path.to_path_buf(), v);
        }
        self.voices
            .get_mut(path)
            .ok_or_else(|| SpeechError::inference("Piper", "voice cache"))
    }
}

/// Speech synthesis for every character's voice.
#[derive(Clone)]
pub struct Tts {
    paths: ModelPaths,
    piper: Worker<PiperVoices>,
    remote: Endpoint,
    /// The network services (`elevenlabs`, `azure`, ...).
    services: Engines,
    /// `speech.tts.backend`: the engine of voices that name none.
    backend: String,
    /// Piper voices that could not load, so the fallback is announced once.
    fallen_back: Arc<Mutex<HashMap<PathBuf, String>>>,
}

impl Tts {
    pub fn new(cfg: &SpeechConfig, paths: &ModelPaths) -> Result<Self, SpeechError> {
        let runtime = paths.onnxruntime.clone();
        let threads = crate::cpu_plan::tts_threads(cfg.tts.threads, crate::cpu_plan::cores());
        Ok(Self {
            paths: paths.clone(),
            piper: Worker::spawn("tts-piper", move || {
                super::onnx::init_runtime(runtime.as_deref())?;
                Ok(PiperVoices {
                    voices: HashMap::new(),
                    threads,
                })
            }),
            remote: Endpoint::new(
                "speech synthesis server",
                "speech.tts",
                &cfg.tts.base_url,
                &cfg.tts.model,
                cfg.tts.api_key_env.as_deref(),
                Duration::from_secs(cfg.tts.timeout_secs.max(1)),
            )?,
            services: Engines::new(&cfg.tts)?,
            backend: if cfg.tts.backend.trim().is_empty() {
                "piper".into()
            } else {
                cfg.tts.backend.trim().to_owned()
            },
            fallen_back: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The engine `voice` speaks with.
    fn engine<'a>(&'a self, voice: &'a Voice) -> &'a str {
        if voice.tts.trim().is_empty() {
            &self.backend
        } else {
            voice.tts.trim()
        }
    }

    /// Sentences of `voice` to synthesize at once: `configured` (`speech.tts.parallel`)
    /// when set, else 2 for the engines that run here (they synthesize one at a time;
    /// the second is queued so it starts the moment the first is done) and 4 for
    /// network services, whose time is mostly waiting.
    pub fn parallel(&self, voice: &Voice, configured: u32) -> usize {
        if configured > 0 {
            return configured as usize;
        }
        match self.engine(voice) {
            "piper" | "espeak" => 2,
            _ => 4,
        }
    }

    /// The Piper voice file of `voice`.
    fn piper_path(&self, voice: &Voice) -> PathBuf {
        let name = if voice.voice.trim().is_empty() {
            DEFAULT_PIPER_VOICE
        } else {
            &voice.voice
        };
        self.paths.piper_voice(name)
    }

    /// Loads `voice` ahead of its first sentence.
    pub async fn preload(&self, voice: &Voice) {
        if self.engine(voice) == "piper" {
            let path = self.piper_path(voice);
            let _ = self.piper.call(move |v| v.voice(&path).map(|_| ())).await;
        }
    }

    /// `text` spoken in `voice`. A Piper voice that cannot load falls back to espeak-ng
    /// (logged once), so speech never goes silent for want of a model file.
    pub async fn synthesize(&self, text: &str, voice: &Voice) -> Result<Pcm, SpeechError> {
        let speed = if voice.speed > 0.0 { voice.speed } else { 1.0 };
        match self.engine(voice) {
            "piper" => {
                let path = self.piper_path(voice);
                let owned = text.to_owned();
                let p = path.clone();
                match self
                    .piper
                    .call(move |v| v.voice(&p)?.synthesize(&owned, speed))
                    .await
                {
                    Ok(pcm) => Ok(pcm),
                    Err(e @ (SpeechError::Missing { .. } | SpeechError::Load { .. })) => {
                        let first = self
                            .fallen_back
                            .lock()
                            .map(|mut m| m.insert(path.clone(), e.to_string()).is_none())
                            .unwrap_or(false);
                        if first {
                            tracing::warn!("{e} ({}); speaking with espeak-ng instead", e.hint());
                        }
                        self.espeak(text, &espeak_voice_for(&voice.language), speed)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            "espeak" if voice.voice.trim().is_empty() => {
                self.espeak(text, &espeak_voice_for(&voice.language), speed)
                    .await
            }
            "espeak" => self.espeak(text, &voice.voice, speed).await,
            "openai" => self.remote.speak(text, &voice.voice, speed).await,
            other => match self.services.get(other) {
                Some(service) => {
                    service
                        .speak(SpeakRequest {
                            text,
                            voice: &voice.voice,
                            speed,
                            language: &voice.language,
                        })
                        .await
                }
                None => Err(SpeechError::Unsupported {
                    what: "voice",
                    reason: format!("unknown TTS engine {other:?}"),
                    hint: format!(
                        "set the character's [voice] tts (or speech.tts.backend) to one of piper, espeak, openai, {}",
                        super::tts_http::NAMES.join(", ")
                    ),
                }),
            },
        }
    }

    async fn espeak(&self, text: &str, voice: &str, speed: f32) -> Result<Pcm, SpeechError> {
        let tts = EspeakTts {
            voice: voice.to_owned(),
            rate_wpm: (175.0 * speed).round().clamp(80.0, 450.0) as u32,
        };
        let text = text.to_owned();
        tokio::task::spawn_blocking(move || tts.synthesize(&text))
            .await
            .map_err(|e| SpeechError::inference("espeak-ng", e))?
    }

    pub fn status(&self, voice: &Voice) -> EngineStatus {
        let (backend, load) = match self.engine(voice) {
            "piper" => {
                let path = self.piper_path(voice);
                let fallback = self
                    .fallen_back
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&path).cloned());
                match fallback {
                    Some(reason) => (
                        "piper".to_owned(),
                        ModelLoad::Failed {
                            reason: format!("{reason}; speaking with espeak-ng instead"),
                        },
                    ),
                    None => ("piper".to_owned(), self.piper.load_state()),
                }
            }
            other => (other.to_owned(), ModelLoad::Ready),
        };
        let model = match self.services.get(&backend) {
            Some(service) if voice.voice.trim().is_empty() => service.default_voice().to_owned(),
            _ if voice.voice.trim().is_empty() && backend == "piper" => DEFAULT_PIPER_VOICE.into(),
            _ => voice.voice.clone(),
        };
        EngineStatus {
            backend,
            model,
            load,
        }
    }
}

/// An espeak-ng voice for a language code, for the Piper fallback.
fn espeak_voice_for(language: &str) -> String {
    match language {
        "" | "en" => "en-us".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tts_with_backend(backend: &str) -> Tts {
        let mut cfg = SpeechConfig::default();
        cfg.tts.backend = backend.into();
        Tts::new(&cfg, &ModelPaths::new(&cfg)).expect("engines build without contacting anything")
    }

    #[tokio::test]
    async fn a_voice_without_engine_or_voice_uses_the_configured_defaults() {
        let tts = tts_with_backend("azure");
        let status = tts.status(&Voice::default());
        assert_eq!(status.backend, "azure");
        assert_eq!(status.model, "en-US-AvaMultilingualNeural");
        let status = tts_with_backend("piper").status(&Voice::default());
        assert_eq!(
            (status.backend.as_str(), status.model.as_str()),
            ("piper", DEFAULT_PIPER_VOICE)
        );
        let named = Voice {
            tts: "elevenlabs".into(),
            voice: "abc".into(),
            ..Voice::default()
        };
        let status = tts.status(&named);
        assert_eq!(
            (status.backend.as_str(), status.model.as_str()),
            ("elevenlabs", "abc")
        );
    }

    #[tokio::test]
    async fn an_unknown_engine_lists_the_known_ones() {
        let voice = Voice {
            tts: "bark".into(),
            ..Voice::default()
        };
        let err = tts_with_backend("piper")
            .synthesize("hi", &voice)
            .await
            .expect_err("unknown");
        assert!(err.to_string().contains("bark"), "{err}");
        for name in ["piper", "espeak", "openai", "elevenlabs", "cosyvoice"] {
            assert!(err.hint().contains(name), "{}", err.hint());
        }
    }
}
