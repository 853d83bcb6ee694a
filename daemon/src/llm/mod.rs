//! LLM providers behind one streaming interface.
//!
//! A provider turns a [`ChatRequest`] into a stream of [`LlmEvent`]s on a channel. The
//! turn pipeline does not care whether tokens come from llama.cpp on a local thread or
//! from an HTTP server: it reads the channel until [`LlmEvent::Finish`] or an error, and
//! cancels through the token (dropping the receiver also stops the producer).

pub mod anthropic;
pub mod embedded;
#[cfg(test)]
mod fuzz_props;
pub mod gemini;
mod http;
pub mod ollama;
pub mod openai;
mod sse;
#[cfg(test)]
mod test_util;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{ErrorBody, ErrorCode, LlmInfo, ModelLoad, Usage};

pub use vtuber_shared::Role;

/// How a reply the user interrupted appears in later prompts: what was said, then a
/// note that it was cut off (as Open-LLM-VTuber does). Without the note a small model
/// takes the unfinished reply for one to carry on, and answers later questions with it.
pub fn interrupted_reply_text(partial: &str) -> String {
    format!("{}... {INTERRUPTED_NOTE}", partial.trim_end())
}

/// Marks an interrupted reply in the prompt.
pub const INTERRUPTED_NOTE: &str = "[interrupted by the user]";

/// One message of the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// For `Role::Tool` messages: the call this answers (used by the MCP issue).
    pub tool_call_id: Option<String>,
    /// For assistant messages that requested tools.
    pub tool_calls: Vec<ToolCall>,
    /// Pictures sent with a user message, already checked and downscaled.
    pub images: Vec<ChatImage>,
}

/// A picture on a user message, ready for the wire: its MIME type (`image/jpeg` or
/// `image/png`) and the encoded file in standard base64. Every vision API takes base64,
/// so it is encoded once; the `Arc` makes a prompt's copy cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatImage {
    pub mime_type: String,
    pub base64: Arc<str>,
}

impl ChatImage {
    /// `data:<mime>;base64,<data>`, as OpenAI-compatible APIs take it.
    pub fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.mime_type, self.base64)
    }
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_call_id: None,
            tool_calls: Vec::new(),
            images: Vec::new(),
        }
    }

    /// A user message with pictures.
    pub fn user_with_images(content: impl Into<String>, images: Vec<ChatImage>) -> Self {
        Self {
            images,
            ..Self::new(Role::User, content)
        }
    }
}

/// The name of the tool call `id` answers: the nearest earlier assistant message that
/// made it ("" if none did). For APIs that name tool results by tool, not by call id.
pub(crate) fn answered_call_name<'a>(earlier: &'a [ChatMessage], id: &str) -> &'a str {
    earlier
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter())
        .find(|c| c.id == id)
        .map_or("", |c| c.name.as_str())
}

/// A fresh id for a tool call from an API that sends none, unique in the process.
pub(crate) fn new_call_id(vendor: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{vendor}_call_{n}")
}

/// A tool the model may call (JSON-Schema parameters, passed through).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// A complete tool call, assembled from deltas.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Raw JSON text of the arguments.
    pub arguments: String,
}

/// Sampling settings for one request; `None` means the provider's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    /// The cancellation token fired.
    Cancelled,
    Other,
}

/// One item of a provider's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// Decoded text, always whole UTF-8 characters.
    TextDelta(String),
    /// A fragment of a tool call. `index` groups fragments of one call; `id` and `name`
    /// arrive on the first fragment, `arguments` is appended.
    ToolCallDelta {
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Usage(Usage),
    /// Last item of a successful stream.
    Finish(FinishReason),
}

/// Failures a provider reports. Each maps to a user-facing [`ErrorBody`] with a hint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("cannot reach the LLM server at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The server was reached and began its reply, then the connection broke.
    #[error("the connection to the LLM server at {url} broke mid-reply: {reason}")]
    Broken { url: String, reason: String },
    #[error("the LLM server rejected the API key (HTTP 401)")]
    Unauthorized { key_env: Option<String> },
    #[error("the LLM server does not know model `{model}` or the endpoint {url} (HTTP 404)")]
    NotFound {
        url: String,
        model: String,
        /// What to do, when the provider knows better than "check llm.model".
        hint: Option<String>,
    },
    #[error("the LLM server is rate limiting requests (HTTP 429)")]
    RateLimited,
    #[error("the LLM server failed with HTTP {status}: {body}")]
    Server { status: u16, body: String },
    #[error("the LLM server sent a stream this client cannot read: {0}")]
    Protocol(String),
    #[error("the LLM server sent a line over {} MiB without a newline", limit / (1024 * 1024))]
    LineTooLong { limit: usize },
    #[error("the LLM server sent a non-streamed reply over {} MiB", limit / (1024 * 1024))]
    BodyTooLarge { limit: usize },
    #[error("no reply from the LLM server within {secs} s")]
    Timeout { secs: u64 },
    #[error("model file not found: {path}")]
    ModelMissing { path: String, fetch_hint: String },
    #[error("the model failed to load: {0}")]
    ModelLoad(String),
    #[error("the LLM server says the prompt is too long: {message}")]
    PromptTooLong { message: String },
    #[error("the prompt ({prompt} tokens) does not fit the model's context ({ctx} tokens)")]
    ContextOverflow { prompt: usize, ctx: usize },
    #[error("inference failed: {0}")]
    Inference(String),
}

