//! Any server speaking OpenAI's `/v1/chat/completions` with SSE streaming (OpenAI,
//! llama.cpp's server, Ollama, vLLM, LM Studio, OpenRouter, …).
//!
//! One pooled HTTP client serves every request. A request is retried with exponential
//! backoff on connection errors, 429 and 5xx, but only while nothing has reached the
//! caller: once a token is out, a retry would repeat it. The API key is read from the
//! environment at request time, so rotating it needs no restart, and it is never
//! stored, logged or put into an error.
//!
//! This file is the vendor side (HTTP, key, retries, errors); the wire format sits apart:
//! [`wire`] the JSON shapes, [`sse`] the event stream, [`stream`] chunks into events.

mod stream;
mod wire;

use std::fmt;
use std::sync::Arc;

use reqwest::Response;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use tokio_util::sync::CancellationToken;
use vtuber_shared::{LlmInfo, ModelLoad};

use super::http::{self, AttemptError, Emitter, HttpCore, Vendor};
use super::{ChatRequest, FinishReason, LlmError, LlmEvent, LlmProvider, LlmStream};
use crate::config::LlmConfig;
use stream::StreamState;
use wire::{CompletionJson, RequestBody, StreamOptions, WireMessage, WireTool, map_finish};

/// What [`OpenAiProvider::context_size`] reports. The API does not say how large a
/// remote model's window is; this generous value keeps the history window bounded by
/// `history.token_budget` rather than by a guess, and a prompt that is really too long
/// comes back from the server as an HTTP 400 with its explanation.
pub const REMOTE_CONTEXT_SIZE: usize = 32_768;

/// Largest non-streamed (`application/json`) completion read. The turn's own limits
/// (`llm.max_reply_bytes`) cut the text later; this only bounds the buffer.
const MAX_WHOLE_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Streams chat completions from an OpenAI-compatible server.
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    core: HttpCore,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the variable's name: the key itself is never held.
        let core = &self.inner.core;
        f.debug_struct("OpenAiProvider")
            .field("endpoint", &core.endpoint)
            .field("model", &core.model)
            .field("api_key_env", &core.api_key_env)
            .field("timeout", &core.timeout)
            .field("retries", &core.retries)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// Builds the provider; fails if `llm.model` is unset, since OpenAI-compatible
    /// servers need a model name.
    pub fn new(cfg: &LlmConfig) -> Result<Self, LlmError> {
        let model = HttpCore::required_model(cfg, "openai_compatible")?;
        let base_url = cfg.base_url.trim().trim_end_matches('/').to_owned();
        let endpoint = format!("{base_url}/chat/completions");
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

impl LlmProvider for OpenAiProvider {
    fn info(&self) -> LlmInfo {
        LlmInfo {
            backend: "openai_compatible".into(),
            model: self.inner.core.model.clone(),
        }
    }

    fn load_state(&self) -> ModelLoad {
        ModelLoad::Ready
    }

    fn stream(&self, request: ChatRequest, cancel: CancellationToken) -> LlmStream {
        http::spawn(
            self.inner.clone(),
            &self.inner.request_body(&request),
            cancel,
        )
    }

    fn context_size(&self) -> usize {
        REMOTE_CONTEXT_SIZE
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
        "OpenAI-compatible"
    }

    fn key_header(&self, key: &str) -> (HeaderName, String) {
        (AUTHORIZATION, format!("Bearer {key}"))
    }

    async fn read(&self, response: Response, out: &Emitter) -> Result<(), AttemptError> {
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            self.read_whole(response, out).await
        } else {
            let expected = "finish_reason or [DONE]";
            http::read_sse(&self.core, response, out, StreamState::default(), expected).await
        }
    }
}

impl Inner {
    fn request_body<'a>(&'a self, request: &'a ChatRequest) -> RequestBody<'a> {
        RequestBody {
            model: &self.core.model,
            messages: request.messages.iter().map(WireMessage::from).collect(),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            temperature: request.temperature.or(self.temperature),
            max_tokens: request.max_tokens.or(self.max_tokens),
            tools: request.tools.iter().map(WireTool::from).collect(),
        }
    }

