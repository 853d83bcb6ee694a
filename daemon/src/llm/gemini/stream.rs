//! Gemini's streamed `GenerateContentResponse`s into the provider's events: text parts
//! as they come, each function call whole (with an id made up when the API sends none),
//! usage and the finish at the end of the stream.

use vtuber_shared::Usage;

use super::wire::{ErrorJson, ResponseJson, map_finish};
use crate::llm::http::{AttemptError, ERROR_BODY_LIMIT, Emitter, SseReply, truncate_chars};
use crate::llm::{FinishReason, LlmError, LlmEvent, new_call_id};

/// What a stream has said so far.
#[derive(Default)]
pub(super) struct StreamState {
    tool_calls: usize,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamState {
    /// Handles one event's data (one JSON response).
    pub(super) async fn on_data(&mut self, data: &str, out: &Emitter) -> Result<(), AttemptError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let response: ResponseJson = serde_json::from_str(data).map_err(|e| {
            AttemptError::fatal(LlmError::Protocol(format!(
                "unreadable Gemini response ({e}): {}",
                truncate_chars(data, 120)
            )))
        })?;
        if let Some(error) = response.error {
            return Err(stream_error(error));
        }
        if let Some(reason) = response.prompt_feedback.and_then(|f| f.block_reason) {
            return Err(AttemptError::fatal(LlmError::Inference(format!(
                "Gemini blocked the prompt ({reason})"
            ))));
        }
        for candidate in response.candidates.into_iter().take(1) {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if part.thought {
                    continue;
                }
                if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    out.send(LlmEvent::TextDelta(text)).await?;
                }
                if let Some(call) = part.function_call {
                    let index = self.tool_calls;
                    self.tool_calls += 1;
                    let id = call
                        .id
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| new_call_id("gemini"));
                    let arguments = match call.args {
                        serde_json::Value::Null => "{}".to_owned(),
                        args => args.to_string(),
                    };
                    out.send(LlmEvent::ToolCallDelta {
                        index,
                        id: Some(id),
                        name: Some(call.name),
                        arguments,
                    })
                    .await?;
                }
            }
            if let Some(reason) = candidate.finish_reason {
                self.finish = Some(map_finish(&reason));
            }
        }
        if let Some(u) = response.usage_metadata {
            self.usage = Some(Usage {
                prompt_tokens: u.prompt_token_count,
                completion_tokens: u.candidates_token_count + u.thoughts_token_count,
            });
        }
        Ok(())
    }

    /// Whether the reply said how it ended.
    pub(super) fn complete(&self) -> bool {
        self.finish.is_some()
    }

    pub(super) async fn finish(self, out: &Emitter) -> Result<(), AttemptError> {
        // Gemini ends a reply that calls functions with STOP.
        out.finish_reply(self.usage, self.finish, self.tool_calls > 0)
            .await
    }
}

/// An error sent in the stream (`{"error": {"code", "message", "status"}}`).
fn stream_error(error: ErrorJson) -> AttemptError {
    let body = truncate_chars(&error.message, ERROR_BODY_LIMIT);
    match error.code {
        429 => AttemptError::retryable(LlmError::RateLimited),
        500..=599 => AttemptError::retryable(LlmError::Server {
            status: error.code,
            body,
        }),
        _ => AttemptError::fatal(LlmError::Inference(format!(
            "the LLM server reported {}: {body}",
            error.status
        ))),
    }
}

impl SseReply for StreamState {
    async fn on_event(&mut self, data: &str, out: &Emitter) -> Result<bool, AttemptError> {
        // The stream ends when the server closes it.
        self.on_data(data, out).await.map(|()| false)
    }

    fn ended(&self) -> bool {
        self.complete()
    }

    async fn end(self, out: &Emitter) -> Result<(), AttemptError> {
        self.finish(out).await
    }
}
