use std::time::{Duration, Instant};

use serde_json::json;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply, MockToolCall};

use super::*;
use crate::config::ProviderKind;
use crate::llm::sse::SseParser;
use crate::llm::test_util::{Item, calls_of, collect, last_error, last_finish, text_of};
use crate::llm::{ChatMessage, FinishReason, LlmEvent, Role, ToolCall, ToolSpec};

const SECRET: &str = "AIza-test-SECRET-0123456789";
const KEY_VAR: &str = "VTUBER_TEST_GEMINI_KEY";

fn test_key(name: &str) -> Option<String> {
    (name == KEY_VAR).then(|| SECRET.to_owned())
}

fn config(base_url: &str) -> LlmConfig {
    LlmConfig {
        provider: ProviderKind::Gemini,
        base_url: base_url.to_owned(),
        model: Some("gemini-test".into()),
        api_key_env: Some(KEY_VAR.into()),
        timeout_secs: 5,
        retries: 2,
        ..LlmConfig::default()
    }
}

fn provider(cfg: &LlmConfig) -> GeminiProvider {
    GeminiProvider::new(cfg)
        .expect("valid config")
        .with_key_lookup(test_key)
}

fn user(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new(Role::User, text)],
        ..ChatRequest::default()
    }
}

/// Feeds `sse` to the state machine in pieces of `piece` bytes.
async fn parse_in_pieces(sse: &str, piece: usize) -> Vec<Item> {
    let (out, rx) = Emitter::for_test();
    let mut parser = SseParser::default();
    let mut state = StreamState::default();
    let mut result = Ok(());
    let mut datas = Vec::new();
    for chunk in sse.as_bytes().chunks(piece) {
        datas.extend(parser.push(chunk).unwrap());
    }
    datas.extend(parser.finish().unwrap());
    for data in datas {
        if let Err(e) = state.on_data(&data, &out).await {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = state.finish(&out).await;
    }
    if let Err(AttemptError::Failed { error, .. }) = result {
        let _ = out
            .send(LlmEvent::TextDelta(format!("ERROR: {error}")))
            .await;
    }
    drop(out);
    collect(rx).await
}

const STREAM: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Let me \"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-test\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"think…\", \"thought\": true}, {\"text\": \"check ☂\"}],\"role\": \"model\"},\"index\": 0}]}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"weather\",\"args\": {\"city\": \"Zürich\"}}}, {\"functionCall\": {\"id\": \"fc_2\", \"name\": \"clock\"}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 31,\"candidatesTokenCount\": 9,\"totalTokenCount\": 40}}\r\n\r\n",
);

#[tokio::test]
async fn stream_of_text_and_calls_survives_any_chunking() {
    for piece in [1, 2, 5, 13, 4096] {
        let items = parse_in_pieces(STREAM, piece).await;
        assert_eq!(text_of(&items), "Let me check ☂", "piece {piece}");
        let calls = calls_of(&items);
        assert_eq!(calls.len(), 2);
        assert!(calls[0].0.starts_with("gemini_call_"), "{calls:?}");
        assert_eq!(calls[0].1, "weather");
        assert_eq!(calls[0].2, r#"{"city":"Zürich"}"#);
        assert_eq!(calls[1], ("fc_2".into(), "clock".into(), "{}".into()));
        assert!(items.iter().any(|i| matches!(
            i,
            Ok(LlmEvent::Usage(vtuber_shared::Usage {
                prompt_tokens: 31,
                completion_tokens: 9
            }))
        )));
        assert_eq!(last_finish(&items), Some(FinishReason::ToolCalls));
    }
}

#[tokio::test]
async fn an_error_in_the_stream_ends_it() {
    let sse = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}]}}]}\n\n",
        "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n",
    );
    let items = parse_in_pieces(sse, 7).await;
    assert_eq!(
        text_of(&items),
        "HiERROR: the LLM server failed with HTTP 503: The model is overloaded."
    );
    assert_eq!(last_finish(&items), None);
}

#[tokio::test]
async fn a_blocked_prompt_is_an_error() {
    let sse = "data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}\n\n";
    let items = parse_in_pieces(sse, 4096).await;
    assert!(text_of(&items).contains("SAFETY"), "{items:?}");
}

#[tokio::test]
async fn streams_text_with_the_documented_request() {
    let mock = MockLlm::start(MockBehaviour::reply("Hello from Gemini"))
        .await
        .unwrap();
    let mut cfg = config(&mock.root_url());
    cfg.temperature = Some(0.5);
    let p = provider(&cfg);
    let mut request = user("hi");
    request
        .messages
        .insert(0, ChatMessage::new(Role::System, "You are Mira."));
    let items = collect(p.stream(request, CancellationToken::new())).await;
    assert_eq!(text_of(&items), "Hello from Gemini");
    assert_eq!(last_finish(&items), Some(FinishReason::Stop));
    assert!(items.iter().any(|i| matches!(i, Ok(LlmEvent::Usage(_)))));
    let req = &mock.requests()[0];
    assert_eq!(req.path, "/v1beta/models/gemini-test:streamGenerateContent");
    assert_eq!(req.header("x-goog-api-key"), Some(SECRET));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.body["contents"][0]["role"], "user");
    assert_eq!(req.body["contents"][0]["parts"][0]["text"], "hi");
    assert_eq!(
        req.body["systemInstruction"]["parts"][0]["text"],
        "You are Mira."
    );
    assert_eq!(req.body["generationConfig"]["maxOutputTokens"], 512);
    assert_eq!(req.body["generationConfig"]["temperature"], 0.5);
}

