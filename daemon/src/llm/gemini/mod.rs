//! Google's Gemini API (`POST {base_url}/v1beta/models/{model}:streamGenerateContent`,
//! streamed as server-sent events with `alt=sse`), with native function calling.
//!
//! This file is the vendor side (endpoint, key header, reading the stream); the HTTP
//! machinery (key, retries, timeouts, errors) is [`super::http`], the JSON shapes are
//! [`wire`], the responses into the provider's events are [`stream`].

mod stream;
mod wire;

use std::fmt;
use std::sync::Arc;

use reqwest::header::HeaderName;
use reqwest::{Response, StatusCode};
use tokio_util::sync::CancellationToken;
use vtuber_shared::{LlmInfo, ModelLoad};

use super::http::{self, AttemptError, Emitter, HttpCore, Vendor};
use super::{ChatRequest, LlmError, LlmProvider, LlmStream};
use crate::config::LlmConfig;
use stream::StreamState;

/// What [`GeminiProvider::context_size`] reports: Gemini models attend to a million
/// tokens; the history window stays bounded by `history.token_budget`.
const CONTEXT_SIZE: usize = 1_048_576;

/// Streams replies from the Gemini API.
pub struct GeminiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    core: HttpCore,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

impl fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the variable's name: the key itself is never held.
        let core = &self.inner.core;
        f.debug_struct("GeminiProvider")
            .field("endpoint", &core.endpoint)
            .field("model", &core.model)
            .field("api_key_env", &core.api_key_env)
            .finish_non_exhaustive()
    }
}

impl GeminiProvider {
    /// Builds the provider; fails if `llm.model` is unset.
    pub fn new(cfg: &LlmConfig) -> Result<Self, LlmError> {
        let model = HttpCore::required_model(cfg, "gemini")?;
        // `models/gemini-…` (as the API lists them) and `gemini-…` both work.
        let model = model.strip_prefix("models/").unwrap_or(&model).to_owned();
        let base_url = cfg.effective_base_url();
        let endpoint = format!("{base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse");
        Ok(Self {
            inner: Arc::new(Inner {
                core: HttpCore::new(cfg, base_url, endpoint, model)?,
                temperature: cfg.temperature,
                max_tokens: cfg.max_tokens,
            }),
        })
    }

    #[cfg(test)]
    fn with_key_lookup(mut self, lookup: http::KeyLookup) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.core.key_lookup = lookup;
        }
        self
    }
}

impl LlmProvider for GeminiProvider {
    fn info(&self) -> LlmInfo {
        LlmInfo {
            backend: "gemini".into(),
            model: self.inner.core.model.clone(),
        }
    }

    fn load_state(&self) -> ModelLoad {
        ModelLoad::Ready
    }

    fn stream(&self, request: ChatRequest, cancel: CancellationToken) -> LlmStream {
        let inner = &self.inner;
        let body = wire::request_body(&request, inner.temperature, inner.max_tokens);
        http::spawn(self.inner.clone(), &body, cancel)
    }

    fn context_size(&self) -> usize {
        CONTEXT_SIZE
    }

    fn supports_native_tools(&self) -> bool {
        true
    }
}

impl Vendor for Inner {
    fn core(&self) -> &HttpCore {
        &self.core
    }

    fn label(&self) -> &'static str {
        "Gemini"
    }

    fn key_header(&self, key: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-goog-api-key"), key.to_owned())
    }

    fn not_found_hint(&self, model: &str) -> Option<String> {
        Some(format!(
            "check llm.model (`{model}`): use a model id such as gemini-2.5-flash"
        ))
    }

    fn classify(&self, status: StatusCode, message: &str) -> Option<LlmError> {
        // Gemini answers a bad key with 400 INVALID_ARGUMENT.
        (status == StatusCode::BAD_REQUEST && message.contains("API key")).then(|| {
            LlmError::Unauthorized {
                key_env: self.core.api_key_env.clone(),
            }
        })
    }

    async fn read(&self, response: Response, out: &Emitter) -> Result<(), AttemptError> {
        let reply = StreamState::default();
        http::read_sse(&self.core, response, out, reply, "finishReason").await
    }
}

#[cfg(test)]
mod tests;
