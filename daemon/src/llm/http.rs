//! What every HTTP provider shares, whatever its wire format: the pooled client, the API
//! key (read from the environment at request time, never stored, logged or put into an
//! error), retries with exponential backoff (honouring `Retry-After`) on connection
//! errors, 429, 5xx and overload, but only while nothing has reached the caller, the
//! timeouts, cancellation, and HTTP errors mapped to [`LlmError`]s with hints.
//!
//! A provider describes its vendor through [`Vendor`]: where to post, which headers,
//! how to read a successful response into [`LlmEvent`]s.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::sse::SseParser;
use super::{FinishReason, LlmError, LlmEvent, LlmStream};
use crate::config::LlmConfig;

/// Events buffered between the HTTP task and the consumer.
const CHANNEL_CAPACITY: usize = 64;
/// First retry delay; doubled per attempt up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(250);
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(8);
/// Error bodies are cut to this many characters before they reach users.
pub(super) const ERROR_BODY_LIMIT: usize = 300;

/// Reads an environment variable; swapped in tests so they need not mutate the
/// process environment (unsound while other threads read it).
pub(super) type KeyLookup = fn(&str) -> Option<String>;

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The vendor-neutral half of an HTTP provider.
pub(super) struct HttpCore {
    pub(super) client: Client,
    /// The base URL in effect, for messages.
    pub(super) base_url: String,
    /// Where requests are posted.
    pub(super) endpoint: String,
    pub(super) model: String,
    pub(super) api_key_env: Option<String>,
    pub(super) key_lookup: KeyLookup,
    pub(super) timeout: Duration,
    pub(super) retries: u32,
}

impl HttpCore {
    pub(super) fn new(
        cfg: &LlmConfig,
        base_url: String,
        endpoint: String,
        model: String,
    ) -> Result<Self, LlmError> {
        let client = Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("vtuberd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Connect {
                url: base_url.clone(),
                reason: format!("cannot set up the HTTP client: {}", innermost(&e)),
            })?;
        Ok(Self {
            client,
            base_url,
            endpoint,
            model,
            api_key_env: cfg.api_key_env.clone().filter(|v| !v.is_empty()),
            key_lookup: env_lookup,
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            retries: cfg.retries,
        })
    }

    /// `llm.model`, trimmed, or an error naming the provider that needs it.
    pub(super) fn required_model(cfg: &LlmConfig, provider: &str) -> Result<String, LlmError> {
        cfg.model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                LlmError::ModelLoad(format!(
                    "the {provider} provider needs a model name: set llm.model in conf.yaml"
                ))
            })
    }

    pub(super) fn timeout_error(&self) -> LlmError {
        LlmError::Timeout {
            secs: self.timeout.as_secs(),
        }
    }

    /// The key header for this attempt, if a key is configured and set.
    fn key_header<V: Vendor>(
        &self,
        vendor: &V,
    ) -> Result<Option<(HeaderName, HeaderValue)>, AttemptError> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        let Some(key) = (self.key_lookup)(var) else {
            warn!(variable = %var, "llm.api_key_env names a variable that is not set; sending no key");
            return Ok(None);
        };
        let (name, text) = vendor.key_header(key.trim());
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            warn!(variable = %var, "the API key contains characters not allowed in an HTTP header");
            AttemptError::fatal(LlmError::Unauthorized {
                key_env: Some(var.clone()),
            })
        })?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }

    /// Next body chunk within the silence timeout.
    pub(super) async fn next_chunk(
        &self,
        response: &mut Response,
    ) -> Result<Option<Bytes>, AttemptError> {
        match tokio::time::timeout(self.timeout, response.chunk()).await {
            Err(_) => Err(AttemptError::fatal(self.timeout_error())),
            Ok(Err(e)) => Err(AttemptError::retryable(LlmError::Broken {
                url: self.base_url.clone(),
                reason: innermost(&e),
            })),
            Ok(Ok(chunk)) => Ok(chunk),
        }
    }

    /// The error for a non-success response.
    async fn status_error<V: Vendor>(&self, vendor: &V, response: Response) -> AttemptError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match tokio::time::timeout(self.timeout, response.text()).await {
            Ok(Ok(text)) => self.error_excerpt(&text),
            _ => String::new(),
        };
        if let Some(error) = vendor.classify(status, &body) {
            let retryable = matches!(error, LlmError::RateLimited | LlmError::Server { .. });
            return AttemptError::Failed {
                error,
                retryable,
                retry_after,
            };
        }
        let (error, retryable) = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                LlmError::Unauthorized {
                    key_env: self.api_key_env.clone(),
                },
                false,
            ),
            StatusCode::NOT_FOUND => (
                LlmError::NotFound {
                    url: self.endpoint.clone(),
                    model: self.model.clone(),
                    hint: vendor.not_found_hint(&self.model),
                },
                false,
            ),
            StatusCode::TOO_MANY_REQUESTS => (LlmError::RateLimited, true),
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
                if is_prompt_too_long(&body) =>
            {
                (LlmError::PromptTooLong { message: body }, false)
            }
            _ => (
                LlmError::Server {
                    status: status.as_u16(),
                    body,
                },
                status.is_server_error(),
            ),
        };
        AttemptError::Failed {
            error,
            retryable,
            retry_after,
        }
    }

    /// The server's message from an error body, shortened and with the key masked in
    /// case the server echoed it.
    pub(super) fn error_excerpt(&self, body: &str) -> String {
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v["error"]["message"]
                    .as_str()
                    .or_else(|| v["error"].as_str())
                    .or_else(|| v["message"].as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| body.trim().to_owned());
        self.masked(&message)
    }

    /// `message` shortened, with the key masked.
    pub(super) fn masked(&self, message: &str) -> String {
        let key = self.api_key_env.as_deref().and_then(self.key_lookup);
        let message = match key {
            Some(key) if !key.trim().is_empty() => message.replace(key.trim(), "***"),
            _ => message.to_owned(),
        };
        truncate_chars(&message, ERROR_BODY_LIMIT)
    }
}

