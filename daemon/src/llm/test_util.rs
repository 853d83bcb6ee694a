//! Helpers for the providers' tests: reading a stream to its end and what it said.

use std::time::Duration;

use super::{ChatImage, ChatMessage, ChatRequest, FinishReason, LlmError, LlmEvent, LlmStream};

pub(super) type Item = Result<LlmEvent, LlmError>;

/// Reads the stream to its end, with a deadline so a hang fails the test.
pub(super) async fn collect(mut rx: LlmStream) -> Vec<Item> {
    let mut items = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return items,
            Err(_) => panic!("stream did not end; got {items:?}"),
        }
    }
}

pub(super) fn text_of(items: &[Item]) -> String {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(LlmEvent::TextDelta(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

pub(super) fn last_finish(items: &[Item]) -> Option<FinishReason> {
    items.iter().rev().find_map(|i| match i {
        Ok(LlmEvent::Finish(r)) => Some(*r),
        _ => None,
    })
}

/// (id, name, arguments) of each tool call, assembled from deltas.
pub(super) fn calls_of(items: &[Item]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for item in items {
        if let Ok(LlmEvent::ToolCallDelta {
            index,
            id,
            name,
            arguments,
        }) = item
        {
            if *index == calls.len() {
                calls.push(Default::default());
            }
            let Some(call) = calls.get_mut(*index) else {
                panic!("tool call index {index} skips ahead: {items:?}");
            };
            if let Some(id) = id {
                call.0 = id.clone();
            }
            if let Some(name) = name {
                call.1 = name.clone();
            }
            call.2.push_str(arguments);
        }
    }
    calls
}

/// The error a stream ended with.
pub(super) fn last_error(items: &[Item]) -> &LlmError {
    match items.last() {
        Some(Err(e)) => e,
        _ => panic!("the stream did not end in an error: {items:?}"),
    }
}

/// A user message "what is this?" with a (tiny, fake) PNG, as every provider's image
/// test sends it; `system` puts a system message first.
pub(super) fn image_request(system: bool) -> ChatRequest {
    let image = ChatImage {
        mime_type: "image/png".into(),
        base64: "iVBORw0KGgo=".into(),
    };
    let mut messages = Vec::new();
    if system {
        messages.push(ChatMessage::new(super::Role::System, "You are Mira."));
    }
    messages.push(ChatMessage::user_with_images("what is this?", vec![image]));
    ChatRequest {
        messages,
        ..ChatRequest::default()
    }
}
