//! Anthropic's Messages API (`POST {base_url}/v1/messages`, streamed as server-sent
//! events), with native tool use and prompt caching of the persona and the tool list.
//!
//! This file is the vendor side (endpoint, headers, reading the stream); the HTTP
//! machinery (key, retries, timeouts, errors) is [`super::http`], the JSON shapes are
//! [`wire`], the events into the provider's are [`stream`].

mod stream;
mod wire;

use std::fmt;
use std::sync::Arc;

use reqwest::header::HeaderName;
use reqwest::{RequestBuilder, Response};
use tokio_util::sync::CancellationToken;
use vtuber_shared::{LlmInfo, ModelLoad};

use super::http::{self, AttemptError, Emitter, HttpCore, Vendor};
use super::{ChatRequest, LlmError, LlmProvider, LlmStream};
use crate::config::LlmConfig;
use stream::StreamState;

/// The API version this client speaks (`anthropic-version`).
pub const API_VERSION: &str = "2023-06-01";

/// What [`AnthropicProvider::context_size`] reports: Claude models attend to 200k
/// tokens; the history window stays bounded by `history.token_budget`.
const CONTEXT_SIZE: usize = 200_000;

/// Streams replies from Anthropic's Messages API.
pub struct AnthropicProvider {
    inner: Arc<Inner>,
}

struct Inner {
    core: HttpCore,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

impl fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the variable's name: the key itself is never held.
        let core = &self.inner.core;
        f.debug_struct("AnthropicProvider")
            .field("endpoint", &core.endpoint)
            .field("model", &core.model)
            .field("api_key_env", &core.api_key_env)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// Builds the provider; fails if `llm.model` is unset.
    pub fn new(cfg: &LlmConfig) -> Result<Self, LlmError> {
        let model = HttpCore::required_model(cfg, "anthropic")?;
        let base_url = cfg.effective_base_url();
        let endpoint = format!("{base_url}/v1/messages");
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

impl LlmProvider for AnthropicProvider {
    fn info(&self) -> LlmInfo {
        LlmInfo {
            backend: "anthropic".into(),
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
        );
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
        "Anthropic"
    }

    fn key_header(&self, key: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-api-key"), key.to_owned())
    }

    fn extra_headers(&self, request: RequestBuilder) -> RequestBuilder {
        request.header("anthropic-version", API_VERSION)
    }

    fn not_found_hint(&self, model: &str) -> Option<String> {
        Some(format!(
            "check llm.model (`{model}`): use a model id such as claude-sonnet-4-5, and leave llm.base_url at its default or the API's root"
        ))
    }

    async fn read(&self, response: Response, out: &Emitter) -> Result<(), AttemptError> {
        let reply = StreamState::default();
        http::read_sse(&self.core, response, out, reply, "message_stop").await
    }
}

#[cfg(test)]
mod tests;