/// Whether an HTTP 400 body says the prompt does not fit the model, in the wording of
/// OpenAI, Anthropic, Gemini or Ollama.
fn is_prompt_too_long(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "prompt is too long",
        "context length",
        "context_length",
        "context window",
        "too many tokens",
        "exceeds the maximum number of tokens",
        "input token count",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// One vendor's side of an HTTP provider.
pub(super) trait Vendor: Send + Sync + 'static {
    fn core(&self) -> &HttpCore;

    /// Name for messages ("the Anthropic provider …").
    fn label(&self) -> &'static str;

    /// The header carrying the key, and its value.
    fn key_header(&self, key: &str) -> (HeaderName, String);

    /// Headers other than the key and content type.
    fn extra_headers(&self, request: RequestBuilder) -> RequestBuilder {
        request
    }

    /// The media type the reply should stream in.
    fn accept(&self) -> &'static str {
        "text/event-stream"
    }

    /// What to do about an unknown model, when the vendor has something better to say
    /// than "check llm.model".
    fn not_found_hint(&self, _model: &str) -> Option<String> {
        None
    }

    /// A vendor's own reading of an error response (e.g. a bad key sent as HTTP 400),
    /// before the common mapping.
    fn classify(&self, _status: StatusCode, _message: &str) -> Option<LlmError> {
        None
    }

    /// Reads a successful response into events, ending with `Finish`.
    fn read(
        &self,
        response: Response,
        out: &Emitter,
    ) -> impl Future<Output = Result<(), AttemptError>> + Send;
}

/// The sending half plus what the retry logic needs to know about it.
pub(super) struct Emitter {
    tx: mpsc::Sender<Result<LlmEvent, LlmError>>,
    /// Something reached the consumer: retrying now would duplicate output.
    emitted: AtomicBool,
    /// `Finish` was sent.
    finished: AtomicBool,
}

/// The consumer dropped its receiver.
pub(super) struct Gone;

