//! A mock OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.
//!
//! It speaks real HTTP/1.1 (hyper) and real SSE, so the daemon's HTTP client is tested
//! end to end: pooling, chunked bodies, dropped connections and all. Behaviours cover the
//! failure modes a provider must survive (status codes, hangs, connections cut
//! mid-stream) and the shapes of a reply (paced text, tool-call deltas, scripted turns).
//!
//! Besides OpenAI's API it speaks Anthropic's, Gemini's and Ollama's native ones (see
//! [`crate::mock_vendor`]), chosen by the request's path; point those providers at
//! [`MockLlm::root_url`].
//!
//! Async tests use [`MockLlm::start`] on their own runtime; synchronous code (integration
//! tests driving daemon binaries, benchmarks) uses [`MockLlm::start_blocking`], which runs
//! the server on a runtime of its own. Dropping the handle stops the server.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::mock_vendor::{CallPieces, Encoder, WireFormat, encoder};

/// Model name reported when the request names none.
pub const MOCK_MODEL: &str = "mock-model";

/// One tool call the mock asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments; streamed in several pieces.
    pub arguments: String,
}

impl MockToolCall {
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// A streamed reply: text tokens, then tool calls, then the finish chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct MockReply {
    /// Content deltas, one SSE event each.
    pub tokens: Vec<String>,
    pub tool_calls: Vec<MockToolCall>,
    /// Pace of content deltas; 0 sends as fast as possible.
    pub tokens_per_sec: f64,
    /// Pieces each tool call's arguments are split into.
    pub argument_chunks: usize,
    /// `finish_reason` of the last chunk; default `tool_calls` when there are tool calls,
    /// else `stop`.
    pub finish_reason: Option<String>,
    /// Wait before the first content delta (the model's time to first token).
    pub first_token_after: Duration,
}

impl MockReply {
    /// `text` split into word-sized tokens (each with its leading space, like BPE).
    pub fn text(text: &str) -> Self {
        Self::tokens(split_tokens(text))
    }

    /// Exactly these tokens.
    pub fn tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            tokens: tokens.into_iter().map(Into::into).collect(),
            tool_calls: Vec::new(),
            tokens_per_sec: 0.0,
            argument_chunks: 3,
            finish_reason: None,
            first_token_after: Duration::ZERO,
        }
    }

    /// No text, only these tool calls (finish reason `tool_calls`).
    pub fn tool_calls(calls: Vec<MockToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::tokens(Vec::<String>::new())
        }
    }

    #[must_use]
    pub fn with_tool_calls(mut self, calls: Vec<MockToolCall>) -> Self {
        self.tool_calls = calls;
        self
    }

    #[must_use]
    pub fn with_rate(mut self, tokens_per_sec: f64) -> Self {
        self.tokens_per_sec = tokens_per_sec;
        self
    }

    /// Waits `after` before the first token, as a model's prompt processing does.
    #[must_use]
    pub fn with_first_token_after(mut self, after: Duration) -> Self {
        self.first_token_after = after;
        self
    }

    #[must_use]
    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = Some(reason.into());
        self
    }

    #[must_use]
    pub fn with_argument_chunks(mut self, chunks: usize) -> Self {
        self.argument_chunks = chunks.max(1);
        self
    }

    /// The reply text as a client should assemble it.
    pub fn full_text(&self) -> String {
        self.tokens.concat()
    }

    fn finish_reason(&self) -> &str {
        match &self.finish_reason {
            Some(r) => r,
            None if self.tool_calls.is_empty() => "stop",
            None => "tool_calls",
        }
    }
}

