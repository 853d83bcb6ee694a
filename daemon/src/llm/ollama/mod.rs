//! Ollama's native API (`POST {base_url}/api/chat`, streamed as NDJSON), with native
//! tool calling and the context window (`num_ctx`) set from `llm.context_size`.
//!
//! This file is the vendor side (endpoint, reading the stream); the HTTP machinery
//! (key, retries, timeouts, errors) is [`super::http`], the JSON shapes are [`wire`],
//! the lines into the provider's events are [`stream`].

mod stream;
mod wire;

use std::fmt;
use std::sync::Arc;

use reqwest::Response;
use reqwest::header::{AUTHORIZATION, HeaderName};
use tokio_util::sync::CancellationToken;
use vtuber_shared::{LlmInfo, ModelLoad};

use super::http::{self, AttemptError, Emitter, HttpCore, LineSplitter, Vendor};
use super::{ChatRequest, LlmError, LlmProvider, LlmStream};
use crate::config::LlmConfig;
use stream::StreamState;

/// Streams replies from an Ollama server.
pub struct OllamaProvider {
    inner: Arc<Inner>,
}

struct Inner {
    core: HttpCore,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    context_size: u32,
}

impl fmt::Debug for OllamaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &self.inner.core;
        f.debug_struct("OllamaProvider")
            .field("endpoint", &core.endpoint)
            .field("model", &core.model)
            .finish_non_exhaustive()
    }
}

impl OllamaProvider {
    /// Builds the provider; fails if `llm.model` is unset.
    pub fn new(cfg: &LlmConfig) -> Result<Self, LlmError> {
        let model = HttpCore::required_model(cfg, "ollama")?;
        let base_url = cfg.effective_base_url();
        let endpoint = format!("{base_url}/api/chat");
        Ok(Self {
            inner: Arc::new(Inner {
                core: HttpCore::new(cfg, base_url, endpoint, model)?,
                temperature: cfg.temperature,
                max_tokens: cfg.max_tokens,
                context_size: cfg.context_size.max(1),
            }),
        })
    }
}

impl LlmProvider for OllamaProvider {
    fn info(&self) -> LlmInfo {
        LlmInfo {
            backend: "ollama".into(),
            model: self.inner.core.model.clone(),
        }
    }

    fn load_state(&self) -> ModelLoad {
        ModelLoad::Ready
    }

    fn stream(&self, request: ChatRequest, cancel: CancellationToken) -> LlmStream {
        let inner = &self.inner;
        let body = wire::request_body(
            &inner.core.model,
            &request,
            inner.temperature,
            inner.max_tokens,
            inner.context_size,
        );
        http::spawn(self.inner.clone(), &body, cancel)
    }

    fn context_size(&self) -> usize {
        self.inner.context_size as usize
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
        "Ollama"
    }

    /// Ollama needs no key; one is sent as a bearer token for servers behind a proxy.
    fn key_header(&self, key: &str) -> (HeaderName, String) {
        (AUTHORIZATION, format!("Bearer {key}"))
    }

    fn accept(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn not_found_hint(&self, model: &str) -> Option<String> {
        Some(format!(
            "download the model first: `vtuber models pull {model}` (or `ollama pull {model}`), or fix llm.model"
        ))
    }

    async fn read(&self, mut response: Response, out: &Emitter) -> Result<(), AttemptError> {
        let mut lines = LineSplitter::default();
        let mut state = StreamState::default();
        while let Some(chunk) = self.core.next_chunk(&mut response).await? {
            for line in lines.push(&chunk).map_err(AttemptError::fatal)? {
                if state.on_line(&line, out).await? {
                    return state.finish(out).await;
                }
            }
        }
        if let Some(line) = lines.finish() {
            state.on_line(&line, out).await?;
        }
        if state.complete() {
            state.finish(out).await
        } else {
            Err(AttemptError::retryable(LlmError::Protocol(
                "the stream ended before the reply was complete (no done line)".into(),
            )))
        }
    }
}

#[cfg(test)]
mod tests;
