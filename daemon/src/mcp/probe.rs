//! A one-off session with one streamable-HTTP MCP server through the daemon's own client
//! side (the same [`Handler`], transport and handshake a configured server gets), without
//! a running daemon. The conformance adapter (`vtuber-mcp-conformance`) drives it, so the
//! official suite tests the code the daemon really runs.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, Tool};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::client::{Elicit, Handler};
use super::connect::{Running, http_transport};
use super::progress::ProgressRoutes;

/// What went wrong talking to the server; the text says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("MCP handshake with {url} failed: {reason}")]
    Handshake { url: String, reason: String },
    #[error("{what} failed: {reason}")]
    Request { what: String, reason: String },
}

/// One connected session.
pub struct Probe {
    running: Running,
}

/// Connects to `url` and handshakes. `accept_elicitation`: answer form elicitations with
/// their defaults (else the capability is not announced).
pub async fn connect_http(url: &str, accept_elicitation: bool) -> Result<Probe, ProbeError> {
    let (relist, _) = mpsc::unbounded_channel();
    let handler = Handler {
        server: "probe".into(),
        roots: Vec::new(),
        relist,
        progress: Arc::new(ProgressRoutes::new(crate::events::EventBus::new(16))),
        elicit: if accept_elicitation {
            Elicit::AcceptDefaults
        } else {
            Elicit::Unsupported
        },
    };
    let transport = http_transport(url, HashMap::new());
    let running = handler
        .serve(transport)
        .await
        .map_err(|e| ProbeError::Handshake {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Probe { running })
}

impl Probe {
    /// Every tool the server lists (all pages).
    pub async fn tools(&self) -> Result<Vec<Tool>, ProbeError> {
        self.running
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| ProbeError::Request {
                what: "tools/list".into(),
                reason: e.to_string(),
            })
    }

    /// Calls `name` with `arguments`; the result as JSON.
    pub async fn call(
        &self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, ProbeError> {
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let result =
            self.running
                .peer()
                .call_tool(params)
                .await
                .map_err(|e| ProbeError::Request {
                    what: format!("tools/call {name}"),
                    reason: e.to_string(),
                })?;
        Ok(serde_json::to_value(result).unwrap_or_default())
    }

    /// Ends the session (for HTTP: the transport's `DELETE`).
    pub async fn close(self) -> Result<(), ProbeError> {
        self.running
            .cancel()
            .await
            .map(|_| ())
            .map_err(|e| ProbeError::Request {
                what: "closing the session".into(),
                reason: e.to_string(),
            })
    }
}
