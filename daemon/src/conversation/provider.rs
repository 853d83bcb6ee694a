//! The LLM provider factory: which provider a character's effective LLM settings call
//! for, and what `status` shows of it (also when it could not be built).

use std::sync::Arc;

use vtuber_shared::{ErrorBody, LlmInfo, ModelLoad};

use crate::config::{LlmConfig, ProviderKind};
use crate::llm::{
    SharedProvider, anthropic::AnthropicProvider, embedded::EmbeddedProvider,
    gemini::GeminiProvider, ollama::OllamaProvider, openai::OpenAiProvider,
};

/// File name of the default embedded model.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Builds the provider a character's effective LLM settings call for.
pub fn make_provider(cfg: &LlmConfig) -> Result<SharedProvider, ErrorBody> {
    match cfg.provider {
        ProviderKind::Embedded => {
            let default = vtuber_shared::paths::models_dir().join(DEFAULT_MODEL_FILE);
            Ok(Arc::new(EmbeddedProvider::new(cfg, default)))
        }
        ProviderKind::OpenaiCompatible => OpenAiProvider::new(cfg)
            .map(|p| Arc::new(p) as SharedProvider)
            .map_err(|e| e.to_body()),
        ProviderKind::Anthropic => AnthropicProvider::new(cfg)
            .map(|p| Arc::new(p) as SharedProvider)
            .map_err(|e| e.to_body()),
        ProviderKind::Gemini => GeminiProvider::new(cfg)
            .map(|p| Arc::new(p) as SharedProvider)
            .map_err(|e| e.to_body()),
        ProviderKind::Ollama => OllamaProvider::new(cfg)
            .map(|p| Arc::new(p) as SharedProvider)
            .map_err(|e| e.to_body()),
    }
}

/// Backend and model, as `status` shows them.
pub(super) fn provider_info(p: &Result<SharedProvider, ErrorBody>, cfg: &LlmConfig) -> LlmInfo {
    match p {
        Ok(p) => p.info(),
        Err(_) => LlmInfo {
            backend: cfg.provider.as_str().to_owned(),
            model: cfg.model.clone().unwrap_or_else(|| "(none)".into()),
        },
    }
}

/// The model's load state; a provider that could not be built has failed to load.
pub(super) fn provider_load(p: &Result<SharedProvider, ErrorBody>) -> ModelLoad {
    match p {
        Ok(p) => p.load_state(),
        Err(e) => ModelLoad::Failed {
            reason: e.to_string(),
        },
    }
}
