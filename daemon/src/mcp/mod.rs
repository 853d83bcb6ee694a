//! MCP (Model Context Protocol) tools for the character's LLM: configuration, the
//! server manager, policy and approval, the Landlock sandbox, and the audit log.

pub mod audit;
pub mod environment;
pub mod import;
mod manager;
pub mod naming;
pub mod policy;
pub mod sandbox;
pub mod secrets;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vtuber_shared::ToolOutcome;

pub use manager::{McpManager, StartOptions, measure_start};

#[cfg(test)]
mod tests;

/// One tool call the LLM asked for.
#[derive(Debug, Clone)]
pub struct ToolCallRequest {
    pub turn_id: u64,
    pub call_id: String,
    pub character: String,
    /// The name the LLM used (`server__tool`).
    pub exposed_name: String,
    /// Raw JSON text from the LLM.
    pub arguments: String,
    pub cancel: CancellationToken,
}

/// What the LLM gets back.
#[derive(Debug, Clone)]
pub struct ToolCallResult {
    pub outcome: ToolOutcome,
    /// The tool result, or for failures a clear message the LLM can talk about.
    pub content: String,
    pub duration: Duration,
}