impl Emitter {
    pub(super) async fn send(&self, event: LlmEvent) -> Result<(), Gone> {
        let is_finish = matches!(event, LlmEvent::Finish(_));
        self.emitted.store(true, Ordering::SeqCst);
        self.tx.send(Ok(event)).await.map_err(|_| Gone)?;
        if is_finish {
            self.finished.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Ends a reply: its usage, then `Finish`. APIs that end a reply with tool calls as
    /// "stop" (or say nothing) get [`FinishReason::ToolCalls`] when it made calls.
    pub(super) async fn finish_reply(
        &self,
        usage: Option<vtuber_shared::Usage>,
        finish: Option<FinishReason>,
        made_calls: bool,
    ) -> Result<(), AttemptError> {
        if let Some(usage) = usage {
            self.send(LlmEvent::Usage(usage)).await?;
        }
        let finish = match finish {
            Some(FinishReason::Stop) | None if made_calls => FinishReason::ToolCalls,
            other => other.unwrap_or(FinishReason::Stop),
        };
        self.send(LlmEvent::Finish(finish)).await?;
        Ok(())
    }

    /// An emitter and its receiving end, for tests of stream readers.
    #[cfg(test)]
    pub(super) fn for_test() -> (Self, LlmStream) {
        let (tx, rx) = mpsc::channel(1024);
        let out = Self {
            tx,
            emitted: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        };
        (out, rx)
    }

    fn emitted(&self) -> bool {
        self.emitted.load(Ordering::SeqCst)
    }
}

/// Why one HTTP attempt ended without a complete reply.
pub(super) enum AttemptError {
    Failed {
        error: LlmError,
        /// Worth another attempt if nothing was emitted yet.
        retryable: bool,
        retry_after: Option<Duration>,
    },
    Gone,
}

impl AttemptError {
    pub(super) fn fatal(error: LlmError) -> Self {
        Self::Failed {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    pub(super) fn retryable(error: LlmError) -> Self {
        Self::Failed {
            error,
            retryable: true,
            retry_after: None,
        }
    }
}

impl From<Gone> for AttemptError {
    fn from(_: Gone) -> Self {
        Self::Gone
    }
}

/// Starts the task behind one `stream()` call; `body` is the request, encoded here.
pub(super) fn spawn<V: Vendor>(
    vendor: Arc<V>,
    body: &impl serde::Serialize,
    cancel: CancellationToken,
) -> LlmStream {
    let body = serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| LlmError::Inference(format!("cannot encode the request: {e}")));
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(run(vendor, body, cancel, tx));
        }
        Err(_) => {
            let _ = tx.try_send(Err(LlmError::Inference(format!(
                "the {} provider was called outside the tokio runtime",
                vendor.label()
            ))));
        }
    }
    rx
}

async fn run<V: Vendor>(
    vendor: Arc<V>,
    body: Result<Bytes, LlmError>,
    cancel: CancellationToken,
    tx: mpsc::Sender<Result<LlmEvent, LlmError>>,
) {
    let out = Emitter {
        tx,
        emitted: AtomicBool::new(false),
        finished: AtomicBool::new(false),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let _ = out.tx.send(Err(e)).await;
            return;
        }
    };
    // Dropping `exchange` drops the HTTP response, which closes the connection.
    let result = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        () = out.tx.closed() => Some(Err(AttemptError::Gone)),
        result = exchange(vendor.as_ref(), body, &out) => Some(result),
    };
    match result {
        None => {
            if !out.finished.load(Ordering::SeqCst) {
                debug!("LLM request cancelled");
                let _ = out
                    .tx
                    .send(Ok(LlmEvent::Finish(FinishReason::Cancelled)))
                    .await;
            }
        }
        Some(Ok(()) | Err(AttemptError::Gone)) => {}
        Some(Err(AttemptError::Failed { error, .. })) => {
            warn!(error = %error, "LLM request failed");
            let _ = out.tx.send(Err(error)).await;
        }
    }
}

/// Exponential backoff for retry `attempt` (0-based), or the server's Retry-After when
/// that is longer, both capped.
pub(super) fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
    exp.max(retry_after.unwrap_or_default()).min(BACKOFF_CAP)
}

