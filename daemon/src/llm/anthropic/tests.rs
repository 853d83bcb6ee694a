use std::time::{Duration, Instant};

use serde_json::json;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply, MockToolCall};

use super::stream::{Flow, StreamState};
use super::*;
use crate::config::ProviderKind;
use crate::llm::sse::SseParser;
use crate::llm::test_util::{Item, calls_of, collect, last_error, last_finish, text_of};
use crate::llm::{ChatMessage, FinishReason, LlmEvent, Role, ToolCall, ToolSpec};

const SECRET: &str = "sk-ant-test-SECRET-0123456789";
const KEY_VAR: &str = "VTUBER_TEST_ANTHROPIC_KEY";

fn test_key(name: &str) -> Option<String> {
    (name == KEY_VAR).then(|| SECRET.to_owned())
}

fn config(base_url: &str) -> LlmConfig {
    LlmConfig {
        provider: ProviderKind::Anthropic,
        base_url: base_url.to_owned(),
        model: Some("claude-test".into()),
        api_key_env: Some(KEY_VAR.into()),
        timeout_secs: 5,
        retries: 2,
        ..LlmConfig::default()
    }
}

fn provider(cfg: &LlmConfig) -> AnthropicProvider {
    AnthropicProvider::new(cfg)
        .expect("valid config")
        .with_key_lookup(test_key)
}

fn user(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new(Role::User, text)],
        ..ChatRequest::default()
    }
}

// ----- the stream, event by event -----

/// Feeds `sse` to the state machine in pieces of `piece` bytes, as the provider reads
/// a response.
async fn parse_in_pieces(sse: &str, piece: usize) -> Vec<Item> {
    let (out, rx) = Emitter::for_test();
    let mut parser = SseParser::default();
    let mut state = StreamState::default();
    let mut result = Ok(());
    'outer: for chunk in sse.as_bytes().chunks(piece) {
        for data in parser.push(chunk).unwrap() {
            match state.on_data(&data, &out).await {
                Ok(Flow::Done) => {
                    result = state.finish(&out).await;
                    break 'outer;
                }
                Ok(Flow::More) => {}
                Err(e) => {
                    result = Err(e);
                    break 'outer;
                }
            }
        }
    }
    if let Err(AttemptError::Failed { error, .. }) = result {
        let _ = out
            .send(LlmEvent::TextDelta(format!("ERROR: {error}")))
            .await;
    }
    drop(out);
    collect(rx).await
}

const TOOL_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test\",\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, \"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"checking ☂\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Zü\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"rich\\\"}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"now\",\"input\":{}}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

#[tokio::test]
async fn stream_of_text_and_tool_use_survives_any_chunking() {
    for piece in [1, 2, 3, 7, 64, 4096] {
        let items = parse_in_pieces(TOOL_STREAM, piece).await;
        assert_eq!(text_of(&items), "Okay, checking ☂", "piece {piece}");
        assert_eq!(
            calls_of(&items),
            vec![
                (
                    "toolu_01".into(),
                    "get_weather".into(),
                    r#"{"city": "Zürich"}"#.into()
                ),
                ("toolu_02".into(), "now".into(), "{}".into()),
            ],
            "piece {piece}"
        );
        assert!(
            items.iter().any(|i| matches!(
                i,
                Ok(LlmEvent::Usage(vtuber_shared::Usage {
                    prompt_tokens: 125,
                    completion_tokens: 42,
                }))
            )),
            "{items:?}"
        );
        assert_eq!(last_finish(&items), Some(FinishReason::ToolCalls));
    }
}

#[tokio::test]
async fn a_mid_stream_error_event_ends_the_stream() {
    let sse = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
        "event: error\n",
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    let items = parse_in_pieces(sse, 5).await;
    assert_eq!(
        text_of(&items),
        "HelERROR: the LLM server failed with HTTP 529: Overloaded"
    );
    assert_eq!(last_finish(&items), None);
}

#[tokio::test]
async fn unknown_events_and_thinking_blocks_are_ignored() {
    let sse = concat!(
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
        "data: {\"type\":\"some_future_event\",\"x\":1}\n\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":1}}\n\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    let items = parse_in_pieces(sse, 11).await;
    assert_eq!(text_of(&items), "hi");
    assert_eq!(last_finish(&items), Some(FinishReason::Stop));
}

// ----- against the mock server -----

#[tokio::test]
async fn streams_text_with_the_documented_headers() {
    let mock = MockLlm::start(MockBehaviour::reply("Hello from Claude"))
        .await
        .unwrap();
    let p = provider(&config(&mock.root_url()));
    let items = collect(p.stream(user("hi"), CancellationToken::new())).await;
    assert_eq!(text_of(&items), "Hello from Claude");
    assert_eq!(last_finish(&items), Some(FinishReason::Stop));
    assert!(items.iter().any(|i| matches!(i, Ok(LlmEvent::Usage(_)))));
    let req = &mock.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(SECRET));
    assert_eq!(req.header("anthropic-version"), Some(API_VERSION));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.body["model"], "claude-test");
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["max_tokens"], 512);
}

