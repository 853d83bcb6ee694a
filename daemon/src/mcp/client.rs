//! The daemon's side of each MCP connection: what it announces at the handshake, the
//! MCP roots it answers with, and what servers send on their own (progress,
//! `tools/list_changed`).

// MCP roots are deprecated from protocol 2026-07-28 on, but the `initialize` handshake
// rmcp uses negotiates 2025-11-25 at most, where servers still ask for them.
#![allow(deprecated)]

use std::sync::Arc;

use rmcp::model::{
    ClientCapabilities, Implementation, InitializeRequestParams, ListRootsResult,
    ProgressNotificationParam, Root, RootsCapabilities,
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
}

impl ClientHandler for Handler {
    fn get_info(&self) -> InitializeRequestParams {
        let mut caps = ClientCapabilities::default();
        caps.roots = Some(RootsCapabilities::default());
        InitializeRequestParams::new(
            caps,
            Implementation::new("vtuberd", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(self.roots.clone()))
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