impl LlmError {
    /// The error as sent to clients, with what to do about it.
    pub fn to_body(&self) -> ErrorBody {
        let (code, hint): (ErrorCode, String) = match self {
            Self::Connect { .. } => (
                ErrorCode::Llm,
                "start the server or fix llm.base_url in conf.yaml".into(),
            ),
            Self::Broken { .. } => (
                ErrorCode::Llm,
                "try again; if it keeps happening, check the server's log (it may have crashed or restarted) or a proxy's time limit".into(),
            ),
            Self::Unauthorized { key_env } => (
                ErrorCode::Llm,
                match key_env {
                    Some(var) => format!("check the key in ${var} (llm.api_key_env)"),
                    None => {
                        "set llm.api_key_env in conf.yaml to the variable holding the key".into()
                    }
                },
            ),
            Self::NotFound { hint, .. } => (
                ErrorCode::Llm,
                hint.clone().unwrap_or_else(|| {
                    "check llm.model and that llm.base_url ends in /v1".into()
                }),
            ),
            Self::RateLimited => (ErrorCode::Llm, "wait a moment and try again".into()),
            Self::Server {
                status: 503 | 529, ..
            } => (
                ErrorCode::Llm,
                "the provider is overloaded; try again in a moment".into(),
            ),
            Self::Server { .. } => (
                ErrorCode::Llm,
                "the server logged the cause; try again or check it".into(),
            ),
            Self::Protocol(_) => (
                ErrorCode::Llm,
                "is llm.base_url an OpenAI-compatible /v1 endpoint?".into(),
            ),
            Self::LineTooLong { .. } => (
                ErrorCode::Llm,
                "the reply was stopped; check that llm.base_url is an OpenAI-compatible /v1 endpoint that streams server-sent events".into(),
            ),
            Self::BodyTooLarge { .. } => (
                ErrorCode::Llm,
                "the reply was stopped; lower llm.max_tokens, or use a server that streams (stream: true)".into(),
            ),
            Self::Timeout { .. } => (
                ErrorCode::Llm,
                "raise llm.timeout_secs or check the server's load".into(),
            ),
            Self::ModelMissing { fetch_hint, .. } => (ErrorCode::Model, fetch_hint.clone()),
            Self::ModelLoad(_) => (
                ErrorCode::Model,
                "check that llm.model_path is a valid GGUF file".into(),
            ),
            Self::PromptTooLong { .. } | Self::ContextOverflow { .. } => (
                ErrorCode::Llm,
                "lower history.token_budget or raise llm.context_size".into(),
            ),
            Self::Inference(_) => (ErrorCode::Llm, "see the daemon log for details".into()),
        };
        ErrorBody::new(code, self.to_string()).with_hint(hint)
    }
}

/// The receiving end of a provider's stream.
pub type LlmStream = mpsc::Receiver<Result<LlmEvent, LlmError>>;

/// A source of streamed completions.
pub trait LlmProvider: Send + Sync {
    /// Backend and model names for status lines.
    fn info(&self) -> LlmInfo;

    /// Whether the weights are loaded (remote providers are always `Ready`).
    fn load_state(&self) -> ModelLoad;

    /// Starts generating. Returns at once; items arrive on the channel. The stream ends
    /// with `Finish` or one `Err`. Cancelling the token ends it promptly with
    /// `Finish(Cancelled)`.
    fn stream(&self, request: ChatRequest, cancel: CancellationToken) -> LlmStream;

    /// Rough token count used to bound the history window. Providers with a tokenizer
    /// may be exact; the default assumes ~4 bytes per token.
    fn estimate_tokens(&self, text: &str) -> usize {
        text.len().div_ceil(4)
    }

    /// Tokens the model can attend to (prompt + reply).
    fn context_size(&self) -> usize;

    /// Whether the backend takes a tool list and streams structured tool calls. Others
    /// get tools described in the prompt and answer with JSON (see `tools`).
    fn supports_native_tools(&self) -> bool {
        false
    }

    /// Whether the model takes pictures with a message. A text-only one is sent the
    /// text alone (the client is told once per conversation).
    fn sees_images(&self) -> bool {
        true
    }
}

/// Shared handle to the active provider.
pub type SharedProvider = Arc<dyn LlmProvider>;