/// What the server does with a chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub enum MockBehaviour {
    /// Stream this reply.
    Reply(MockReply),
    /// Reply `"{prefix}{last user message}"`, split into word tokens, at this pace
    /// (0 = as fast as possible). Shows that history reached the prompt.
    EchoLastUser { prefix: String, tokens_per_sec: f64 },
    /// Answer with this HTTP status and an error body in the request's format.
    Status { status: u16, message: String },
    /// Answer with this HTTP status, a `retry-after: secs` header and an error body.
    RetryAfter { status: u16, secs: u64 },
    /// Accept the connection and read the request, then never answer.
    HangBeforeFirstByte,
    /// Stream the first `after_tokens` tokens of the reply, then go silent without
    /// closing the connection.
    HangAfter {
        reply: MockReply,
        after_tokens: usize,
    },
    /// Stream the first `after_tokens` tokens of the reply, then cut the connection.
    CloseAfter {
        reply: MockReply,
        after_tokens: usize,
    },
    /// Request n (counting from 0, over the server's lifetime) gets entry n; later
    /// requests get the last entry. Entries are resolved with the same count.
    Script(Vec<MockBehaviour>),
    /// Request n gets entry n modulo the length: a repeating exchange, such as a tool
    /// call then its answer, turn after turn.
    Cycle(Vec<MockBehaviour>),
    /// Stream `token` over and over, never finishing, at this pace (0 = as fast as
    /// possible), until the client goes away: a server ignoring `max_tokens`.
    Endless { token: String, tokens_per_sec: f64 },
    /// Open a `data:` line and send `bytes` more bytes on it without a line end (in
    /// 64 KiB writes), then close the connection: a server that is not streaming SSE.
    LongLine { bytes: usize },
}

impl MockBehaviour {
    /// Stream `text` as word tokens, as fast as possible.
    pub fn reply(text: &str) -> Self {
        Self::Reply(MockReply::text(text))
    }

    /// Answer every request with `status`.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            message: format!("mock error {status}"),
        }
    }

    /// `failures` answers with `status` (e.g. 503), then `then` for every later request.
    pub fn fail_then(failures: usize, status: u16, then: MockBehaviour) -> Self {
        let mut script = vec![Self::status(status); failures];
        script.push(then);
        Self::Script(script)
    }

    /// [`MockBehaviour::Endless`] with `" word"` tokens.
    pub fn endless(tokens_per_sec: f64) -> Self {
        Self::Endless {
            token: " word".into(),
            tokens_per_sec,
        }
    }

    /// Echo the last user message after "You said: ".
    pub fn echo_last_user() -> Self {
        Self::EchoLastUser {
            prefix: "You said: ".into(),
            tokens_per_sec: 0.0,
        }
    }

    fn resolve(&self, n: usize) -> &Self {
        match self {
            Self::Cycle(steps) if !steps.is_empty() => steps[n % steps.len()].resolve(n),
            Self::Script(steps) => match steps.get(n).or_else(|| steps.last()) {
                Some(step) => step.resolve(n),
                None => self,
            },
            other => other,
        }
    }
}

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when it was empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `messages` of a chat request.
    pub fn messages(&self) -> &[Value] {
        self.body["messages"].as_array().map_or(&[], Vec::as_slice)
    }

    /// Names of the tools offered in a chat request.
    pub fn tool_names(&self) -> Vec<&str> {
        self.body["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["function"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Content of the last `user` message.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages()
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| match &m["content"] {
                // With pictures the content is a list of parts; the text is a part.
                Value::Array(parts) => parts
                    .iter()
                    .find(|p| p["type"] == "text")
                    .and_then(|p| p["text"].as_str()),
                content => content.as_str(),
            })
    }

    /// The `image_url` parts of the last user message (data URLs).
    pub fn last_user_images(&self) -> Vec<&str> {
        self.messages()
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_array())
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p["image_url"]["url"].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct Shared {
    behaviour: Mutex<MockBehaviour>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Chat completion requests seen, to index scripts.
    completions: AtomicUsize,
}

