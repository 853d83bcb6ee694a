//! The tool registry: every ready server's tools under the names the LLM sees
//! (`server__tool`, unique across servers), rebuilt whenever a server connects, drops or
//! announces `tools/list_changed`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rmcp::{Peer, RoleClient, ServiceError};
use serde_json::Value;
use vtuber_shared::{McpToolInfo, ToolPolicy};

use super::lock;
use super::naming::{exposed_name, sanitise_schema};
use super::policy::{self, Hints};
use crate::config::PolicyConfig;
use crate::llm::ToolSpec;

/// One tool as a server listed it, with the policy decided for it.
pub(super) struct ToolEntry {
    pub name: String,
    pub description: String,
    pub schema: Value,
    pub hints: Hints,
    pub policy: ToolPolicy,
}

/// A tool under its exposed name.
#[derive(Clone)]
pub(super) struct Indexed {
    pub exposed: String,
    pub server: String,
    pub tool: Arc<ToolEntry>,
}

/// Tools of all ready servers: in server order, then the server's tool order.
#[derive(Default)]
pub(super) struct Registry {
    tools: Mutex<Vec<Indexed>>,
}

impl Registry {
    /// Every registered tool.
    pub fn snapshot(&self) -> Vec<Indexed> {
        lock(&self.tools).clone()
    }

    /// Recomputes exposed names across `servers` (name, tools of a ready server). The
    /// registry stays locked while `servers` is read, so rebuilds never interleave.
    pub fn rebuild<'a>(&self, servers: impl Iterator<Item = (&'a String, Vec<Arc<ToolEntry>>)>) {
        let mut index = lock(&self.tools);
        let mut taken = HashSet::new();
        let mut tools = Vec::new();
        for (name, server_tools) in servers {
            for t in server_tools {
                tools.push(Indexed {
                    exposed: exposed_name(name, &t.name, &mut taken),
                    server: name.clone(),
                    tool: t,
                });
            }
        }
        *index = tools;
    }

    /// Tools the LLM may call (not denied), under their exposed names.
    pub fn tool_specs(&self) -> Vec<ToolSpec> {
        self.snapshot()
            .into_iter()
            .filter(|t| t.tool.policy != ToolPolicy::Deny)
            .map(|t| ToolSpec {
                name: t.exposed,
                description: t.tool.description.clone(),
                parameters: t.tool.schema.clone(),
            })
            .collect()
    }

    /// Every tool, or those of one server, as clients list them.
    pub fn tool_infos(&self, server: Option<&str>) -> Vec<McpToolInfo> {
        self.snapshot()
            .into_iter()
            .filter(|t| server.is_none_or(|s| s == t.server))
            .map(|t| McpToolInfo {
                server: t.server,
                name: t.tool.name.clone(),
                exposed_name: t.exposed,
                description: t.tool.description.clone(),
                input_schema: t.tool.schema.clone(),
                read_only: t.tool.hints.read_only.unwrap_or(false),
                destructive: t.tool.hints.destructive.unwrap_or(false),
                policy: t.tool.policy,
            })
            .collect()
    }
}

/// Asks a server for its tools (`tools/list`, all pages) and decides each one's policy.
pub(super) async fn list_tools(
    peer: &Peer<RoleClient>,
    policies: &PolicyConfig,
) -> Result<Vec<Arc<ToolEntry>>, ServiceError> {
    let tools = peer.list_all_tools().await?;
    Ok(tools
        .into_iter()
        .map(|t| {
            let hints = t
                .annotations
                .as_ref()
                .map(|a| Hints {
                    read_only: a.read_only_hint,
                    destructive: a.destructive_hint,
                })
                .unwrap_or_default();
            let name = t.name.to_string();
            Arc::new(ToolEntry {
                policy: policy::decide(policies, &name, hints),
                description: t.description.as_deref().unwrap_or_default().to_owned(),
                schema: sanitise_schema(&t.input_schema),
                hints,
                name,
            })
        })
        .collect())
}
