//! Anthropic's Messages API JSON: the request body (system prompt apart, strictly
//! alternating roles, tool calls and results as content blocks, prompt-caching marks)
//! and the streamed events, as serde types. No I/O.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::llm::{ChatMessage, ChatRequest, FinishReason, Role, ToolSpec};

/// `max_tokens` when neither the request nor `llm.max_tokens` sets one (the API
/// requires it).
pub(super) const DEFAULT_MAX_TOKENS: u32 = 1024;

/// Stands in as the first user message when the history starts with the assistant
/// (a greeting): the API wants the conversation to open with a user turn.
const OPENING_USER_TEXT: &str = "(conversation start)";

/// The `POST /v1/messages` body.
pub(super) fn request_body(
    model: &str,
    request: &ChatRequest,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(
            request
                .max_tokens
                .or(max_tokens)
                .unwrap_or(DEFAULT_MAX_TOKENS)
        ),
    );
    body.insert("stream".into(), json!(true));
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.trim().is_empty())
        .map(|m| m.content.as_str())
        .collect();
    if !system.is_empty() {
        // The persona is the same every turn: mark it for prompt caching.
        body.insert(
            "system".into(),
            json!([{
                "type": "text",
                "text": system.join("\n\n"),
                "cache_control": {"type": "ephemeral"},
            }]),
        );
    }
    body.insert("messages".into(), Value::Array(messages(&request.messages)));
    if let Some(t) = request.temperature.or(temperature) {
        body.insert("temperature".into(), json!(t));
    }
    if !request.tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools(&request.tools)));
    }
    Value::Object(body)
}

/// The tool list; the last one carries the cache mark, which caches all of them.
fn tools(specs: &[ToolSpec]) -> Vec<Value> {
    let mut tools: Vec<Value> = specs
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "input_schema": t.parameters,
            })
        })
        .collect();
    if let Some(Value::Object(last)) = tools.last_mut() {
        last.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
    tools
}

/// The content blocks of one message. Every kind of content a message can hold is
/// converted here (text, images, tool calls, tool results).
fn content_blocks(m: &ChatMessage) -> (&'static str, Vec<Value>) {
    let mut blocks = Vec::new();
    match m.role {
        Role::Tool => {
            blocks.push(json!({
                "type": "tool_result",
                "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                "content": m.content,
            }));
            return ("user", blocks);
        }
        Role::System | Role::User | Role::Assistant => {}
    }
    // Pictures first: Anthropic advises images before the text about them.
    if m.role == Role::User {
        for image in &m.images {
            blocks.push(json!({
                "type": "image",
                "source": {"type": "base64", "media_type": image.mime_type, "data": &*image.base64},
            }));
        }
    }
    if !m.content.trim().is_empty() {
        blocks.push(json!({"type": "text", "text": m.content}));
    }
    if m.role == Role::Assistant {
        for call in &m.tool_calls {
            blocks.push(json!({
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": tool_input(&call.arguments),
            }));
        }
        ("assistant", blocks)
    } else {
        ("user", blocks)
    }
}