/// Locks a mutex even if a panicking test thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running mock server. Dropping it stops the server and ends open streams.
#[derive(Debug)]
pub struct MockLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    /// Present when started with [`MockLlm::start_blocking`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl MockLlm {
    /// Starts on the current tokio runtime (call from async code).
    pub async fn start(behaviour: MockBehaviour) -> io::Result<Self> {
        let handle = tokio::runtime::Handle::current();
        Self::launch(&handle, behaviour)
    }

    /// Starts on a runtime of its own, for synchronous callers. Also safe to call from
    /// async code.
    pub fn start_blocking(behaviour: MockBehaviour) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mock-llm")
            .enable_all()
            .build()?;
        let mut mock = Self::launch(runtime.handle(), behaviour)?;
        mock.runtime = Some(runtime);
        Ok(mock)
    }

    fn launch(handle: &tokio::runtime::Handle, behaviour: MockBehaviour) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _guard = handle.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
            completions: AtomicUsize::new(0),
        });
        let shutdown = CancellationToken::new();
        handle.spawn(serve(listener, shutdown.clone(), {
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            move |req| handle_request(shared.clone(), shutdown.clone(), req)
        }));
        Ok(Self {
            addr,
            shared,
            shutdown,
            runtime: None,
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `llm.base_url` with the `anthropic`,
    /// `gemini` and `ollama` providers.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the value for `llm.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Replaces the behaviour for later requests (a script keeps counting from the
    /// requests already served).
    pub fn set_behaviour(&self, behaviour: MockBehaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Accepts HTTP/1 connections on `listener` until `shutdown`, each request answered by
/// `handle` (the mock LLM's and the mock speech services').
pub(crate) async fn serve<F, Fut, B>(listener: TcpListener, shutdown: CancellationToken, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        // As real servers do (Go's net/http, uvicorn): without it, Nagle holds each small
        // SSE chunk until the previous one is acknowledged, adding ~40 ms per token on
        // pooled connections.
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(handle);
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// What the task producing a response body sends.
pub(crate) enum BodyItem {
    Data(Bytes),
    /// Abort the connection once the data before it is flushed.
    Cut,
}

/// A response body fed from a channel, so a task can pace, stall or abort it.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<BodyItem>,
    /// `Cut` was received and the flush opportunity given.
    cutting: bool,
}

impl ChannelBody {
    pub(crate) fn new(rx: mpsc::Receiver<BodyItem>) -> Self {
        Self { rx, cutting: false }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.cutting {
            // A body error makes hyper drop the connection without the final chunk.
            return Poll::Ready(Some(Err(io::Error::other("mock cut the connection"))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(BodyItem::Data(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(BodyItem::Cut)) => {
                // Pending once so hyper flushes what it buffered before the error
                // discards it; the self-wake brings it straight back for the error.
                self.cutting = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

type MockBody = http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<MockBody> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

fn error_response(status: u16, message: &str) -> Response<MockBody> {
    format_error(WireFormat::OpenAi, status, message)
}

fn format_error(format: WireFormat, status: u16, message: &str) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format.error_body(status.as_u16(), message);
    full(status, "application/json", body.to_string())
}

async fn handle_request(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(error_response(400, "could not read the request body")),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    lock(&shared.requests).push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        headers,
        body: body.clone(),
    });

    if method == Method::GET && path.ends_with("/models") {
        let list = json!({"object": "list", "data": [{"id": MOCK_MODEL, "object": "model"}]});
        return Ok(full(StatusCode::OK, "application/json", list.to_string()));
    }
    let format = match WireFormat::from_path(&path) {
        Some(format) if method == Method::POST => format,
        _ => {
            return Ok(error_response(
                404,
                &format!("no route for {method} {path}"),
            ));
        }
    };
    if body.is_null() {
        return Ok(format_error(format, 400, "the body is not JSON"));
    }

    let n = shared.completions.fetch_add(1, Ordering::SeqCst);
    let behaviour = lock(&shared.behaviour).resolve(n).clone();
    let request = RequestInfo::new(&body, n, format);
    match behaviour {
        MockBehaviour::Endless {
            token,
            tokens_per_sec,
        } => {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(stream_endless(request, token, tokens_per_sec, tx, shutdown));
            return Ok(sse_response(rx));
        }
        MockBehaviour::LongLine { bytes } => {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(stream_long_line(bytes, tx, shutdown));
            return Ok(sse_response(rx));
        }
        _ => {}
    }
    let (reply, cut) = match behaviour {
        MockBehaviour::Reply(reply) => (reply, Cut::None),
        MockBehaviour::EchoLastUser {
            prefix,
            tokens_per_sec,
        } => {
            let last = format.last_user_text(&body);
            let reply = MockReply::text(&format!("{prefix}{last}")).with_rate(tokens_per_sec);
            (reply, Cut::None)
        }
        MockBehaviour::Status { status, message } => {
            return Ok(format_error(format, status, &message));
        }
        MockBehaviour::RetryAfter { status, secs } => {
            let mut resp = format_error(format, status, &format!("mock error {status}"));
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            return Ok(resp);
        }
        MockBehaviour::HangBeforeFirstByte => {
            shutdown.cancelled().await;
            return Ok(error_response(503, "mock server shutting down"));
        }
        MockBehaviour::HangAfter {
            reply,
            after_tokens,
        } => (reply, Cut::Hang(after_tokens)),
        MockBehaviour::CloseAfter {
            reply,
            after_tokens,
        } => (reply, Cut::Close(after_tokens)),
        MockBehaviour::Script(_)
        | MockBehaviour::Cycle(_)
        | MockBehaviour::Endless { .. }
        | MockBehaviour::LongLine { .. } => (MockReply::text(""), Cut::None),
    };

    if !request.stream {
        return Ok(match cut {
            Cut::None => full(
                StatusCode::OK,
                "application/json",
                completion_json(&request, &reply).to_string(),
            ),
            Cut::Hang(_) => {
                shutdown.cancelled().await;
                error_response(503, "mock server shutting down")
            }
            Cut::Close(_) => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(BodyItem::Cut);
                Response::new(ChannelBody::new(rx).boxed_unsync())
            }
        });
    }

    let (tx, rx) = mpsc::channel(16);
    let content_type = format.content_type();
    let encoder = encoder(format, &request.model, request.prompt_tokens)
        .unwrap_or_else(|| Box::new(OpenAiEncoder(request)));
    tokio::spawn(stream_reply(encoder, reply, cut, tx, shutdown));
    let mut resp = sse_response(rx);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

/// A `text/event-stream` response fed from `rx`.
fn sse_response(rx: mpsc::Receiver<BodyItem>) -> Response<MockBody> {
    let mut resp = Response::new(ChannelBody::new(rx).boxed_unsync());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Streams `token` until the client disconnects or the server stops.
async fn stream_endless(
    request: RequestInfo,
    token: String,
    tokens_per_sec: f64,
    tx: mpsc::Sender<BodyItem>,
    shutdown: CancellationToken,
) {
    let mut pace = (tokens_per_sec > 0.0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / tokens_per_sec));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let chunk = Bytes::from(request.delta(json!({ "content": token }), None));
    loop {
        if let Some(pace) = pace.as_mut() {
            tokio::select! {
                _ = pace.tick() => {}
                () = shutdown.cancelled() => return,
            }
        }
        let sent = tokio::select! {
            sent = tx.send(BodyItem::Data(chunk.clone())) => sent.is_ok(),
            () = shutdown.cancelled() => return,
        };
        if !sent {
            return;
        }
    }
}

/// Sends one `data:` line of `bytes` bytes and no line end, then cuts the connection.
async fn stream_long_line(bytes: usize, tx: mpsc::Sender<BodyItem>, shutdown: CancellationToken) {
    const PIECE: usize = 64 * 1024;
    let opening = Bytes::from_static(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    let piece = Bytes::from(vec![b'x'; PIECE]);
    if tx.send(BodyItem::Data(opening)).await.is_err() {
        return;
    }
    let mut left = bytes;
    while left > 0 {
        let n = left.min(PIECE);
        let sent = tokio::select! {
            sent = tx.send(BodyItem::Data(piece.slice(..n))) => sent.is_ok(),
            () = shutdown.cancelled() => return,
        };
        if !sent {
            return;
        }
        left -= n;
    }
    let _ = tx.send(BodyItem::Cut).await;
}

/// Where a streamed reply stops early.
#[derive(Debug, Clone, Copy)]
enum Cut {
    None,
    Hang(usize),
    Close(usize),
}

/// What the reply needs from the request.
struct RequestInfo {
    id: String,
    model: String,
    stream: bool,
    include_usage: bool,
    prompt_tokens: u64,
}

impl RequestInfo {
    fn new(body: &Value, n: usize, format: WireFormat) -> Self {
        let prompt_chars: usize = body["messages"]
            .as_array()
            .map(|msgs| {
                msgs.iter()
                    .filter_map(|m| m["content"].as_str())
                    .map(|c| c.chars().count())
                    .sum()
            })
            .unwrap_or(0);
        Self {
            id: format!("chatcmpl-mock-{n}"),
            model: body["model"].as_str().unwrap_or(MOCK_MODEL).to_owned(),
            // Gemini streams by endpoint, the others by `stream: true`.
            stream: format == WireFormat::Gemini || body["stream"].as_bool().unwrap_or(false),
            include_usage: body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            prompt_tokens: (prompt_chars.div_ceil(4)).max(1) as u64,
        }
    }

    fn chunk(&self, choices: Value) -> String {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": choices,
        });
        format!("data: {chunk}\n\n")
    }

    fn delta(&self, delta: Value, finish_reason: Option<&str>) -> String {
        self.chunk(json!([{ "index": 0, "delta": delta, "finish_reason": finish_reason }]))
    }

    fn usage(&self, completion_tokens: u64) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }
}

fn completion_json(request: &RequestInfo, reply: &MockReply) -> Value {
    let tool_calls: Vec<Value> = reply
        .tool_calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": reply.full_text()});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    json!({
        "id": request.id,
        "object": "chat.completion",
        "created": 0,
        "model": request.model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason()}],
        "usage": request.usage(reply.tokens.len() as u64),
    })
}

/// Splits a string into about `pieces` parts on character boundaries.
fn split_chars(s: &str, pieces: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(pieces.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Words with their leading whitespace, the way BPE tokens look.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() && in_word {
            tokens.push(std::mem::take(&mut current));
            in_word = false;
        } else if !c.is_whitespace() {
            in_word = true;
        }
        current.push(c);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// OpenAI's chat-completion chunks.
struct OpenAiEncoder(RequestInfo);

impl Encoder for OpenAiEncoder {
    fn head(&mut self) -> Vec<String> {
        // A keep-alive comment first, like several hosted APIs send.
        vec![
            ": keep-alive\n\n".to_owned(),
            self.0
                .delta(json!({"role": "assistant", "content": ""}), None),
        ]
    }

    fn text(&mut self, token: &str) -> Vec<String> {
        vec![self.0.delta(json!({ "content": token }), None)]
    }

    fn tool_call(&mut self, call: CallPieces<'_>) -> Vec<String> {
        let index = call.index;
        let head = json!({"tool_calls": [{
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]});
        let mut out = vec![self.0.delta(head, None)];
        for piece in call.pieces {
            let part = json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
            out.push(self.0.delta(part, None));
        }
        out
    }

    fn tail(&mut self, output_tokens: u64, finish_reason: &str) -> Vec<String> {
        let request = &self.0;
        let mut out = vec![request.delta(json!({}), Some(finish_reason))];
        if request.include_usage {
            let usage = request.usage(output_tokens);
            let chunk = json!({
                "id": request.id,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": request.model,
                "choices": [],
                "usage": usage,
            });
            out.push(format!("data: {chunk}\n\n"));
        }
        out.push("data: [DONE]\n\n".to_owned());
        out
    }
}

/// Writes the stream of one reply, in the encoder's format, into the body channel.
async fn stream_reply(
    mut encoder: Box<dyn Encoder>,
    reply: MockReply,
    cut: Cut,
    tx: mpsc::Sender<BodyItem>,
    shutdown: CancellationToken,
) {
    let send = |pieces: Vec<String>| {
        let tx = tx.clone();
        async move {
            for piece in pieces {
                if tx.send(BodyItem::Data(Bytes::from(piece))).await.is_err() {
                    return false;
                }
            }
            true
        }
    };
    if !send(encoder.head()).await {
        return;
    }
    if !reply.first_token_after.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(reply.first_token_after) => {}
            () = shutdown.cancelled() => return,
        }
    }

    let mut pace = (reply.tokens_per_sec > 0.0).then(|| {
        let mut interval =
            tokio::time::interval(Duration::from_secs_f64(1.0 / reply.tokens_per_sec));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let stop_at = match cut {
        Cut::None => None,
        Cut::Hang(k) | Cut::Close(k) => Some(k),
    };
    for (i, token) in reply.tokens.iter().enumerate() {
        if stop_at == Some(i) {
            return cut_stream(cut, &tx, &shutdown).await;
        }
        if let Some(pace) = pace.as_mut() {
            tokio::select! {
                _ = pace.tick() => {}
                () = shutdown.cancelled() => return,
            }
        }
        if !send(encoder.text(token)).await {
            return;
        }
    }
    if stop_at.is_some_and(|k| k >= reply.tokens.len()) {
        return cut_stream(cut, &tx, &shutdown).await;
    }

    for (index, call) in reply.tool_calls.iter().enumerate() {
        let pieces = split_chars(&call.arguments, reply.argument_chunks);
        let call = CallPieces {
            index,
            id: &call.id,
            name: &call.name,
            arguments: &call.arguments,
            pieces,
        };
        if !send(encoder.tool_call(call)).await {
            return;
        }
    }
    let _ = send(encoder.tail(reply.tokens.len() as u64, reply.finish_reason())).await;
}

async fn cut_stream(cut: Cut, tx: &mpsc::Sender<BodyItem>, shutdown: &CancellationToken) {
    match cut {
        Cut::Close(_) => {
            let _ = tx.send(BodyItem::Cut).await;
        }
        Cut::Hang(_) => {
            // Keep the connection open and silent until the client gives up.
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tx.closed() => {}
            }
        }
        Cut::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_their_leading_space_and_rejoin_exactly() {
        let text = "Hello there,  small world! ☺ ok";
        let tokens = split_tokens(text);
        assert_eq!(tokens[0], "Hello");
        assert_eq!(tokens[1], " there,");
        assert_eq!(tokens.concat(), text);
    }

    #[test]
    fn scripts_index_by_request_and_repeat_the_last_step() {
        let script = MockBehaviour::fail_then(2, 503, MockBehaviour::reply("ok"));
        assert_eq!(script.resolve(0), &MockBehaviour::status(503));
        assert_eq!(script.resolve(1), &MockBehaviour::status(503));
        assert_eq!(script.resolve(2), &MockBehaviour::reply("ok"));
        assert_eq!(script.resolve(7), &MockBehaviour::reply("ok"));
        let cycle =
            MockBehaviour::Cycle(vec![MockBehaviour::status(500), MockBehaviour::reply("b")]);
        assert_eq!(cycle.resolve(0), &MockBehaviour::status(500));
        assert_eq!(cycle.resolve(3), &MockBehaviour::reply("b"));
        assert_eq!(cycle.resolve(4), &MockBehaviour::status(500));
    }

    #[test]
    fn arguments_split_on_char_boundaries() {
        let parts = split_chars(r#"{"city":"Zürich"}"#, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), r#"{"city":"Zürich"}"#);
    }
}
