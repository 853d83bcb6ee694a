//! The daemon's side of each MCP connection: what it announces at the handshake, the
//! MCP roots it answers with, and what servers send on their own (progress,
//! `tools/list_changed`).

// MCP roots are deprecated from protocol 2026-07-28 on, but the `initialize` handshake
// rmcp uses negotiates 2025-11-25 at most, where servers still ask for them.
#![allow(deprecated)]

use std::sync::Arc;

use rmcp::model::{
    ClientCapabilities, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationCapability, FormElicitationCapability, Implementation, InitializeRequestParams,
    ListRootsResult, ProgressNotificationParam, ProtocolVersion, Root, RootsCapabilities,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ClientHandler, ErrorData, RoleClient};
use tokio::sync::mpsc;

use super::progress::ProgressRoutes;
use crate::config::{ServerConfig, Transport};

/// Receives what servers send on their own: progress and tool-list changes; answers
/// `roots/list`.
pub(super) struct Handler {
    pub server: String,
    pub roots: Vec<Root>,
    pub relist: mpsc::UnboundedSender<()>,
    pub progress: Arc<ProgressRoutes>,
    pub elicit: Elicit,
}

/// How a connection answers a server's `elicitation/create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elicit {
    /// Not announced: the server must not ask (the daemon has no form dialog yet).
    Unsupported,
    /// Accepts every form with the values its schema proposes as defaults, as a person
    /// pressing Enter on a pre-filled form would: what the conformance adapter does.
    AcceptDefaults,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> InitializeRequestParams {
        let mut caps = ClientCapabilities::default();
        caps.roots = Some(RootsCapabilities::default());
        if self.elicit != Elicit::Unsupported {
            caps.elicitation =
                Some(ElicitationCapability::new().with_form(FormElicitationCapability::default()));
        }
        // Offer the newest version that still has an `initialize` handshake (rmcp's
        // default, 2026-07-28, has none, and servers of today reject it); a server
        // answering with an older one is accepted as it is.
        InitializeRequestParams::new(
            caps,
            Implementation::new("vtuberd", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(self.roots.clone()))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        match (self.elicit, request) {
            (
                Elicit::AcceptDefaults,
                ElicitRequestParams::FormElicitationParams {
                    requested_schema, ..
                },
            ) => {
                let schema = serde_json::to_value(&requested_schema).unwrap_or_default();
                Ok(ElicitResult::new(ElicitationAction::Accept)
                    .with_content(form_defaults(&schema)))
            }
            _ => Ok(ElicitResult::new(ElicitationAction::Decline)),
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.report(params);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(target: "mcp", server = %self.server, "tools/list_changed");
        let _ = self.relist.send(());
    }
}

/// The server's granted folders as MCP roots.
pub(super) fn roots(cfg: &ServerConfig) -> Vec<Root> {
    if !matches!(cfg.transport(), Transport::Stdio { .. }) || !cfg.sandbox.enabled {
        return Vec::new();
    }
    cfg.sandbox
        .write
        .iter()
        .chain(&cfg.sandbox.read)
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .map(|p| {
            let mut root = Root::new(format!("file://{}", p.display()));
            root.name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            root
        })
        .collect()
}

/// The `default` of every property of a form schema, as the form's answer.
fn form_defaults(schema: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            if let Some(d) = prop.get("default") {
                out.insert(name.clone(), d.clone());
            }
        }
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod form_tests {
    use serde_json::json;

    /// Every property with a default gets it, of its own type; the others are left out.
    #[test]
    fn form_defaults_takes_each_default() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive"], "default": "active"},
                "verified": {"type": "boolean", "default": true},
                "nickname": {"type": "string"}
            }
        });
        assert_eq!(
            super::form_defaults(&schema),
            json!({"name": "John Doe", "age": 30, "score": 95.5, "status": "active", "verified": true})
        );
        assert_eq!(super::form_defaults(&json!({"type": "object"})), json!({}));
    }
}