    /// A server that ignored `stream: true` and sent one JSON completion.
    async fn read_whole(&self, mut response: Response, out: &Emitter) -> Result<(), AttemptError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.core.next_chunk(&mut response).await? {
            if body.len() + chunk.len() > MAX_WHOLE_BODY_BYTES {
                return Err(AttemptError::fatal(LlmError::BodyTooLarge {
                    limit: MAX_WHOLE_BODY_BYTES,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        let completion: CompletionJson = serde_json::from_slice(&body).map_err(|e| {
            AttemptError::fatal(LlmError::Protocol(format!(
                "unreadable JSON completion: {e}"
            )))
        })?;
        let mut finish = None;
        if let Some(choice) = completion.choices.into_iter().next() {
            if let Some(message) = choice.message {
                if let Some(text) = message.content.filter(|t| !t.is_empty()) {
                    out.send(LlmEvent::TextDelta(text)).await?;
                }
                for (index, call) in message.tool_calls.into_iter().enumerate() {
                    let function = call.function.unwrap_or_default();
                    out.send(LlmEvent::ToolCallDelta {
                        index,
                        id: call.id,
                        name: function.name,
                        arguments: function.arguments.unwrap_or_default(),
                    })
                    .await?;
                }
            }
            finish = choice.finish_reason.as_deref().map(map_finish);
        }
        if let Some(usage) = completion.usage {
            out.send(LlmEvent::Usage(usage.into())).await?;
        }
        out.send(LlmEvent::Finish(finish.unwrap_or(FinishReason::Stop)))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply, MockToolCall};

    use super::super::http::ERROR_BODY_LIMIT;
    use super::super::sse::MAX_LINE_BYTES;
    use super::*;
    use crate::llm::{ChatMessage, Role, ToolSpec};

    const SECRET: &str = "sk-test-SECRET-0123456789";
    const KEY_VAR: &str = "VTUBER_TEST_OPENAI_KEY";

    fn test_key(name: &str) -> Option<String> {
        (name == KEY_VAR).then(|| SECRET.to_owned())
    }

    fn config(base_url: &str) -> LlmConfig {
        LlmConfig {
            provider: crate::config::ProviderKind::OpenaiCompatible,
            base_url: base_url.to_owned(),
            model: Some("test-model".into()),
            api_key_env: Some(KEY_VAR.into()),
            timeout_secs: 5,
            retries: 2,
            ..LlmConfig::default()
        }
    }

    fn provider(cfg: &LlmConfig) -> OpenAiProvider {
        OpenAiProvider::new(cfg)
            .expect("valid config")
            .with_key_lookup(test_key)
    }

    fn user(text: &str) -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage::new(Role::User, text)],
            ..ChatRequest::default()
        }
    }

    /// Reads the stream to its end, with a deadline so a hang fails the test.
    async fn collect(mut rx: LlmStream) -> Vec<Result<LlmEvent, LlmError>> {
        let mut items = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return items,
                Err(_) => panic!("stream did not end; got {items:?}"),
            }
        }
    }

    fn text_of(items: &[Result<LlmEvent, LlmError>]) -> String {
        items
            .iter()
            .filter_map(|i| match i {
                Ok(LlmEvent::TextDelta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The reason of the last item, if it is a `Finish`.
    fn last_finish(items: &[Result<LlmEvent, LlmError>]) -> Option<FinishReason> {
        match items.last() {
            Some(Ok(LlmEvent::Finish(reason))) => Some(*reason),
            _ => None,
        }
    }

    fn only_error(items: Vec<Result<LlmEvent, LlmError>>) -> LlmError {
        let mut errors: Vec<LlmError> = items.into_iter().filter_map(Result::err).collect();
        assert_eq!(errors.len(), 1, "expected exactly one error");
        errors.remove(0)
    }

    #[tokio::test]
    async fn streams_text_usage_and_finish_in_order() {
        let reply = MockReply::tokens(["Hel", "lo", ", wo", "rld ☺", "!"]);
        let mock = MockLlm::start(MockBehaviour::Reply(reply)).await.unwrap();
        let p = provider(&config(&mock.base_url()));
        let items = collect(p.stream(user("hi"), CancellationToken::new())).await;

        assert_eq!(text_of(&items), "Hello, world ☺!");
        let n = items.len();
        assert!(
            matches!(&items[n - 2], Ok(LlmEvent::Usage(u)) if u.completion_tokens == 5 && u.prompt_tokens > 0)
        );
        assert_eq!(last_finish(&items), Some(FinishReason::Stop));

        let requests = mock.requests();
        assert_eq!(requests.len(), 1);
        let body = &requests[0].body;
        assert_eq!(requests[0].path, "/v1/chat/completions");
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 512);
        assert!(body.get("tools").is_none());
        assert_eq!(requests[0].last_user_message(), Some("hi"));
    }

    #[tokio::test]
    async fn sends_the_key_as_bearer_and_never_shows_it() {
        let mock = MockLlm::start(MockBehaviour::status(500)).await.unwrap();
        let mut cfg = config(&mock.base_url());
        cfg.retries = 0;
        let p = provider(&cfg);
        assert!(!format!("{p:?}").contains(SECRET));
        assert!(format!("{p:?}").contains(KEY_VAR));

        let err = only_error(collect(p.stream(user("hi"), CancellationToken::new())).await);
        let req = &mock.requests()[0];
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {SECRET}").as_str())
        );
        for text in [
            err.to_string(),
            format!("{err:?}"),
            format!("{:?}", err.to_body()),
        ] {
            assert!(!text.contains(SECRET), "key leaked into {text}");
        }
    }

    #[tokio::test]
    async fn no_key_variable_means_no_authorization_header() {
        let mock = MockLlm::start(MockBehaviour::reply("ok")).await.unwrap();
        let mut cfg = config(&mock.base_url());
        cfg.api_key_env = None;
        let p = provider(&cfg);
        let items = collect(p.stream(user("hi"), CancellationToken::new())).await;
        assert_eq!(text_of(&items), "ok");
        assert_eq!(mock.requests()[0].header("authorization"), None);
    }

    #[tokio::test]
    async fn assembles_tool_call_deltas_and_sends_tools() {
        let calls = vec![
            MockToolCall::new("call_1", "get_weather", r#"{"city":"Zürich","unit":"c"}"#),
            MockToolCall::new("call_2", "get_time", r#"{"tz":"Europe/Zurich"}"#),
        ];
        let reply = MockReply::tool_calls(calls.clone()).with_argument_chunks(4);
        let mock = MockLlm::start(MockBehaviour::Reply(reply)).await.unwrap();
        let p = provider(&config(&mock.base_url()));
        let mut request = user("weather?");
        request.tools = vec![ToolSpec {
            name: "get_weather".into(),
            description: "Weather for a city".into(),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }];
        let items = collect(p.stream(request, CancellationToken::new())).await;

        let mut assembled: Vec<(String, String, String)> = Vec::new();
        let mut fragments = 0;
        for item in &items {
            if let Ok(LlmEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            }) = item
            {
                fragments += 1;
                if *index == assembled.len() {
                    assembled.push(Default::default());
                }
                let call = &mut assembled[*index];
                if let Some(id) = id {
                    call.0 = id.clone();
                }
                if let Some(name) = name {
                    call.1 = name.clone();
                }
                call.2.push_str(arguments);
            }
        }
        assert!(fragments > 4, "arguments should arrive in pieces");
        let expected: Vec<(String, String, String)> = calls
            .iter()
            .map(|c| (c.id.clone(), c.name.clone(), c.arguments.clone()))
            .collect();
        assert_eq!(assembled, expected);
        assert_eq!(last_finish(&items), Some(FinishReason::ToolCalls));

        let body = &mock.requests()[0].body;
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
            "string"
        );
    }

    #[tokio::test]
    async fn serialises_tool_turns_in_openai_format() {
        let mock = MockLlm::start(MockBehaviour::reply("done")).await.unwrap();
        let p = provider(&config(&mock.base_url()));
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.tool_calls = vec![super::super::ToolCall {
            id: "call_9".into(),
            name: "lookup".into(),
            arguments: r#"{"q":"x"}"#.into(),
        }];
        let mut tool = ChatMessage::new(Role::Tool, r#"{"answer":42}"#);
        tool.tool_call_id = Some("call_9".into());
        let request = ChatRequest {
            messages: vec![
                ChatMessage::new(Role::System, "be brief"),
                ChatMessage::new(Role::User, "look it up"),
                assistant,
                tool,
            ],
            temperature: Some(0.25),
            ..ChatRequest::default()
        };
        let items = collect(p.stream(request, CancellationToken::new())).await;
        assert_eq!(text_of(&items), "done");

        let msgs = mock.requests()[0].messages().to_vec();
        assert_eq!(msgs[0]["role"], "system");
        assert_eq!(msgs[2]["role"], "assistant");
        assert!(msgs[2]["content"].is_null());
        assert_eq!(msgs[2]["tool_calls"][0]["id"], "call_9");
        assert_eq!(msgs[2]["tool_calls"][0]["type"], "function");
        assert_eq!(msgs[2]["tool_calls"][0]["function"]["name"], "lookup");
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"q":"x"}"#
        );
        assert_eq!(msgs[3]["role"], "tool");
        assert_eq!(msgs[3]["tool_call_id"], "call_9");
        assert_eq!(msgs[3]["content"], r#"{"answer":42}"#);
        assert!(msgs[1].get("tool_call_id").is_none());
        assert_eq!(mock.requests()[0].body["temperature"], 0.25);
    }

    /// Whether an error is the expected mapping.
    type Check = fn(&LlmError) -> bool;

    #[tokio::test]
    async fn maps_http_errors_with_hints() {
        let cases: [(u16, Check, &str); 4] = [
            (
                401,
                |e| matches!(e, LlmError::Unauthorized { key_env: Some(v) } if v == KEY_VAR),
                KEY_VAR,
            ),
            (
                404,
                |e| matches!(e, LlmError::NotFound { model, .. } if model == "test-model"),
                "llm.model",
            ),
            (429, |e| matches!(e, LlmError::RateLimited), "wait"),
            (
                500,
                |e| matches!(e, LlmError::Server { status: 500, body } if body == "mock error 500"),
                "server",
            ),
        ];
        for (status, check, hint_part) in cases {
            let mock = MockLlm::start(MockBehaviour::status(status)).await.unwrap();
            let mut cfg = config(&mock.base_url());
            cfg.retries = 0;
            let err = only_error(
                collect(provider(&cfg).stream(user("hi"), CancellationToken::new())).await,
            );
            assert!(check(&err), "HTTP {status} mapped to {err:?}");
            let hint = err.to_body().hint.unwrap_or_default();
            assert!(hint.contains(hint_part), "hint for {status}: {hint}");
        }
    }

    #[tokio::test]
    async fn long_error_bodies_are_truncated() {
        let mock = MockLlm::start(MockBehaviour::Status {
            status: 502,
            message: "x".repeat(5000),
        })
        .await
        .unwrap();
        let mut cfg = config(&mock.base_url());
        cfg.retries = 0;
        let err =
            only_error(collect(provider(&cfg).stream(user("hi"), CancellationToken::new())).await);
        match err {
            LlmError::Server { status: 502, body } => {
                assert!(
                    body.chars().count() <= ERROR_BODY_LIMIT + 1,
                    "{}",
                    body.len()
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn retries_503_then_succeeds() {
        let mock = MockLlm::start(MockBehaviour::fail_then(
            2,
            503,
            MockBehaviour::reply("third time lucky"),
        ))
        .await
        .unwrap();
        let p = provider(&config(&mock.base_url()));
        let started = Instant::now();
        let items = collect(p.stream(user("hi"), CancellationToken::new())).await;
        assert_eq!(text_of(&items), "third time lucky");
        assert_eq!(last_finish(&items), Some(FinishReason::Stop));
        assert_eq!(mock.request_count(), 3);
        // Backoff 250 ms + 500 ms.
        assert!(started.elapsed() >= Duration::from_millis(700));
    }

    #[tokio::test]
    async fn gives_up_after_the_configured_retries() {
        let mock = MockLlm::start(MockBehaviour::status(429)).await.unwrap();
        let mut cfg = config(&mock.base_url());
        cfg.retries = 1;
        let err =
            only_error(collect(provider(&cfg).stream(user("hi"), CancellationToken::new())).await);
        assert!(matches!(err, LlmError::RateLimited));
        assert_eq!(mock.request_count(), 2);
    }

    #[tokio::test]
    async fn no_retry_once_output_started() {
        let reply = MockReply::tokens(["one ", "two ", "three ", "four"]);
        let mock = MockLlm::start(MockBehaviour::CloseAfter {
            reply,
            after_tokens: 2,
        })
        .await
        .unwrap();
        let p = provider(&config(&mock.base_url()));
        let items = collect(p.stream(user("hi"), CancellationToken::new())).await;
        assert_eq!(text_of(&items), "one two ");
        assert!(
            matches!(items.last(), Some(Err(LlmError::Broken { .. }))),
            "{items:?}"
        );
        assert!(!items.iter().any(|i| matches!(i, Ok(LlmEvent::Finish(_)))));
        assert_eq!(mock.request_count(), 1);
    }

    #[tokio::test]
    async fn a_cut_before_any_output_is_retried() {
        let reply = MockReply::tokens(["never"]);
        let mock = MockLlm::start(MockBehaviour::Script(vec![
            MockBehaviour::CloseAfter {
                reply,
                after_tokens: 0,
            },
            MockBehaviour::reply("fine"),
        ]))
        .await
        .unwrap();
        let p = provider(&config(&mock.base_url()));
        let items = collect(p.stream(user("hi"), CancellationToken::new())).await;
        assert_eq!(text_of(&items), "fine");
        assert_eq!(mock.request_count(), 2);
    }

    #[tokio::test]
    async fn first_byte_timeout() {
        let mock = MockLlm::start(MockBehaviour::HangBeforeFirstByte)
            .await
            .unwrap();
        let mut cfg = config(&mock.base_url());
        cfg.timeout_secs = 1;
        let started = Instant::now();
        let err =
            only_error(collect(provider(&cfg).stream(user("hi"), CancellationToken::new())).await);
        assert!(matches!(err, LlmError::Timeout { secs: 1 }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(mock.request_count(), 1, "timeouts are not retried");
    }

    #[tokio::test]
    async fn silence_mid_stream_times_out() {
        let reply = MockReply::tokens(["a", "b", "c"]);
        let mock = MockLlm::start(MockBehaviour::HangAfter {
            reply,
            after_tokens: 1,
        })
        .await
        .unwrap();
        let mut cfg = config(&mock.base_url());
        cfg.timeout_secs = 1;
        let items = collect(provider(&cfg).stream(user("hi"), CancellationToken::new())).await;
        assert_eq!(text_of(&items), "a");
        assert!(matches!(
            items.last(),
            Some(Err(LlmError::Timeout { secs: 1 }))
        ));
    }

    #[tokio::test]
    async fn cancellation_stops_promptly() {
        let reply = MockReply::text(&"word ".repeat(200)).with_rate(20.0);
        let mock = MockLlm::start(MockBehaviour::Reply(reply)).await.unwrap();
        let p = provider(&config(&mock.base_url()));
        let cancel = CancellationToken::new();
        let mut rx = p.stream(user("hi"), cancel.clone());
        // Wait for output to start, then cancel.
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(
            matches!(first, Ok(Some(Ok(LlmEvent::TextDelta(_))))),
            "{first:?}"
        );
        let cancelled_at = Instant::now();
        cancel.cancel();
        let rest = collect(rx).await;
        assert!(cancelled_at.elapsed() < Duration::from_millis(500));
        assert_eq!(last_finish(&rest), Some(FinishReason::Cancelled));
        assert!(
            rest.len() < 10,
            "kept streaming after cancel: {}",
            rest.len()
        );
    }

    #[tokio::test]
    async fn cancellation_during_a_hang_stops_promptly() {
        let mock = MockLlm::start(MockBehaviour::HangBeforeFirstByte)
            .await
            .unwrap();
        let p = provider(&config(&mock.base_url()));
        let cancel = CancellationToken::new();
        let rx = p.stream(user("hi"), cancel.clone());
        // Poll until the request reached the server, then cancel.
        let deadline = Instant::now() + Duration::from_secs(10);
        while mock.request_count() == 0 {
            assert!(Instant::now() < deadline, "request never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cancelled_at = Instant::now();
        cancel.cancel();
        let items = collect(rx).await;
        assert!(cancelled_at.elapsed() < Duration::from_millis(500));
        assert_eq!(items.len(), 1);
        assert_eq!(last_finish(&items), Some(FinishReason::Cancelled));
    }

    #[tokio::test]
    async fn connection_refused_maps_to_connect() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}/v1");
        let mut cfg = config(&base);
        cfg.retries = 1;
        let err =
            only_error(collect(provider(&cfg).stream(user("hi"), CancellationToken::new())).await);
        match &err {
            LlmError::Connect { url, reason } => {
                assert_eq!(url, &base);
                assert!(reason.to_lowercase().contains("refused"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_body()
                .hint
                .unwrap_or_default()
                .contains("llm.base_url")
        );
    }

    #[tokio::test]
    async fn a_line_without_end_fails_once_it_passes_the_limit() {
        let mock = MockLlm::start(MockBehaviour::LongLine {
            bytes: 8 * MAX_LINE_BYTES,
        })
        .await
        .unwrap();
        let err = only_error(
            collect(
                provider(&config(&mock.base_url())).stream(user("hi"), CancellationToken::new()),
            )
            .await,
        );
        assert!(matches!(err, LlmError::LineTooLong { .. }), "{err:?}");
        assert!(
            err.to_body()
                .hint
                .unwrap_or_default()
                .contains("llm.base_url")
        );
        assert_eq!(mock.request_count(), 1, "not retried");
    }

    #[tokio::test]
    async fn echo_shows_the_prompt_reached_the_server() {
        let mock = MockLlm::start(MockBehaviour::echo_last_user())
            .await
            .unwrap();
        let p = provider(&config(&mock.base_url()));
        let items = collect(p.stream(user("the red fox"), CancellationToken::new())).await;
        assert_eq!(text_of(&items), "You said: the red fox");
    }

    #[tokio::test]
    async fn scripted_turns_answer_in_order_over_one_pooled_client() {
        let mock = MockLlm::start(MockBehaviour::Script(vec![
            MockBehaviour::reply("first"),
            MockBehaviour::reply("second"),
        ]))
        .await
        .unwrap();
        let p = provider(&config(&mock.base_url()));
        let a = collect(p.stream(user("1"), CancellationToken::new())).await;
        let b = collect(p.stream(user("2"), CancellationToken::new())).await;
        assert_eq!(
            (text_of(&a), text_of(&b)),
            ("first".into(), "second".into())
        );
    }

    #[test]
    fn model_name_is_required() {
        let cfg = LlmConfig {
            model: None,
            ..LlmConfig::default()
        };
        let err = OpenAiProvider::new(&cfg).unwrap_err();
        assert!(err.to_string().contains("llm.model"), "{err}");
    }

    #[test]
    fn info_and_state() {
        let p = OpenAiProvider::new(&config("http://127.0.0.1:9/v1/")).unwrap();
        assert_eq!(p.info().backend, "openai_compatible");
        assert_eq!(p.info().model, "test-model");
        assert_eq!(p.load_state(), ModelLoad::Ready);
        assert_eq!(
            p.inner.core.endpoint,
            "http://127.0.0.1:9/v1/chat/completions"
        );
    }
}
