//! The speech engines the daemon runs: recognition and synthesis behind one handle,
//! each embedded engine on a dedicated thread (models are CPU-heavy and blocking), the
//! HTTP ones on the runtime. Models load in the background at start; calls made while
//! a model loads wait for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use vtuber_shared::{EngineStatus, ModelLoad};

use super::espeak::EspeakTts;
use super::piper::PiperVoice;
use super::remote::Endpoint;
use super::whisper::WhisperModel;
use super::{SpeechError, Voice};
use crate::config::{AsrBackend, SpeechConfig};
use crate::pcm::Pcm;

/// Folder of model files: `speech.models_dir`, else the data dir's `models/`.
pub fn models_dir(cfg: &SpeechConfig) -> PathBuf {
    cfg.models_dir
        .clone()
        .unwrap_or_else(vtuber_shared::paths::models_dir)
}

/// Where each default model file lives under a configuration.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub models_dir: PathBuf,
    pub onnxruntime: Option<PathBuf>,
    pub vad: PathBuf,
    pub whisper: PathBuf,
    pub piper_dir: PathBuf,
}

impl ModelPaths {
    pub fn new(cfg: &SpeechConfig) -> Self {
        let dir = models_dir(cfg);
        Self {
            onnxruntime: Some(super::onnx::configured_library(
                cfg.onnxruntime.as_deref(),
                &dir,
            )),
            vad: cfg
                .vad
                .model
                .clone()
                .unwrap_or_else(|| dir.join("silero_vad.onnx")),
            whisper: cfg
                .asr
                .model_dir
                .clone()
                .unwrap_or_else(|| dir.join("whisper-tiny.en")),
            piper_dir: cfg
                .tts
                .piper_dir
                .clone()
                .unwrap_or_else(|| dir.join("piper")),
            models_dir: dir,
        }
    }

    /// A Piper voice by name (`en_US-joe-medium`) or path to its `.onnx`.
    pub fn piper_voice(&self, voice: &str) -> PathBuf {
        let p = Path::new(voice);
        if p.extension().is_some_and(|e| e == "onnx") {
            return p.to_path_buf();
        }
        self.piper_dir.join(format!("{voice}.onnx"))
    }
}

type Job<T> = Box<dyn FnOnce(Result<&mut T, &SpeechError>) + Send>;

/// A model owned by one thread; calls are queued to it.
pub struct Worker<T> {
    tx: std::sync::mpsc::Sender<Job<T>>,
    load: watch::Receiver<ModelLoad>,
}

impl<T> Clone for Worker<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            load: self.load.clone(),
        }
    }
}

impl<T: 'static> Worker<T> {
    /// Starts the thread, which loads the model first, then serves calls in order.
    pub fn spawn(
        name: &str,
        load: impl FnOnce() -> Result<T, SpeechError> + Send + 'static,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job<T>>();
        let (load_tx, load_rx) = watch::channel(ModelLoad::Loading);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut model = load();
                let _ = load_tx.send(match &model {
                    Ok(_) => ModelLoad::Ready,
                    Err(e) => ModelLoad::Failed {
                        reason: format!("{e} ({})", e.hint()),
                    },
                });
                if let Err(e) = &model {
                    tracing::warn!("{e} ({})", e.hint());
                }
                while let Ok(job) = rx.recv() {
                    match &mut model {
                        Ok(m) => job(Ok(m)),
                        Err(e) => job(Err(e)),
                    }
                }
            });
        if let Err(e) = thread {
            tracing::error!("cannot start the {name} thread: {e}");
        }
        Self { tx, load: load_rx }
    }

    pub fn load_state(&self) -> ModelLoad {
        self.load.borrow().clone()
    }

    /// Waits until the model has loaded (or failed to).
    pub async fn loaded(&self) -> ModelLoad {
        let mut rx = self.load.clone();
        let _ = rx.wait_for(|l| !matches!(l, ModelLoad::Loading)).await;
        rx.borrow().clone()
    }

    /// Runs `f` on the model's thread.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut T) -> Result<R, SpeechError> + Send + 'static,
    ) -> Result<R, SpeechError> {
        let (tx, rx) = oneshot::channel();
        let job: Job<T> = Box::new(move |model| {
            let out = match model {
                Ok(m) => f(m),
                Err(e) => Err(e.clone()),
            };
            let _ = tx.send(out);
        });
        self.tx
            .send(job)
            .map_err(|_| SpeechError::inference("speech engine", "its thread has stopped"))?;
        rx.await
            .map_err(|_| SpeechError::inference("speech engine", "its thread has stopped"))?
    }
}

