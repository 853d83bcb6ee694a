//! Where the speech model files live under a configuration: the models folder and the
//! default path of each model (VAD, Whisper, Piper voices, the ONNX Runtime library).

use std::path::{Path, PathBuf};

use crate::config::SpeechConfig;

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
