//! Speech synthesis: [`Tts`] speaks every character's voice with Piper (on its own
//! thread), espeak-ng or an OpenAI-compatible service, falling back to espeak-ng when a
//! Piper voice cannot load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vtuber_shared::{EngineStatus, ModelLoad};

use super::espeak::EspeakTts;
use super::model_paths::ModelPaths;
use super::piper::PiperVoice;
use super::remote::Endpoint;
use super::worker::Worker;
use super::{SpeechError, Voice};
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
    /// Piper voices that could not load, so the fallback is announced once.
    fallen_back: Arc<Mutex<HashMap<PathBuf, String>>>,
}

impl Tts {
    pub fn new(cfg: &SpeechConfig, paths: &ModelPaths) -> Result<Self, SpeechError> {
        let runtime = paths.onnxruntime.clone();
        let threads = (cfg.tts.threads as usize).max(1);
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
                &cfg.tts.base_url,
                &cfg.tts.model,
                cfg.tts.api_key_env.as_deref(),
                Duration::from_secs(cfg.tts.timeout_secs.max(1)),
            )?,
            fallen_back: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Loads `voice` ahead of its first sentence.
    pub async fn preload(&self, voice: &Voice) {
        if voice.tts == "piper" {
            let path = self.paths.piper_voice(&voice.voice);
            let _ = self.piper.call(move |v| v.voice(&path).map(|_| ())).await;
        }
    }

    /// `text` spoken in `voice`. A Piper voice that cannot load falls back to espeak-ng
    /// (logged once), so speech never goes silent for want of a model file.
    pub async fn synthesize(&self, text: &str, voice: &Voice) -> Result<Pcm, SpeechError> {
        let speed = if voice.speed > 0.0 { voice.speed } else { 1.0 };
        match voice.tts.as_str() {
            "piper" => {
                let path = self.paths.piper_voice(&voice.voice);
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
            "espeak" => self.espeak(text, &voice.voice, speed).await,
            "openai" => self.remote.speak(text, &voice.voice, speed).await,
            other => Err(SpeechError::Load {
                what: "voice",
                path: PathBuf::from(other),
                reason: format!("unknown TTS engine {other:?}; use piper, espeak or openai"),
            }),
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
        let (backend, load) = match voice.tts.as_str() {
            "piper" => {
                let path = self.paths.piper_voice(&voice.voice);
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
        EngineStatus {
            backend,
            model: voice.voice.clone(),
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
