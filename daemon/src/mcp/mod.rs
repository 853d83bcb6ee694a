//! MCP (Model Context Protocol) tools for the character's LLM. The `mcp:` settings live
//! in `crate::config::mcp`; here is what runs them:
//!
//! - `manager`: the handle the daemon holds ([`McpManager`]).
//! - `server`: the servers' shared live state; `supervisor`: one task per server that
//!   keeps it running; `connect`: starting one and handshaking; `client`: the daemon's
//!   side of a connection; [`environment`]: what a stdio server inherits.
//! - `registry`: tools under exposed names ([`naming`]), with their [`policy`].
//! - `call`: one tool call; `approval`: asking a person; `progress`: routing progress.
//! - [`sandbox`], [`secrets`], [`audit`]: confinement, `secret:` values, the audit log.
//! - [`oauth`]: authorization for HTTP servers.
//! - [`probe`]: a one-off session outside the daemon (the conformance adapter).

mod approval;
pub mod audit;
mod call;
mod client;
mod connect;
pub mod environment;
mod manager;
pub mod naming;
pub mod oauth;
pub mod policy;
pub mod probe;
mod progress;
mod registry;
pub mod sandbox;
pub mod secrets;
mod server;
mod supervisor;

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vtuber_shared::ToolOutcome;

pub use manager::{McpManager, StartOptions, measure_start};

#[cfg(test)]
mod tests;

/// Locks `m`, taking over a poisoned lock rather than panicking.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// rmcp's reqwest is built without a rustls provider: installs ring's before any HTTP
/// client is made (whoever comes first; later calls do nothing).
fn install_crypto_provider() {
    // Fails only when one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

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