/// Speech recognition.
#[derive(Clone)]
pub enum Asr {
    Whisper {
        worker: Worker<WhisperModel>,
        model: String,
    },
    Remote {
        endpoint: Endpoint,
        language: Option<String>,
    },
}

impl Asr {
    pub fn new(cfg: &SpeechConfig, paths: &ModelPaths) -> Result<Self, SpeechError> {
        Ok(match cfg.asr.backend {
            AsrBackend::Whisper => {
                let dir = paths.whisper.clone();
                let threads = cfg.asr.threads.map_or(0, |t| t as usize);
                let language = cfg.asr.language.clone();
                let model = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| dir.display().to_string());
                Self::Whisper {
                    worker: Worker::spawn("asr-whisper", move || {
                        WhisperModel::load(&dir, threads, language.as_deref())
                    }),
                    model,
                }
            }
            AsrBackend::OpenaiCompatible => Self::Remote {
                endpoint: Endpoint::new(
                    &cfg.asr.base_url,
                    &cfg.asr.model,
                    cfg.asr.api_key_env.as_deref(),
                    Duration::from_secs(cfg.asr.timeout_secs.max(1)),
                )?,
                // `auto` means no hint: the service detects the language.
                language: cfg
                    .asr
                    .language
                    .clone()
                    .filter(|l| !l.eq_ignore_ascii_case("auto")),
            },
        })
    }

    /// Text of 16 kHz mono speech ("" when nothing was said).
    pub async fn transcribe(&self, pcm_16k: Vec<f32>) -> Result<String, SpeechError> {
        match self {
            Self::Whisper { worker, .. } => worker.call(move |m| m.transcribe(&pcm_16k)).await,
            Self::Remote { endpoint, language } => {
                endpoint
                    .transcribe(&Pcm::new(pcm_16k, super::INPUT_RATE), language.as_deref())
                    .await
            }
        }
    }

    pub fn status(&self) -> EngineStatus {
        match self {
            Self::Whisper { worker, model } => EngineStatus {
                backend: "whisper".into(),
                model: model.clone(),
                load: worker.load_state(),
            },
            Self::Remote { endpoint, .. } => EngineStatus {
                backend: "openai_compatible".into(),
                model: endpoint.model().to_owned(),
                load: ModelLoad::Ready,
            },
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// `speech.models_dir` set, `speech.onnxruntime` unset: the library is looked for in
    /// that folder (it used to be looked for in the default one, so Piper and the VAD
    /// failed to load).
    #[test]
    fn onnx_runtime_follows_the_models_folder() {
        if std::env::var_os(super::super::onnx::DYLIB_ENV).is_some() {
            return; // $ORT_DYLIB_PATH rightly wins over the folder
        }
        let cfg = SpeechConfig {
            models_dir: Some(PathBuf::from("/srv/vtuber-models")),
            ..SpeechConfig::default()
        };
        let paths = ModelPaths::new(&cfg);
        assert_eq!(
            paths.onnxruntime.as_deref(),
            Some(std::path::Path::new(
                "/srv/vtuber-models/onnxruntime/libonnxruntime.so"
            ))
        );
        assert_eq!(
            paths.vad,
            PathBuf::from("/srv/vtuber-models/silero_vad.onnx")
        );
    }
}