#[tokio::test]
async fn tool_round_trip_in_anthropic_format() {
    let calls = vec![MockToolCall::new(
        "toolu_9",
        "lookup",
        r#"{"q":"weather in Zürich"}"#,
    )];
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::Reply(MockReply::text("Let me see.").with_tool_calls(calls.clone())),
        MockBehaviour::reply("Rainy."),
    ]))
    .await
    .unwrap();
    let p = provider(&config(&mock.root_url()));
    let tools = vec![ToolSpec {
        name: "lookup".into(),
        description: "Looks things up".into(),
        parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
    }];
    let mut request = user("weather?");
    request.tools = tools.clone();
    request
        .messages
        .insert(0, ChatMessage::new(Role::System, "You are Mira."));
    let items = collect(p.stream(request.clone(), CancellationToken::new())).await;
    assert_eq!(text_of(&items), "Let me see.");
    assert_eq!(last_finish(&items), Some(FinishReason::ToolCalls));
    let got = calls_of(&items);
    assert_eq!(
        got,
        vec![(
            "toolu_9".into(),
            "lookup".into(),
            r#"{"q":"weather in Zürich"}"#.into()
        )]
    );

    // The second request carries the call and its result.
    let mut assistant = ChatMessage::new(Role::Assistant, "Let me see.");
    assistant.tool_calls = vec![ToolCall {
        id: got[0].0.clone(),
        name: got[0].1.clone(),
        arguments: got[0].2.clone(),
    }];
    let mut result = ChatMessage::new(Role::Tool, "rain, 12 °C");
    result.tool_call_id = Some("toolu_9".into());
    request.messages.push(assistant);
    request.messages.push(result);
    let items = collect(p.stream(request, CancellationToken::new())).await;
    assert_eq!(text_of(&items), "Rainy.");

    let body = &mock.requests()[1].body;
    assert_eq!(body["system"][0]["text"], "You are Mira.");
    assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(body["tools"][0]["cache_control"]["type"], "ephemeral");
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
    assert_eq!(msgs[1]["content"][1]["input"]["q"], "weather in Zürich");
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[2]["content"][0]["tool_use_id"], "toolu_9");
    assert_eq!(msgs[2]["content"][0]["content"], "rain, 12 °C");
}

/// Whether an error is the expected mapping.
type Check = fn(&LlmError) -> bool;

#[tokio::test]
async fn maps_http_errors_with_hints() {
    let cases: [(u16, &str, Check, &str); 6] = [
        (
            401,
            "invalid x-api-key",
            |e| matches!(e, LlmError::Unauthorized { key_env: Some(v) } if v == KEY_VAR),
            KEY_VAR,
        ),
        (
            404,
            "model: claude-nope",
            |e| matches!(e, LlmError::NotFound { model, .. } if model == "claude-test"),
            "llm.model",
        ),
        (
            400,
            "prompt is too long: 208000 tokens > 200000 maximum",
            |e| matches!(e, LlmError::PromptTooLong { message } if message.contains("208000")),
            "history.token_budget",
        ),
        (
            400,
            "max_tokens: must be positive",
            |e| matches!(e, LlmError::Server { status: 400, body } if body.contains("max_tokens")),
            "",
        ),
        (
            529,
            "Overloaded",
            |e| matches!(e, LlmError::Server { status: 529, .. }),
            "overloaded",
        ),
        (
            429,
            "slow down",
            |e| matches!(e, LlmError::RateLimited),
            "wait",
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
        assert!(!format!("{err:?}{hint}").contains(SECRET));
    }
}

#[tokio::test]
async fn retries_429_after_the_servers_retry_after() {
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::RetryAfter {
            status: 429,
            secs: 1,
        },
        MockBehaviour::Status {
            status: 529,
            message: "Overloaded".into(),
        },
        MockBehaviour::reply("finally"),
    ]))
    .await
    .unwrap();
    let p = provider(&config(&mock.root_url()));
    let started = Instant::now();
    let items = collect(p.stream(user("hi"), CancellationToken::new())).await;
    assert_eq!(text_of(&items), "finally");
    assert_eq!(mock.request_count(), 3);
    // 1 s from Retry-After, then 500 ms of backoff.
    assert!(started.elapsed() >= Duration::from_millis(1400));
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
    assert!(
        rest.len() < 10,
        "kept streaming after cancel: {}",
        rest.len()
    );
}

#[test]
fn default_base_url_and_required_model() {
    let cfg = LlmConfig {
        provider: ProviderKind::Anthropic,
        model: Some("claude-x".into()),
        ..LlmConfig::default()
    };
    let p = AnthropicProvider::new(&cfg).unwrap();
    assert_eq!(
        p.inner.core.endpoint,
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(p.info().backend, "anthropic");
    assert!(p.supports_native_tools());
    let err = AnthropicProvider::new(&LlmConfig { model: None, ..cfg }).unwrap_err();
    assert!(err.to_string().contains("anthropic"), "{err}");
}
