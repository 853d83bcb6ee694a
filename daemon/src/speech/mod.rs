//! Speech: voice activity detection, speech recognition and synthesis.
//!
//! The voice feature speaks a reply sentence by sentence while the LLM is still writing,
//! so the first audio starts early. [`text`] holds the pure-text half of that pipeline
//! (sentence splitting, cleaning for TTS, expression tags); sample buffers, WAV and
//! resampling live in [`crate::pcm`]. Engines are blocking and CPU-heavy: the daemon
//! runs them on dedicated threads, never on the async runtime.

pub mod asr;
pub mod asr_http;
pub mod decode;
pub mod espeak;
pub mod listeners;
pub mod model_paths;
pub mod net;
pub mod onnx;
pub mod piper;
pub mod remote;
pub mod speaker;
pub mod text;
pub mod tts;
pub mod tts_http;
pub mod vad;
pub mod whisper;
pub mod worker;

use std::path::PathBuf;

use serde::Deserialize;

use crate::pcm::PcmError;

/// Sample rate every input engine (VAD, ASR) works at.
pub const INPUT_RATE: u32 = 16_000;

/// The Piper voice of characters that name none (installed by `scripts/fetch-model.sh`).
pub const DEFAULT_PIPER_VOICE: &str = "en_US-joe-medium";

/// How a character sounds: the `[voice]` table of its file, read by the TTS engines
/// and the speaker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Voice {
    /// The engine: `piper`, `espeak`, `openai`, or a service of [`tts_http::NAMES`];
    /// empty means `speech.tts.backend`.
    pub tts: String,
    /// The engine's voice; empty means the engine's default (Piper's
    /// [`DEFAULT_PIPER_VOICE`], a service's `speech.tts.<name>.voice`).
    pub voice: String,
    pub speed: f32,
    pub language: String,
    /// What is not read aloud (markdown, code, emoji, tags, asides): `[voice.clean]`.
    pub clean: text::clean::CleanOptions,
}

impl Default for Voice {
    fn default() -> Self {
        Self {
            tts: String::new(),
            voice: String::new(),
            speed: 1.0,
            language: "en".into(),
            clean: text::clean::CleanOptions::default(),
        }
    }
}

/// Why a speech engine could not load or run. Each says what to do about it. Plain
/// data, so an engine that failed to load can report the same error to every caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpeechError {
    /// A model file is not where the configuration says.
    #[error("{what} not found at {}", path.display())]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: String,
    },
    /// The file is there but could not be used (wrong format, unsupported version).
    #[error("could not load {what} from {}: {reason}", path.display())]
    Load {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Running the model or program failed.
    #[error("{what} failed: {reason}")]
    Inference { what: &'static str, reason: String },
    /// Audio given to an engine was unusable (empty, wrong format).
    #[error("bad audio: {0}")]
    BadAudio(String),
    /// The configuration asks a model for something it cannot do.
    #[error("{what}: {reason}")]
    Unsupported {
        what: &'static str,
        reason: String,
        hint: String,
    },
    /// A remote speech service failed.
    #[error("{what}: {reason}")]
    Remote {
        what: &'static str,
        reason: String,
        hint: String,
    },
}

impl SpeechError {
    /// What the user should do, for error bodies and logs.
    pub fn hint(&self) -> String {
        match self {
            Self::Missing { hint, .. }
            | Self::Remote { hint, .. }
            | Self::Unsupported { hint, .. } => hint.clone(),
            Self::Load { .. } => "check that the file is a complete, supported model (re-run scripts/fetch-model.sh for the defaults)".into(),
            Self::Inference { .. } => "see the daemon log for details".into(),
            Self::BadAudio(_) => "send 16-bit or float WAV, mono or stereo, any sample rate".into(),
        }
    }

    pub fn inference(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Inference {
            what,
            reason: reason.to_string(),
        }
    }
}

impl From<PcmError> for SpeechError {
    fn from(e: PcmError) -> Self {
        match e {
            PcmError::BadAudio(reason) => Self::BadAudio(reason),
            PcmError::Resample(reason) => Self::Inference {
                what: "resampler",
                reason,
            },
        }
    }
}
