//! A fake tool source for the conversation's tests: `calc__add` and a slow `calc__slow`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use vtuber_shared::ToolOutcome;

use super::tool_use::{ToolInvocation, ToolReply, ToolRunner};
use crate::llm::ToolSpec;

/// Tools `calc__add` (sums a and b) and `calc__slow` (300 ms), counting calls.
pub(super) struct FakeTools {
    pub(super) calls: AtomicUsize,
}

impl ToolRunner for FakeTools {
    fn specs(&self) -> Vec<ToolSpec> {
        ["calc__add", "calc__slow"]
            .iter()
            .map(|n| ToolSpec {
                name: (*n).into(),
                description: "test tool".into(),
                parameters: serde_json::json!({"type": "object"}),
            })
            .collect()
    }

    fn call(&self, inv: ToolInvocation) -> futures::future::BoxFuture<'static, ToolReply> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let started = Instant::now();
            let args: serde_json::Value = serde_json::from_str(&inv.arguments).unwrap_or_default();
            let content = match inv.name.as_str() {
                "calc__add" => {
                    (args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)).to_string()
                }
                _ => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(300)) => "slept".into(),
                        _ = inv.cancel.cancelled() => "cancelled".into(),
                    }
                }
            };
            ToolReply {
                outcome: ToolOutcome::Ok,
                content,
                duration: started.elapsed(),
            }
        }
        .boxed()
    }
}
