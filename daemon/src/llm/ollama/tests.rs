use std::time::{Duration, Instant};

use serde_json::json;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply, MockToolCall};

use super::*;
use crate::config::ProviderKind;
use crate::llm::test_util::{Item, calls_of, collect, last_error, last_finish, text_of};
use crate::llm::{ChatMessage, FinishReason, LlmEvent, Role, ToolCall, ToolSpec};

fn config(base_url: &str) -> LlmConfig {
    LlmConfig {
        provider: ProviderKind::Ollama,
        base_url: base_url.to_owned(),
        model: Some("qwen3:8b".into()),
        timeout_secs: 5,
        retries: 2,
        ..LlmConfig::default()
    }
}

fn user(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new(Role::User, text)],
        ..ChatRequest::default()
    }
}

/// Feeds NDJSON to the state machine in pieces of `piece` bytes.
async fn parse_in_pieces(ndjson: &str, piece: usize) -> Vec<Item> {
    let (out, rx) = Emitter::for_test();
    let mut lines = LineSplitter::default();
    let mut state = StreamState::default();
    let mut all = Vec::new();
    for chunk in ndjson.as_bytes().chunks(piece) {
        all.extend(lines.push(chunk).unwrap());
    }
    all.extend(lines.finish());
    let mut result = Ok(());
    for line in all {
        match state.on_line(&line, &out).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    match result {
        Ok(()) => {
            let _ = state.finish(&out).await;
        }
        Err(AttemptError::Failed { error, .. }) => {
            let _ = out
                .send(LlmEvent::TextDelta(format!("ERROR: {error}")))
                .await;
        }
        Err(AttemptError::Gone) => {}
    }
    drop(out);
    collect(rx).await
}

const STREAM: &str = concat!(
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Let me \"},\"done\":false}\n",
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"check ☂\"},\"done\":false}\n",
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"weather\",\"arguments\":{\"city\":\"Zürich\"}}}]},\"done\":false}\n",
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":100,\"prompt_eval_count\":26,\"eval_count\":12}\n",
);

#[tokio::test]
async fn stream_survives_any_chunking() {
    for piece in [1, 3, 17, 4096] {
        let items = parse_in_pieces(STREAM, piece).await;
        assert_eq!(text_of(&items), "Let me check ☂", "piece {piece}");
        let calls = calls_of(&items);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].1, "weather");
        assert_eq!(calls[0].2, r#"{"city":"Zürich"}"#);
        assert!(items.iter().any(|i| matches!(
            i,
            Ok(LlmEvent::Usage(vtuber_shared::Usage {
                prompt_tokens: 26,
                completion_tokens: 12
            }))
        )));
        assert_eq!(last_finish(&items), Some(FinishReason::ToolCalls));
    }
}

#[tokio::test]
async fn an_error_line_ends_the_stream() {
    let ndjson = "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model\"}\n";
    let items = parse_in_pieces(ndjson, 9).await;
    assert_eq!(
        text_of(&items),
        "HiERROR: inference failed: Ollama reported: an error was encountered while running the model"
    );
}

#[tokio::test]
async fn streams_text_and_a_tool_round_in_ollama_format() {
    let calls = vec![MockToolCall::new("x", "lookup", r#"{"q":"x"}"#)];
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::Reply(MockReply::text("Looking.").with_tool_calls(calls)),
        MockBehaviour::reply("Found it."),
    ]))
    .await
    .unwrap();
    // The OpenAI-compatible address of the same server works too.
    let p = OllamaProvider::new(&config(&mock.base_url())).unwrap();
    let mut request = user("look it up");
    request.tools = vec![ToolSpec {
        name: "lookup".into(),
        description: "Looks up".into(),
        parameters: json!({"type": "object"}),
    }];
    let items = collect(p.stream(request.clone(), CancellationToken::new())).await;
    assert_eq!(text_of(&items), "Looking.");
    assert_eq!(last_finish(&items), Some(FinishReason::ToolCalls));
    let got = calls_of(&items);
    assert_eq!(
        (got[0].1.as_str(), got[0].2.as_str()),
        ("lookup", r#"{"q":"x"}"#)
    );

    let mut assistant = ChatMessage::new(Role::Assistant, "Looking.");
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
    assert!(items.iter().any(|i| matches!(i, Ok(LlmEvent::Usage(_)))));

    let req = &mock.requests()[1];
    assert_eq!(req.path, "/api/chat");
    assert_eq!(req.body["options"]["num_ctx"], 4096);
    assert_eq!(req.body["options"]["num_predict"], 512);
    let msgs = req.messages();
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["arguments"]["q"], "x");
    assert_eq!(msgs[2]["role"], "tool");
    assert_eq!(msgs[2]["tool_name"], "lookup");
    assert_eq!(msgs[2]["content"], "42");
}

#[tokio::test]
async fn an_unknown_model_says_how_to_pull_it() {
    let mock = MockLlm::start(MockBehaviour::Status {
        status: 404,
        message: "model \"qwen3:8b\" not found, try pulling it first".into(),
    })
    .await
    .unwrap();
    let mut cfg = config(&mock.root_url());
    cfg.retries = 0;
    let items = collect(
        OllamaProvider::new(&cfg)
            .unwrap()
            .stream(user("hi"), CancellationToken::new()),
    )
    .await;
    let err = last_error(&items);
    assert!(matches!(err, LlmError::NotFound { .. }), "{err:?}");
    let hint = err.to_body().hint.unwrap_or_default();
    assert!(hint.contains("ollama pull qwen3:8b"), "{hint}");
}

#[tokio::test]
async fn retries_503_after_retry_after_and_cancels_promptly() {
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::RetryAfter {
            status: 503,
            secs: 1,
        },
        MockBehaviour::Reply(MockReply::text(&"word ".repeat(200)).with_rate(20.0)),
    ]))
    .await
    .unwrap();
    let p = OllamaProvider::new(&config(&mock.root_url())).unwrap();
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let mut rx = p.stream(user("hi"), cancel.clone());
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert!(
        matches!(first, Ok(Some(Ok(LlmEvent::TextDelta(_))))),
        "{first:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(mock.request_count(), 2);
    let cancelled_at = Instant::now();
    cancel.cancel();
    let rest = collect(rx).await;
    assert!(cancelled_at.elapsed() < Duration::from_millis(500));
    assert_eq!(last_finish(&rest), Some(FinishReason::Cancelled));
}

#[test]
fn default_base_url() {
    let cfg = LlmConfig {
        provider: ProviderKind::Ollama,
        model: Some("llama3.2".into()),
        ..LlmConfig::default()
    };
    let p = OllamaProvider::new(&cfg).unwrap();
    assert_eq!(p.inner.core.endpoint, "http://127.0.0.1:11434/api/chat");
    assert_eq!(p.info().backend, "ollama");
    assert_eq!(p.context_size(), 4096);
}
