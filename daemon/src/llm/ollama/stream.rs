//! Ollama's NDJSON lines into the provider's events: text as it comes, each tool call
//! whole (with a made-up id), usage and the finish from the `done` line.

use vtuber_shared::Usage;

use super::wire::{LineJson, map_done};
use crate::llm::http::{AttemptError, ERROR_BODY_LIMIT, Emitter, truncate_chars};
use crate::llm::{FinishReason, LlmError, LlmEvent, new_call_id};

/// What a stream has said so far.
#[derive(Default)]
pub(super) struct StreamState {
    tool_calls: usize,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamState {
    /// Handles one line; `true` once the `done` line came.
    pub(super) async fn on_line(
        &mut self,
        line: &str,
        out: &Emitter,
    ) -> Result<bool, AttemptError> {
        let parsed: LineJson = serde_json::from_str(line).map_err(|e| {
            AttemptError::fatal(LlmError::Protocol(format!(
                "unreadable Ollama line ({e}): {}",
                truncate_chars(line, 120)
            )))
        })?;
        if let Some(error) = parsed.error {
            return Err(AttemptError::fatal(LlmError::Inference(format!(
                "Ollama reported: {}",
                truncate_chars(&error, ERROR_BODY_LIMIT)
            ))));
        }
        if let Some(message) = parsed.message {
            if !message.content.is_empty() {
                out.send(LlmEvent::TextDelta(message.content)).await?;
            }
            for call in message.tool_calls {
                let index = self.tool_calls;
                self.tool_calls += 1;
                let arguments = match call.function.arguments {
                    serde_json::Value::Null => "{}".to_owned(),
                    serde_json::Value::String(s) => s,
                    args => args.to_string(),
                };
                out.send(LlmEvent::ToolCallDelta {
                    index,
                    id: Some(
                        call.id
                            .filter(|id| !id.is_empty())
                            .unwrap_or_else(|| new_call_id("ollama")),
                    ),
                    name: Some(call.function.name),
                    arguments,
                })
                .await?;
            }
        }
        if parsed.done {
            self.finish = Some(
                parsed
                    .done_reason
                    .as_deref()
                    .map_or(FinishReason::Stop, map_done),
            );
            self.usage = Some(Usage {
                prompt_tokens: parsed.prompt_eval_count.unwrap_or(0),
                completion_tokens: parsed.eval_count.unwrap_or(0),
            });
        }
        Ok(parsed.done)
    }

    pub(super) fn complete(&self) -> bool {
        self.finish.is_some()
    }

    pub(super) async fn finish(self, out: &Emitter) -> Result<(), AttemptError> {
        // Ollama ends a reply that calls tools with "stop".
        out.finish_reply(self.usage, self.finish, self.tool_calls > 0)
            .await
    }
}
