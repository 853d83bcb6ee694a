//! Ollama's native `/api/chat` JSON: the request body (messages with tool calls as
//! objects, tool results named by tool, `options`) and the NDJSON lines of its stream,
//! as serde types. No I/O.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::llm::{ChatMessage, ChatRequest, FinishReason, Role, ToolSpec, answered_call_name};

/// The `POST /api/chat` body.
pub(super) fn request_body(
    model: &str,
    request: &ChatRequest,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    context_size: u32,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages(&request.messages)));
    body.insert("stream".into(), json!(true));
    if !request.tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools(&request.tools)));
    }
    let mut options = Map::new();
    options.insert("num_ctx".into(), json!(context_size));
    if let Some(t) = request.temperature.or(temperature) {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(n) = request.max_tokens.or(max_tokens) {
        options.insert("num_predict".into(), json!(n));
    }
    body.insert("options".into(), Value::Object(options));
    Value::Object(body)
}

fn tools(specs: &[ToolSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            }})
        })
        .collect()
}

/// Message `at` as Ollama takes it. Every kind of content a message can hold is
/// converted here (text, images, tool calls, tool results).
fn message(history: &[ChatMessage], at: usize) -> Value {
    let m = &history[at];
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = json!({"role": role, "content": m.content});
    if m.role == Role::Assistant && !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let arguments = match serde_json::from_str::<Value>(&c.arguments) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({}),
                };
                json!({"function": {"name": c.name, "arguments": arguments}})
            })
            .collect();
        out["tool_calls"] = Value::Array(calls);
    }
    if m.role == Role::Tool {
        let id = m.tool_call_id.as_deref().unwrap_or_default();
        out["tool_name"] = json!(answered_call_name(&history[..at], id));
    }
    if m.role == Role::User && !m.images.is_empty() {
        let images: Vec<Value> = m.images.iter().map(|i| json!(&*i.base64)).collect();
        out["images"] = Value::Array(images);
    }
    out
}

fn messages(history: &[ChatMessage]) -> Vec<Value> {
    (0..history.len()).map(|at| message(history, at)).collect()
}

pub(super) fn map_done(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        _ => FinishReason::Other,
    }
}

// ----- the NDJSON stream -----

#[derive(Deserialize)]
pub(super) struct LineJson {
    pub message: Option<MessageJson>,
    #[serde(default)]
    pub done: bool,
    pub done_reason: Option<String>,
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct MessageJson {
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallJson>,
}

#[derive(Deserialize)]
pub(super) struct ToolCallJson {
    pub id: Option<String>,
    pub function: FunctionJson,
}

#[derive(Deserialize)]
pub(super) struct FunctionJson {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCall;

    #[test]
    fn tool_turns_and_options() {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "weather".into(),
            arguments: r#"{"city":"Oslo"}"#.into(),
        }];
        let mut result = ChatMessage::new(Role::Tool, "rainy");
        result.tool_call_id = Some("call_1".into());
        let request = ChatRequest {
            messages: vec![
                ChatMessage::new(Role::System, "You are Mira."),
                ChatMessage::new(Role::User, "weather?"),
                assistant,
                result,
            ],
            tools: vec![ToolSpec {
                name: "weather".into(),
                description: "Weather".into(),
                parameters: json!({"type": "object"}),
            }],
            ..ChatRequest::default()
        };
        let body = request_body("qwen3:8b", &request, Some(0.2), Some(100), 8192);
        assert_eq!(body["model"], "qwen3:8b");
        assert_eq!(body["stream"], true);
        assert_eq!(body["options"]["num_ctx"], 8192);
        assert_eq!(body["options"]["num_predict"], 100);
        assert_eq!(body["tools"][0]["function"]["name"], "weather");
        let msgs = body["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["role"], "system");
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"]["city"],
            "Oslo"
        );
        assert_eq!(msgs[3]["role"], "tool");
        assert_eq!(msgs[3]["tool_name"], "weather");
        assert_eq!(msgs[3]["content"], "rainy");
    }

    #[test]
    fn done_reasons_map() {
        assert_eq!(map_done("stop"), FinishReason::Stop);
        assert_eq!(map_done("length"), FinishReason::Length);
        assert_eq!(map_done("unload"), FinishReason::Other);
    }

    #[test]
    fn images_go_in_the_message_images_list() {
        let request = crate::llm::test_util::image_request(true);
        let body = request_body("llava", &request, None, None, 4096);
        assert_eq!(body["messages"][1]["content"], "what is this?");
        assert_eq!(body["messages"][1]["images"][0], "iVBORw0KGgo=");
        assert!(body["messages"][0].get("images").is_none());
    }
}
