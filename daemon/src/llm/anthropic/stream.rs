//! Anthropic's streamed events into the provider's: text deltas as they come, a tool
//! call's id and name at its block's start and its input JSON in pieces, usage from
//! `message_start` and `message_delta`, the finish at `message_stop`.

use std::collections::HashMap;

use vtuber_shared::Usage;

use super::wire::{BlockJson, DeltaJson, ErrorJson, EventJson, UsageJson, map_stop};
use crate::llm::http::{AttemptError, Emitter, SseReply, truncate_chars};
use crate::llm::{FinishReason, LlmError, LlmEvent};

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    More,
    Done,
}

/// A tool-use block being streamed.
struct OpenCall {
    /// Its number among this reply's tool calls (the provider's `index`).
    ordinal: usize,
    /// Input JSON received so far (bytes).
    input_bytes: usize,
}

/// What a stream has said so far.
#[derive(Default)]
pub(super) struct StreamState {
    /// Content block index → the tool call it streams.
    calls: HashMap<usize, OpenCall>,
    tool_calls: usize,
    stop: Option<FinishReason>,
    input_tokens: u64,
    output_tokens: u64,
    /// `message_stop` arrived.
    pub(super) done: bool,
}

impl StreamState {
    /// Handles one event's data.
    pub(super) async fn on_data(
        &mut self,
        data: &str,
        out: &Emitter,
    ) -> Result<Flow, AttemptError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Flow::More);
        }
        let event: EventJson = serde_json::from_str(data).map_err(|e| {
            AttemptError::fatal(LlmError::Protocol(format!(
                "unreadable Anthropic event ({e}): {}",
                truncate_chars(data, 120)
            )))
        })?;
        match event {
            EventJson::MessageStart { message } => {
                if let Some(usage) = message.usage {
                    self.add_usage(usage);
                }
            }
            EventJson::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                BlockJson::Text { text } => {
                    if !text.is_empty() {
                        out.send(LlmEvent::TextDelta(text)).await?;
                    }
                }
                BlockJson::ToolUse { id, name, input } => {
                    let ordinal = self.tool_calls;
                    self.tool_calls += 1;
                    // Input normally streams as deltas; a block may carry it whole.
                    let arguments = match input {
                        serde_json::Value::Object(map) if !map.is_empty() => {
                            serde_json::Value::Object(map).to_string()
                        }
                        _ => String::new(),
                    };
                    self.calls.insert(
                        index,
                        OpenCall {
                            ordinal,
                            input_bytes: arguments.len(),
                        },
                    );
                    out.send(LlmEvent::ToolCallDelta {
                        index: ordinal,
                        id: Some(id),
                        name: Some(name),
                        arguments,
                    })
                    .await?;
                }
                BlockJson::Other => {}
            },
            EventJson::ContentBlockDelta { index, delta } => match delta {
                DeltaJson::TextDelta { text } => {
                    if !text.is_empty() {
                        out.send(LlmEvent::TextDelta(text)).await?;
                    }
                }
                DeltaJson::InputJsonDelta { partial_json } => {
                    let Some(call) = self.calls.get_mut(&index) else {
                        return Err(AttemptError::fatal(LlmError::Protocol(format!(
                            "input_json_delta for content block {index}, which is no tool_use block"
                        ))));
                    };
                    call.input_bytes += partial_json.len();
                    if !partial_json.is_empty() {
                        out.send(LlmEvent::ToolCallDelta {
                            index: call.ordinal,
                            id: None,
                            name: None,
                            arguments: partial_json,
                        })
                        .await?;
                    }
                }
                DeltaJson::Other => {}
            },
            EventJson::ContentBlockStop { index } => {
                // A tool without parameters streams no input: its arguments are `{}`.
                if let Some(call) = self.calls.remove(&index)
                    && call.input_bytes == 0
                {
                    out.send(LlmEvent::ToolCallDelta {
                        index: call.ordinal,
                        id: None,
                        name: None,
                        arguments: "{}".into(),
                    })
                    .await?;
                }
            }
            EventJson::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.stop = Some(map_stop(&reason));
                }
                if let Some(usage) = usage {
                    self.add_usage(usage);
                }
            }
            EventJson::MessageStop => {
                self.done = true;
                return Ok(Flow::Done);
            }
            EventJson::Ping | EventJson::Unknown => {}
            EventJson::Error { error } => return Err(stream_error(error)),
        }
        Ok(Flow::More)
    }

    fn add_usage(&mut self, u: UsageJson) {
        let input = u.input_tokens.unwrap_or(0)
            + u.cache_creation_input_tokens.unwrap_or(0)
            + u.cache_read_input_tokens.unwrap_or(0);
        if input > 0 {
            self.input_tokens = input;
        }
        // `output_tokens` is cumulative in `message_delta`.
        if let Some(output) = u.output_tokens {
            self.output_tokens = self.output_tokens.max(output);
        }
    }

    /// Whether the reply is complete enough to finish.
    pub(super) fn complete(&self) -> bool {
        self.done || self.stop.is_some()
    }

    pub(super) async fn finish(self, out: &Emitter) -> Result<(), AttemptError> {
        if self.input_tokens > 0 || self.output_tokens > 0 {
            out.send(LlmEvent::Usage(Usage {
                prompt_tokens: self.input_tokens,
                completion_tokens: self.output_tokens,
            }))
            .await?;
        }
        out.send(LlmEvent::Finish(self.stop.unwrap_or(FinishReason::Stop)))
            .await?;
        Ok(())
    }
}

/// A mid-stream `error` event. Overload and server errors are retried when nothing
/// reached the caller yet.
fn stream_error(error: ErrorJson) -> AttemptError {
    let body = truncate_chars(&error.message, crate::llm::http::ERROR_BODY_LIMIT);
    match error.kind.as_str() {
        "overloaded_error" => AttemptError::retryable(LlmError::Server { status: 529, body }),
        "api_error" => AttemptError::retryable(LlmError::Server { status: 500, body }),
        "rate_limit_error" => AttemptError::retryable(LlmError::RateLimited),
        "authentication_error" | "permission_error" => {
            AttemptError::fatal(LlmError::Unauthorized { key_env: None })
        }
        _ => AttemptError::fatal(LlmError::Inference(format!(
            "the LLM server reported {}: {body}",
            error.kind
        ))),
    }
}

impl SseReply for StreamState {
    async fn on_event(&mut self, data: &str, out: &Emitter) -> Result<bool, AttemptError> {
        Ok(self.on_data(data, out).await? == Flow::Done)
    }

    fn ended(&self) -> bool {
        self.complete()
    }

    async fn end(self, out: &Emitter) -> Result<(), AttemptError> {
        self.finish(out).await
    }
}
