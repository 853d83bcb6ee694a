//! Gemini's `generateContent` JSON: the request body (`contents` of `user`/`model`
//! turns made of parts, `systemInstruction`, `functionDeclarations`,
//! `generationConfig`) and the streamed `GenerateContentResponse`s, as serde types.
//! No I/O.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::llm::{ChatMessage, ChatRequest, FinishReason, Role, ToolSpec, answered_call_name};

/// The `streamGenerateContent` body.
pub(super) fn request_body(
    request: &ChatRequest,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
) -> Value {
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents(&request.messages)));
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.trim().is_empty())
        .map(|m| m.content.as_str())
        .collect();
    if !system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    if !request.tools.is_empty() {
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations(&request.tools)}]),
        );
    }
    let mut generation = Map::new();
    if let Some(t) = request.temperature.or(temperature) {
        generation.insert("temperature".into(), json!(t));
    }
    if let Some(n) = request.max_tokens.or(max_tokens) {
        generation.insert("maxOutputTokens".into(), json!(n));
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Value::Object(body)
}

fn declarations(specs: &[ToolSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            })
        })
        .collect()
}

/// A JSON object for a call's arguments or a tool's result: the text itself when it is
/// a JSON object, else `{"result": text}` (the API wants an object).
fn as_object(text: &str, key: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ if key.is_empty() => json!({}),
        _ => json!({ key: text }),
    }
}

/// The parts of message `at`. Every kind of content a message can hold is converted
/// here (text, images, function calls, function responses).
fn parts(history: &[ChatMessage], at: usize) -> (&'static str, Vec<Value>) {
    let m = &history[at];
    let mut parts = Vec::new();
    if m.role == Role::Tool {
        let id = m.tool_call_id.as_deref().unwrap_or_default();
        parts.push(json!({"functionResponse": {
            "name": answered_call_name(&history[..at], id),
            "response": as_object(&m.content, "result"),
        }}));
        return ("user", parts);
    }
    if !m.content.trim().is_empty() {
        parts.push(json!({"text": m.content}));
    }
    if m.role == Role::User {
        for image in &m.images {
            parts
                .push(json!({"inlineData": {"mimeType": image.mime_type, "data": &*image.base64}}));
        }
    }
    if m.role == Role::Assistant {
        for call in &m.tool_calls {
            parts.push(json!({"functionCall": {
                "name": call.name,
                "args": as_object(&call.arguments, ""),
            }}));
        }
        ("model", parts)
    } else {
        ("user", parts)
    }
}

/// The conversation without system messages; consecutive turns of one role are merged
/// (the responses to parallel calls must arrive in one turn).
fn contents(history: &[ChatMessage]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (at, m) in history.iter().enumerate() {
        if m.role == Role::System {
            continue;
        }
        let (role, parts) = parts(history, at);
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => out.push((role, parts)),
        }
    }
    out.into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect()
}

pub(super) fn map_finish(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        _ => FinishReason::Other,
    }
}

// ----- the response stream -----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResponseJson {
    #[serde(default)]
    pub candidates: Vec<CandidateJson>,
    pub usage_metadata: Option<UsageJson>,
    pub prompt_feedback: Option<FeedbackJson>,
    pub error: Option<ErrorJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CandidateJson {
    pub content: Option<ContentJson>,
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ContentJson {
    #[serde(default)]
    pub parts: Vec<PartJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PartJson {
    pub text: Option<String>,
    /// A thought summary, not part of the reply.
    #[serde(default)]
    pub thought: bool,
    pub function_call: Option<FunctionCallJson>,
}

#[derive(Deserialize)]
pub(super) struct FunctionCallJson {
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageJson {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FeedbackJson {
    pub block_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ErrorJson {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCall;

    fn history() -> Vec<ChatMessage> {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.tool_calls = vec![
            ToolCall {
                id: "call_1".into(),
                name: "weather".into(),
                arguments: r#"{"city":"Oslo"}"#.into(),
            },
            ToolCall {
                id: "call_2".into(),
                name: "clock".into(),
                arguments: "{}".into(),
            },
        ];
        let mut r1 = ChatMessage::new(Role::Tool, "rainy");
        r1.tool_call_id = Some("call_1".into());
        let mut r2 = ChatMessage::new(Role::Tool, r#"{"time":"12:00"}"#);
        r2.tool_call_id = Some("call_2".into());
        vec![
            ChatMessage::new(Role::System, "You are Mira."),
            ChatMessage::new(Role::User, "weather and time?"),
            assistant,
            r1,
            r2,
        ]
    }

    #[test]
    fn system_tools_and_generation_config() {
        let request = ChatRequest {
            messages: history(),
            tools: vec![ToolSpec {
                name: "weather".into(),
                description: "Weather".into(),
                parameters: json!({"type": "object"}),
            }],
            ..ChatRequest::default()
        };
        let body = request_body(&request, Some(0.3), Some(200));
        assert_eq!(
            body["systemInstruction"]["parts"][0]["text"],
            "You are Mira."
        );
        assert_eq!(
            body["tools"][0]["functionDeclarations"][0]["name"],
            "weather"
        );
        assert_eq!(
            body["tools"][0]["functionDeclarations"][0]["parameters"]["type"],
            "object"
        );
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 200);
        assert!((body["generationConfig"]["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    }

    #[test]
    fn calls_and_responses_map_to_parts_and_merge() {
        let request = ChatRequest {
            messages: history(),
            ..ChatRequest::default()
        };
        let body = request_body(&request, None, None);
        assert!(body.get("generationConfig").is_none());
        let contents = body["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3, "{contents:#?}");
        assert_eq!(contents[0]["role"], "user");
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(contents[1]["parts"][0]["functionCall"]["name"], "weather");
        assert_eq!(
            contents[1]["parts"][0]["functionCall"]["args"]["city"],
            "Oslo"
        );
        assert_eq!(contents[2]["role"], "user");
        let r = &contents[2]["parts"];
        assert_eq!(r[0]["functionResponse"]["name"], "weather");
        assert_eq!(r[0]["functionResponse"]["response"]["result"], "rainy");
        assert_eq!(r[1]["functionResponse"]["name"], "clock");
        assert_eq!(r[1]["functionResponse"]["response"]["time"], "12:00");
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(map_finish("STOP"), FinishReason::Stop);
        assert_eq!(map_finish("MAX_TOKENS"), FinishReason::Length);
        assert_eq!(map_finish("SAFETY"), FinishReason::Other);
    }

    #[test]
    fn images_become_inline_data_parts() {
        let request = crate::llm::test_util::image_request(false);
        let body = request_body(&request, None, None);
        let parts = &body["contents"][0]["parts"];
        assert_eq!(parts[0]["text"], "what is this?");
        assert_eq!(parts[1]["inlineData"]["mimeType"], "image/png");
        assert_eq!(parts[1]["inlineData"]["data"], "iVBORw0KGgo=");
    }
}
