//! The native wire formats [`crate::mock_llm::MockLlm`] also speaks, as each vendor
//! documents them: Anthropic's Messages API (`POST /v1/messages`, named SSE events),
//! Gemini's `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` (SSE of
//! `GenerateContentResponse`s) and Ollama's `POST /api/chat` (NDJSON). One encoder per
//! format turns a reply into the pieces of its stream; the server paces, cuts and
//! records them the same way for every format.

use serde_json::{Value, json};

/// One tool call as an encoder sees it.
pub struct CallPieces<'a> {
    pub index: usize,
    pub id: &'a str,
    pub name: &'a str,
    /// The whole arguments JSON, and the same split into streamed pieces.
    pub arguments: &'a str,
    pub pieces: Vec<String>,
}

/// Which API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
}

impl WireFormat {
    /// The format of a `POST` to `path`, if it is a chat endpoint.
    pub fn from_path(path: &str) -> Option<Self> {
        if path.ends_with("/chat/completions") {
            Some(Self::OpenAi)
        } else if path == "/v1/messages" {
            Some(Self::Anthropic)
        } else if path.starts_with("/v1beta/models/") && path.ends_with(":streamGenerateContent") {
            Some(Self::Gemini)
        } else if path == "/api/chat" {
            Some(Self::Ollama)
        } else {
            None
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ollama => "application/x-ndjson",
            Self::OpenAi | Self::Anthropic | Self::Gemini => "text/event-stream",
        }
    }

    /// An error body in this API's shape.
    pub fn error_body(self, status: u16, message: &str) -> Value {
        match self {
            Self::OpenAi => json!({
                "error": {"message": message, "type": "mock_error", "code": status},
            }),
            Self::Anthropic => {
                let kind = match status {
                    400 => "invalid_request_error",
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    529 => "overloaded_error",
                    _ => "api_error",
                };
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            Self::Gemini => {
                let kind = match status {
                    400 => "INVALID_ARGUMENT",
                    401 => "UNAUTHENTICATED",
                    403 => "PERMISSION_DENIED",
                    404 => "NOT_FOUND",
                    429 => "RESOURCE_EXHAUSTED",
                    503 => "UNAVAILABLE",
                    _ => "INTERNAL",
                };
                json!({"error": {"code": status, "message": message, "status": kind}})
            }
            Self::Ollama => json!({ "error": message }),
        }
    }

    /// Text of the last user message of a request in this format.
    pub fn last_user_text(self, body: &Value) -> String {
        let (list, role, content) = match self {
            Self::OpenAi | Self::Ollama => ("messages", "user", "content"),
            Self::Anthropic => ("messages", "user", "content"),
            Self::Gemini => ("contents", "user", "parts"),
        };
        let Some(message) = body[list]
            .as_array()
            .and_then(|msgs| msgs.iter().rev().find(|m| m["role"] == role))
        else {
            return String::new();
        };
        match &message[content] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        }
    }
}

/// Turns one reply into stream pieces (each a complete SSE event or NDJSON line).
pub(crate) trait Encoder: Send {
    fn head(&mut self) -> Vec<String>;
    fn text(&mut self, token: &str) -> Vec<String>;
    fn tool_call(&mut self, call: CallPieces<'_>) -> Vec<String>;
    /// The end, after `output_tokens` tokens; `finish_reason` in OpenAI's words.
    fn tail(&mut self, output_tokens: u64, finish_reason: &str) -> Vec<String>;
}

/// The encoder for a native format (OpenAI's lives with the mock server).
pub(crate) fn encoder(
    format: WireFormat,
    model: &str,
    prompt_tokens: u64,
) -> Option<Box<dyn Encoder>> {
    match format {
        WireFormat::OpenAi => None,
        WireFormat::Anthropic => Some(Box::new(Anthropic {
            model: model.to_owned(),
            prompt_tokens,
            block: 0,
            text_open: false,
        })),
        WireFormat::Gemini => Some(Box::new(Gemini {
            model: model.to_owned(),
            prompt_tokens,
        })),
        WireFormat::Ollama => Some(Box::new(Ollama {
            model: model.to_owned(),
            prompt_tokens,
        })),
    }
}

fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

// ----- Anthropic -----

struct Anthropic {
    model: String,
    prompt_tokens: u64,
    /// Index of the next content block.
    block: usize,
    text_open: bool,
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl Anthropic {
    fn close_text(&mut self) -> Vec<String> {
        if !self.text_open {
            return Vec::new();
        }
        self.text_open = false;
        self.block += 1;
        vec![event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.block - 1}),
        )]
    }
}

