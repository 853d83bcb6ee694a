//! Turning the data of each server-sent event (one JSON chunk, or `[DONE]`) into the
//! provider's events: text and tool-call deltas at once, usage and the finish at the end.

use vtuber_shared::Usage;

use super::wire::{ChunkJson, map_finish};
use crate::llm::http::{AttemptError, ERROR_BODY_LIMIT, Emitter, SseReply, truncate_chars};
use crate::llm::{FinishReason, LlmError, LlmEvent};

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    More,
    Done,
}

/// What a stream has said so far that is only reported at its end.
#[derive(Default)]
pub(super) struct StreamState {
    pub(super) finish: Option<FinishReason>,
    pub(super) usage: Option<Usage>,
    /// `data: [DONE]` arrived.
    pub(super) done: bool,
}

impl StreamState {
    pub(super) async fn on_data(
        &mut self,
        data: &str,
        out: &Emitter,
    ) -> Result<Flow, AttemptError> {
        let data = data.trim();
        // Servers that omit the blank line between events run several `data:` lines
        // together; read those one by one.
        if data.contains('\n') && serde_json::from_str::<serde::de::IgnoredAny>(data).is_err() {
            for line in data.lines() {
                if self.on_payload(line.trim(), out).await? == Flow::Done {
                    return Ok(Flow::Done);
                }
            }
            return Ok(Flow::More);
        }
        self.on_payload(data, out).await
    }

    pub(super) async fn on_payload(
        &mut self,
        data: &str,
        out: &Emitter,
    ) -> Result<Flow, AttemptError> {
        if data.is_empty() {
            return Ok(Flow::More);
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(Flow::Done);
        }
        let chunk: ChunkJson = serde_json::from_str(data).map_err(|e| {
            AttemptError::fatal(LlmError::Protocol(format!(
                "unreadable stream chunk ({e}): {}",
                truncate_chars(data, 120)
            )))
        })?;
        if let Some(error) = chunk.error {
            let message = error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(AttemptError::fatal(LlmError::Inference(format!(
                "the LLM server reported: {}",
                truncate_chars(&message, ERROR_BODY_LIMIT)
            ))));
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.send(LlmEvent::TextDelta(text)).await?;
                }
                for (position, call) in delta.tool_calls.into_iter().enumerate() {
                    let function = call.function.unwrap_or_default();
                    out.send(LlmEvent::ToolCallDelta {
                        index: call.index.unwrap_or(position),
                        id: call.id.filter(|s| !s.is_empty()),
                        name: function.name.filter(|s| !s.is_empty()),
                        arguments: function.arguments.unwrap_or_default(),
                    })
                    .await?;
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(map_finish(&reason));
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        Ok(Flow::More)
    }

    pub(super) async fn finish(self, out: &Emitter) -> Result<(), AttemptError> {
        if let Some(usage) = self.usage {
            out.send(LlmEvent::Usage(usage)).await?;
        }
        out.send(LlmEvent::Finish(self.finish.unwrap_or(FinishReason::Stop)))
            .await?;
        Ok(())
    }
}

impl SseReply for StreamState {
    async fn on_event(&mut self, data: &str, out: &Emitter) -> Result<bool, AttemptError> {
        Ok(self.on_data(data, out).await? == Flow::Done)
    }

    fn ended(&self) -> bool {
        self.done || self.finish.is_some()
    }

    async fn end(self, out: &Emitter) -> Result<(), AttemptError> {
        self.finish(out).await
    }
}