/// Attempts until success, a fatal error, or the retries are spent.
async fn exchange<V: Vendor>(vendor: &V, body: Bytes, out: &Emitter) -> Result<(), AttemptError> {
    let retries = vendor.core().retries;
    let mut attempt = 0;
    loop {
        match one_attempt(vendor, body.clone(), out).await {
            Err(AttemptError::Failed {
                error,
                retryable: true,
                retry_after,
            }) if attempt < retries && !out.emitted() => {
                let delay = backoff(attempt, retry_after);
                warn!(attempt = attempt + 1, of = retries, ?delay, error = %error, "LLM request failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn one_attempt<V: Vendor>(
    vendor: &V,
    body: Bytes,
    out: &Emitter,
) -> Result<(), AttemptError> {
    let core = vendor.core();
    let mut req = core
        .client
        .post(&core.endpoint)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, vendor.accept())
        .body(body);
    req = vendor.extra_headers(req);
    if let Some((name, value)) = core.key_header(vendor)? {
        req = req.header(name, value);
    }
    debug!(endpoint = %core.endpoint, model = %core.model, "LLM request");
    let response = match tokio::time::timeout(core.timeout, req.send()).await {
        Err(_) => return Err(AttemptError::fatal(core.timeout_error())),
        Ok(Err(e)) => {
            return Err(AttemptError::retryable(LlmError::Connect {
                url: core.base_url.clone(),
                reason: innermost(&e),
            }));
        }
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return Err(core.status_error(vendor, response).await);
    }
    vendor.read(response, out).await
}

/// The most specific message in an error's source chain (e.g. "Connection refused"
/// rather than "error sending request").
pub(super) fn innermost(e: &reqwest::Error) -> String {
    let mut current: &dyn std::error::Error = e;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

pub(super) fn truncate_chars(s: &str, limit: usize) -> String {
    match s.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// A reply streamed as server-sent events, read event by event (see [`read_sse`]).
pub(super) trait SseReply: Send {
    /// Handles one event's data; `true` once the reply is complete.
    fn on_event(
        &mut self,
        data: &str,
        out: &Emitter,
    ) -> impl Future<Output = Result<bool, AttemptError>> + Send;

    /// Whether the stream may end here: it said how the reply ended.
    fn ended(&self) -> bool;

    /// Sends what is only known at the end (usage, the finish).
    fn end(self, out: &Emitter) -> impl Future<Output = Result<(), AttemptError>> + Send;
}

/// Reads a server-sent-event reply into `reply` until it is complete or the stream
/// ends; `expected` names what a complete stream ends with, for the error.
pub(super) async fn read_sse<R: SseReply>(
    core: &HttpCore,
    mut response: Response,
    out: &Emitter,
    mut reply: R,
    expected: &str,
) -> Result<(), AttemptError> {
    let mut parser = SseParser::default();
    while let Some(chunk) = core.next_chunk(&mut response).await? {
        for data in parser.push(&chunk).map_err(AttemptError::fatal)? {
            if reply.on_event(&data, out).await? {
                return reply.end(out).await;
            }
        }
    }
    for data in parser.finish().map_err(AttemptError::fatal)? {
        if reply.on_event(&data, out).await? {
            break;
        }
    }
    if reply.ended() {
        reply.end(out).await
    } else {
        Err(AttemptError::retryable(LlmError::Protocol(format!(
            "the stream ended before the reply was complete (no {expected})"
        ))))
    }
}

/// Splits a byte stream into lines (for NDJSON), bounded like the SSE parser: a line
/// longer than [`super::sse::MAX_LINE_BYTES`] fails instead of growing the buffer.
#[derive(Default)]
pub(super) struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Complete lines in `chunk` (with what came before), without their line ends.
    pub(super) fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<String>, LlmError> {
        let mut lines = Vec::new();
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            self.check_room(pos)?;
            self.buf.extend_from_slice(&chunk[..pos]);
            let line = String::from_utf8_lossy(&self.buf).trim().to_owned();
            self.buf.clear();
            if !line.is_empty() {
                lines.push(line);
            }
            chunk = &chunk[pos + 1..];
        }
        self.check_room(chunk.len())?;
        self.buf.extend_from_slice(chunk);
        Ok(lines)
    }

    /// A last line the server did not end.
    pub(super) fn finish(&mut self) -> Option<String> {
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.buf))
            .trim()
            .to_owned();
        (!line.is_empty()).then_some(line)
    }

    fn check_room(&self, more: usize) -> Result<(), LlmError> {
        let limit = super::sse::MAX_LINE_BYTES;
        if self.buf.len() + more > limit {
            Err(LlmError::LineTooLong { limit })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0, None), Duration::from_millis(250));
        assert_eq!(backoff(1, None), Duration::from_millis(500));
        assert_eq!(backoff(2, None), Duration::from_secs(1));
        assert_eq!(backoff(30, None), BACKOFF_CAP);
        assert_eq!(
            backoff(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(backoff(0, Some(Duration::from_secs(600))), BACKOFF_CAP);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("äöü", 2), "äö…");
        assert_eq!(truncate_chars("abc", 3), "abc");
    }

    #[test]
    fn prompt_too_long_in_each_vendors_words() {
        assert!(is_prompt_too_long(
            "prompt is too long: 210000 tokens > 200000 maximum"
        ));
        assert!(is_prompt_too_long(
            "This model's maximum context length is 8192 tokens."
        ));
        assert!(is_prompt_too_long(
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
        ));
        assert!(!is_prompt_too_long("invalid temperature"));
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":").unwrap().is_empty());
        assert_eq!(s.push(b"1}\n{\"b\"").unwrap(), vec!["{\"a\":1}"]);
        assert_eq!(s.push(b":2}\r\n\n").unwrap(), vec!["{\"b\":2}"]);
        assert!(s.push(b"{\"c\":3}").unwrap().is_empty());
        assert_eq!(s.finish().as_deref(), Some("{\"c\":3}"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn an_endless_line_fails() {
        let mut s = LineSplitter::default();
        let big = vec![b'x'; super::super::sse::MAX_LINE_BYTES + 1];
        assert!(matches!(s.push(&big), Err(LlmError::LineTooLong { .. })));
    }
}