impl Encoder for Anthropic {
    fn head(&mut self) -> Vec<String> {
        vec![
            event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": "msg_mock", "type": "message", "role": "assistant", "content": [],
                    "model": self.model, "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1,
                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
                }}),
            ),
            event("ping", &json!({"type": "ping"})),
        ]
    }

    fn text(&mut self, token: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.text_open {
            self.text_open = true;
            out.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": self.block,
                        "content_block": {"type": "text", "text": ""}}),
            ));
        }
        out.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.block,
                    "delta": {"type": "text_delta", "text": token}}),
        ));
        out
    }

    fn tool_call(&mut self, call: CallPieces<'_>) -> Vec<String> {
        let mut out = self.close_text();
        let index = self.block;
        self.block += 1;
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block":
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
        ));
        for piece in call.pieces {
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        out
    }

    fn tail(&mut self, output_tokens: u64, finish_reason: &str) -> Vec<String> {
        let mut out = self.close_text();
        let stop = match finish_reason {
            "stop" => "end_turn",
            "tool_calls" => "tool_use",
            "length" => "max_tokens",
            other => other,
        };
        out.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}}),
        ));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    }
}

// ----- Gemini -----

struct Gemini {
    model: String,
    prompt_tokens: u64,
}

impl Gemini {
    fn chunk(&self, parts: Value, finish: Option<&str>, usage: Option<u64>) -> String {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut response = json!({"candidates": [candidate], "modelVersion": self.model});
        if let Some(output) = usage {
            response["usageMetadata"] = json!({
                "promptTokenCount": self.prompt_tokens,
                "candidatesTokenCount": output,
                "totalTokenCount": self.prompt_tokens + output,
            });
        }
        format!("data: {response}\r\n\r\n")
    }
}

impl Encoder for Gemini {
    fn head(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn text(&mut self, token: &str) -> Vec<String> {
        vec![self.chunk(json!([{ "text": token }]), None, None)]
    }

    fn tool_call(&mut self, call: CallPieces<'_>) -> Vec<String> {
        // Gemini sends a function call whole, in one part.
        let part =
            json!({"functionCall": {"name": call.name, "args": arguments_value(call.arguments)}});
        vec![self.chunk(json!([part]), None, None)]
    }

    fn tail(&mut self, output_tokens: u64, finish_reason: &str) -> Vec<String> {
        let finish = match finish_reason {
            "length" => "MAX_TOKENS",
            "stop" | "tool_calls" => "STOP",
            other => other,
        };
        vec![self.chunk(json!([{ "text": "" }]), Some(finish), Some(output_tokens))]
    }
}

// ----- Ollama -----

struct Ollama {
    model: String,
    prompt_tokens: u64,
}

impl Ollama {
    fn line(&self, message: Value, done: bool) -> String {
        format!(
            "{}\n",
            json!({"model": self.model, "created_at": "2026-01-01T00:00:00Z",
                   "message": message, "done": done})
        )
    }
}

impl Encoder for Ollama {
    fn head(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn text(&mut self, token: &str) -> Vec<String> {
        vec![self.line(json!({"role": "assistant", "content": token}), false)]
    }

    fn tool_call(&mut self, call: CallPieces<'_>) -> Vec<String> {
        let calls = json!([{"function": {"name": call.name, "arguments": arguments_value(call.arguments)}}]);
        vec![self.line(
            json!({"role": "assistant", "content": "", "tool_calls": calls}),
            false,
        )]
    }

    fn tail(&mut self, output_tokens: u64, finish_reason: &str) -> Vec<String> {
        let reason = if finish_reason == "tool_calls" {
            "stop"
        } else {
            finish_reason
        };
        let line = json!({
            "model": self.model, "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": reason,
            "total_duration": 1000, "load_duration": 10,
            "prompt_eval_count": self.prompt_tokens, "eval_count": output_tokens,
        });
        vec![format!("{line}\n")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_path() {
        assert_eq!(
            WireFormat::from_path("/v1/chat/completions"),
            Some(WireFormat::OpenAi)
        );
        assert_eq!(
            WireFormat::from_path("/v1/messages"),
            Some(WireFormat::Anthropic)
        );
        assert_eq!(
            WireFormat::from_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Some(WireFormat::Gemini)
        );
        assert_eq!(WireFormat::from_path("/api/chat"), Some(WireFormat::Ollama));
        assert_eq!(WireFormat::from_path("/api/generate"), None);
    }

    #[test]
    fn anthropic_stream_has_the_documented_events_in_order() {
        let mut e = encoder(WireFormat::Anthropic, "m", 3).unwrap();
        let mut all = e.head();
        all.extend(e.text("Hi"));
        all.extend(e.tool_call(CallPieces {
            index: 0,
            id: "t1",
            name: "f",
            arguments: "{}",
            pieces: vec!["{}".into()],
        }));
        all.extend(e.tail(1, "tool_calls"));
        let names: Vec<&str> = all
            .iter()
            .map(|s| s.lines().next().unwrap().trim_start_matches("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(all[8].contains("\"tool_use\""));
    }
}