/// A call's arguments as the JSON object the API wants (`{}` when they are empty or
/// not an object).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// The conversation without system messages, in alternating roles: consecutive
/// messages of one role (tool results, then the user's next words) are merged.
fn messages(history: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in history.iter().filter(|m| m.role != Role::System) {
        let (role, blocks) = content_blocks(m);
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    if out.first().is_some_and(|(role, _)| *role == "assistant") {
        out.insert(
            0,
            (
                "user",
                vec![json!({"type": "text", "text": OPENING_USER_TEXT})],
            ),
        );
    }
    out.into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

pub(super) fn map_stop(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

// ----- the event stream -----

/// One streamed event (its `data`; the `type` field repeats the SSE event name).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum EventJson {
    MessageStart {
        message: MessageJson,
    },
    ContentBlockStart {
        index: usize,
        content_block: BlockJson,
    },
    ContentBlockDelta {
        index: usize,
        delta: DeltaJson,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaJson,
        usage: Option<UsageJson>,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorJson,
    },
    /// Event types added later are ignored, as the API asks.
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
pub(super) struct MessageJson {
    pub usage: Option<UsageJson>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum BlockJson {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking and other blocks: not part of the reply.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum DeltaJson {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
pub(super) struct MessageDeltaJson {
    pub stop_reason: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
pub(super) struct UsageJson {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct ErrorJson {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCall;

    fn tool_turn() -> Vec<ChatMessage> {
        let mut assistant = ChatMessage::new(Role::Assistant, "Let me check.");
        assistant.tool_calls = vec![
            ToolCall {
                id: "toolu_1".into(),
                name: "weather".into(),
                arguments: r#"{"city":"Oslo"}"#.into(),
            },
            ToolCall {
                id: "toolu_2".into(),
                name: "time".into(),
                arguments: String::new(),
            },
        ];
        let mut r1 = ChatMessage::new(Role::Tool, "rainy");
        r1.tool_call_id = Some("toolu_1".into());
        let mut r2 = ChatMessage::new(Role::Tool, "12:00");
        r2.tool_call_id = Some("toolu_2".into());
        vec![
            ChatMessage::new(Role::System, "You are Mira."),
            ChatMessage::new(Role::User, "weather?"),
            assistant,
            r1,
            r2,
        ]
    }

    #[test]
    fn system_is_top_level_and_cached() {
        let request = ChatRequest {
            messages: tool_turn(),
            ..ChatRequest::default()
        };
        let body = request_body("claude-x", &request, Some(0.5), Some(300));
        assert_eq!(body["system"][0]["text"], "You are Mira.");
        assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(body["max_tokens"], 300);
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["stream"], true);
        assert!(
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["role"] != "system")
        );
    }

    #[test]
    fn max_tokens_is_always_sent() {
        let body = request_body("m", &ChatRequest::default(), None, None);
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert!(body.get("system").is_none());
        assert!(body.get("tools").is_none());
        assert!(body.get("temperature").is_none());
    }

    #[test]
    fn tool_calls_and_results_become_blocks_and_results_merge() {
        let mut history = tool_turn();
        history.push(ChatMessage::new(Role::User, "and tomorrow?"));
        let body = request_body(
            "m",
            &ChatRequest {
                messages: history,
                ..ChatRequest::default()
            },
            None,
            None,
        );
        let msgs = body["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "{msgs:#?}");
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["content"][0]["text"], "Let me check.");
        assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][1]["id"], "toolu_1");
        assert_eq!(msgs[1]["content"][1]["input"]["city"], "Oslo");
        assert_eq!(msgs[1]["content"][2]["input"], json!({}));
        // Both results and the next question in one user message, results first.
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][0]["tool_use_id"], "toolu_1");
        assert_eq!(msgs[2]["content"][0]["content"], "rainy");
        assert_eq!(msgs[2]["content"][1]["tool_use_id"], "toolu_2");
        assert_eq!(msgs[2]["content"][2]["text"], "and tomorrow?");
    }

    #[test]
    fn roles_alternate_and_open_with_the_user() {
        let history = vec![
            ChatMessage::new(Role::Assistant, "Hi, I'm Mira!"),
            ChatMessage::new(Role::User, "hello"),
            ChatMessage::new(Role::User, "are you there?"),
            ChatMessage::new(Role::Assistant, ""),
        ];
        let body = request_body(
            "m",
            &ChatRequest {
                messages: history,
                ..ChatRequest::default()
            },
            None,
            None,
        );
        let msgs = body["messages"].as_array().unwrap();
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(msgs[0]["content"][0]["text"], OPENING_USER_TEXT);
        assert_eq!(msgs[2]["content"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn tools_take_input_schema_and_the_last_is_cached() {
        let spec = |name: &str| ToolSpec {
            name: name.into(),
            description: format!("{name} tool"),
            parameters: json!({"type": "object", "properties": {}}),
        };
        let request = ChatRequest {
            messages: vec![ChatMessage::new(Role::User, "hi")],
            tools: vec![spec("a"), spec("b")],
            ..ChatRequest::default()
        };
        let body = request_body("m", &request, None, None);
        assert_eq!(body["tools"][0]["name"], "a");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        assert!(body["tools"][0].get("cache_control").is_none());
        assert_eq!(body["tools"][1]["cache_control"]["type"], "ephemeral");
    }

    #[test]
    fn stop_reasons_map() {
        assert_eq!(map_stop("end_turn"), FinishReason::Stop);
        assert_eq!(map_stop("max_tokens"), FinishReason::Length);
        assert_eq!(map_stop("tool_use"), FinishReason::ToolCalls);
        assert_eq!(map_stop("refusal"), FinishReason::Other);
    }

    #[test]
    fn images_become_base64_image_blocks_before_the_text() {
        let request = crate::llm::test_util::image_request(false);
        let body = request_body("claude-x", &request, None, None);
        let blocks = &body["messages"][0]["content"];
        assert_eq!(blocks[0]["type"], "image");
        assert_eq!(blocks[0]["source"]["type"], "base64");
        assert_eq!(blocks[0]["source"]["media_type"], "image/png");
        assert_eq!(blocks[0]["source"]["data"], "iVBORw0KGgo=");
        assert_eq!(blocks[1]["type"], "text");
        assert_eq!(blocks[1]["text"], "what is this?");
    }
}
