//! Speech recognition: [`Asr`] is Whisper on its own thread, an OpenAI-compatible
//! transcription service, or one of the [`super::asr_http`] services.

use std::sync::Arc;
use std::time::Duration;

use vtuber_shared::{EngineStatus, ModelLoad};

use super::SpeechError;
use super::asr_http::{HttpAsr, azure::AzureAsr, deepgram::Deepgram};
use super::model_paths::ModelPaths;
use super::remote::Endpoint;
use super::whisper::WhisperModel;
use super::worker::Worker;
use crate::config::{AsrBackend, SpeechConfig};
use crate::pcm::Pcm;

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
    Service(Arc<dyn HttpAsr>),
}

impl Asr {
    pub fn new(cfg: &SpeechConfig, paths: &ModelPaths) -> Result<Self, SpeechError> {
        // `auto` means no hint: the service detects the language.
        let hint = cfg
            .asr
            .language
            .clone()
            .filter(|l| !l.eq_ignore_ascii_case("auto"));
        let timeout = Duration::from_secs(cfg.asr.timeout_secs.max(1));
        Ok(match cfg.asr.backend {
            AsrBackend::Whisper => {
                let dir = paths.whisper.clone();
                let threads =
                    crate::cpu_plan::asr_threads(cfg.asr.threads, crate::cpu_plan::cores());
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
                    "speech recognition server",
                    "speech.asr",
                    &cfg.asr.base_url,
                    &cfg.asr.model,
                    cfg.asr.api_key_env.as_deref(),
                    timeout,
                )?,
                language: hint,
            },
            AsrBackend::Deepgram => {
                Self::Service(Arc::new(Deepgram::new(&cfg.asr.deepgram, hint, timeout)?))
            }
            AsrBackend::Azure => Self::Service(Arc::new(AzureAsr::new(&cfg.asr.azure, timeout)?)),
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
            Self::Service(service) => {
                service
                    .transcribe(&Pcm::new(pcm_16k, super::INPUT_RATE))
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
            Self::Service(service) => {
                let (backend, model) = service.describe();
                EngineStatus {
                    backend: backend.into(),
                    model,
                    load: ModelLoad::Ready,
                }
            }
        }
    }
}
