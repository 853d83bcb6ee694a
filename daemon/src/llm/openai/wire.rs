//! OpenAI's chat-completions JSON: the request body, the streamed chunks and the
//! non-streamed completion, as serde types. No I/O; the provider reads and writes them.

use serde::{Deserialize, Serialize};
use vtuber_shared::Usage;

use crate::llm::{ChatMessage, FinishReason, Role, ToolSpec};

pub(super) fn map_finish(reason: &str) -> FinishReason {
    match reason {
        "stop" | "end_turn" | "eos" => FinishReason::Stop,
        "length" | "max_tokens" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

// ----- request wire format -----

#[derive(Serialize)]
pub(super) struct RequestBody<'a> {
    pub model: &'a str,
    pub messages: Vec<WireMessage<'a>>,
    pub stream: bool,
    pub stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<WireTool<'a>>,
}

#[derive(Serialize)]
pub(super) struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Serialize)]
pub(super) struct WireMessage<'a> {
    pub role: &'static str,
    /// `null` for an assistant turn that only called tools, as OpenAI sends it.
    pub content: Option<WireContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
}

impl<'a> From<&'a ChatMessage> for WireMessage<'a> {
    fn from(m: &'a ChatMessage) -> Self {
        let content = if m.content.is_empty() && !m.tool_calls.is_empty() {
            None
        } else if m.role == Role::User && !m.images.is_empty() {
            let mut parts = Vec::with_capacity(m.images.len() + 1);
            if !m.content.is_empty() {
                parts.push(WirePart::Text { text: &m.content });
            }
            parts.extend(m.images.iter().map(|i| WirePart::ImageUrl {
                image_url: WireImageUrl { url: i.data_url() },
            }));
            Some(WireContent::Parts(parts))
        } else {
            Some(WireContent::Text(&m.content))
        };
        Self {
            role: role_name(m.role),
            content,
            tool_calls: m
                .tool_calls
                .iter()
                .map(|c| WireToolCall {
                    id: &c.id,
                    kind: "function",
                    function: WireFunctionCall {
                        name: &c.name,
                        arguments: &c.arguments,
                    },
                })
                .collect(),
            tool_call_id: match m.role {
                Role::Tool => m.tool_call_id.as_deref(),
                _ => None,
            },
        }
    }
}

/// A message's content: plain text, or parts when it carries pictures.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum WireContent<'a> {
    Text(&'a str),
    Parts(Vec<WirePart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WirePart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: WireImageUrl },
}

#[derive(Serialize)]
pub(super) struct WireImageUrl {
    pub url: String,
}

#[derive(Serialize)]
pub(super) struct WireToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
pub(super) struct WireFunctionCall<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

#[derive(Serialize)]
pub(super) struct WireTool<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: WireFunction<'a>,
}

#[derive(Serialize)]
pub(super) struct WireFunction<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub parameters: &'a serde_json::Value,
}

impl<'a> From<&'a ToolSpec> for WireTool<'a> {
    fn from(t: &'a ToolSpec) -> Self {
        Self {
            kind: "function",
            function: WireFunction {
                name: &t.name,
                description: &t.description,
                parameters: &t.parameters,
            },
        }
    }
}

// ----- response wire format -----

#[derive(Deserialize)]
pub(super) struct ChunkJson {
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    pub usage: Option<UsageJson>,
    pub error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct ChunkChoice {
    pub delta: Option<DeltaJson>,
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct DeltaJson {
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallDeltaJson>,
}

#[derive(Deserialize)]
pub(super) struct ToolCallDeltaJson {
    pub index: Option<usize>,
    pub id: Option<String>,
    pub function: Option<FunctionJson>,
}

#[derive(Deserialize, Default)]
pub(super) struct FunctionJson {
    pub name: Option<String>,
    pub arguments: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct UsageJson {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

impl From<UsageJson> for Usage {
    fn from(u: UsageJson) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CompletionJson {
    #[serde(default)]
    pub choices: Vec<CompletionChoice>,
    pub usage: Option<UsageJson>,
}

#[derive(Deserialize)]
pub(super) struct CompletionChoice {
    pub message: Option<CompletionMessage>,
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CompletionMessage {
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallDeltaJson>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_map() {
        assert_eq!(map_finish("stop"), FinishReason::Stop);
        assert_eq!(map_finish("length"), FinishReason::Length);
        assert_eq!(map_finish("tool_calls"), FinishReason::ToolCalls);
        assert_eq!(map_finish("content_filter"), FinishReason::Other);
    }

    #[test]
    fn a_user_message_with_images_becomes_parts() {
        let image = crate::llm::ChatImage {
            mime_type: "image/png".into(),
            base64: "iVBORw0KGgo=".into(),
        };
        let m = ChatMessage::user_with_images("what is this?", vec![image]);
        let v = serde_json::to_value(WireMessage::from(&m)).unwrap();
        assert_eq!(v["content"][0]["type"], "text");
        assert_eq!(v["content"][0]["text"], "what is this?");
        assert_eq!(v["content"][1]["type"], "image_url");
        assert_eq!(
            v["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBORw0KGgo="
        );
        let plain = ChatMessage::new(Role::User, "hi");
        let v = serde_json::to_value(WireMessage::from(&plain)).unwrap();
        assert_eq!(v["content"], "hi");
    }
}