#[tokio::test]
async fn tool_round_trip_in_gemini_format() {
    let calls = vec![MockToolCall::new("ignored", "lookup", r#"{"q":"x"}"#)];
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::Reply(MockReply::tool_calls(calls)),
        MockBehaviour::reply("Found it."),
    ]))
    .await
    .unwrap();
    let p = provider(&config(&mock.root_url()));
    let mut request = user("look it up");
    request.tools = vec![ToolSpec {
        name: "lookup".into(),
        description: "Looks up".into(),
        parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
    }];
    let items = collect(p.stream(request.clone(), CancellationToken::new())).await;
    assert_eq!(last_finish(&items), Some(FinishReason::ToolCalls));
    let got = calls_of(&items);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].1.as_str(), got[0].2.as_str()),
        ("lookup", r#"{"q":"x"}"#)
    );

    let mut assistant = ChatMessage::new(Role::Assistant, "");
    assistant.tool_calls = vec![ToolCall {
        id: got[0].0.clone(),
        name: got[0].1.clone(),
        arguments: got[0].2.clone(),
    }];
    let mut result = ChatMessage::new(Role::Tool, "42");
    result.tool_call_id = Some(got[0].0.clone());
    request.messages.push(assistant);
    request.messages.push(result);
    let items = collect(p.stream(request, CancellationToken::new())).await;
    assert_eq!(text_of(&items), "Found it.");

    let body = &mock.requests()[1].body;
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["name"],
        "lookup"
    );
    let contents = body["contents"].as_array().unwrap();
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(contents[1]["parts"][0]["functionCall"]["name"], "lookup");
    assert_eq!(contents[1]["parts"][0]["functionCall"]["args"]["q"], "x");
    assert_eq!(contents[2]["role"], "user");
    let response = &contents[2]["parts"][0]["functionResponse"];
    assert_eq!(response["name"], "lookup");
    assert_eq!(response["response"]["result"], "42");
}

/// Whether an error is the expected mapping.
type Check = fn(&LlmError) -> bool;

#[tokio::test]
async fn maps_http_errors_with_hints() {
    let cases: [(u16, &str, Check, &str); 5] = [
        (
            400,
            "API key not valid. Please pass a valid API key.",
            |e| matches!(e, LlmError::Unauthorized { key_env: Some(v) } if v == KEY_VAR),
            KEY_VAR,
        ),
        (
            403,
            "Permission denied",
            |e| matches!(e, LlmError::Unauthorized { .. }),
            KEY_VAR,
        ),
        (
            404,
            "models/gemini-nope is not found for API version v1beta",
            |e| matches!(e, LlmError::NotFound { model, .. } if model == "gemini-test"),
            "gemini-2.5-flash",
        ),
        (
            400,
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            |e| matches!(e, LlmError::PromptTooLong { .. }),
            "history.token_budget",
        ),
        (
            503,
            "The model is overloaded. Please try again later.",
            |e| matches!(e, LlmError::Server { status: 503, .. }),
            "overloaded",
        ),
    ];
    for (status, message, check, hint_part) in cases {
        let mock = MockLlm::start(MockBehaviour::Status {
            status,
            message: message.into(),
        })
        .await
        .unwrap();
        let mut cfg = config(&mock.root_url());
        cfg.retries = 0;
        let items = collect(provider(&cfg).stream(user("hi"), CancellationToken::new())).await;
        let err = last_error(&items);
        assert!(check(err), "HTTP {status} mapped to {err:?}");
        let hint = err.to_body().hint.unwrap_or_default();
        assert!(hint.contains(hint_part), "hint for {status}: {hint}");
    }
}

#[tokio::test]
async fn retries_429_after_the_servers_retry_after() {
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::RetryAfter {
            status: 429,
            secs: 1,
        },
        MockBehaviour::reply("ok now"),
    ]))
    .await
    .unwrap();
    let p = provider(&config(&mock.root_url()));
    let started = Instant::now();
    let items = collect(p.stream(user("hi"), CancellationToken::new())).await;
    assert_eq!(text_of(&items), "ok now");
    assert_eq!(mock.request_count(), 2);
    assert!(started.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn cancellation_stops_promptly() {
    let reply = MockReply::text(&"word ".repeat(200)).with_rate(20.0);
    let mock = MockLlm::start(MockBehaviour::Reply(reply)).await.unwrap();
    let p = provider(&config(&mock.root_url()));
    let cancel = CancellationToken::new();
    let mut rx = p.stream(user("hi"), cancel.clone());
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
}

#[test]
fn default_base_url_and_model_prefix() {
    let cfg = LlmConfig {
        provider: ProviderKind::Gemini,
        model: Some("models/gemini-2.5-flash".into()),
        ..LlmConfig::default()
    };
    let p = GeminiProvider::new(&cfg).unwrap();
    assert_eq!(
        p.inner.core.endpoint,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(p.info().backend, "gemini");
}
