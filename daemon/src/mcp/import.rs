//! Importing MCP server lists written for other tools (Claude Desktop, Open-LLM-VTuber)
//! as `mcp.servers` entries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ServerConfig;

/// Why an imported server list was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "expected an object with `mcpServers` (Claude Desktop) or `mcp_servers` (Open-LLM-VTuber)"
    )]
    NoServers,
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct ImportedServer {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    disabled: bool,
}

/// Converts Claude Desktop's `{"mcpServers": {...}}` or Open-LLM-VTuber's
/// `{"mcp_servers": {...}}` into server entries, validated like `conf.yaml` ones.
/// Unknown keys in entries (e.g. `type`, `transport`) are ignored.
pub fn import_claude_desktop(json: &str) -> Result<BTreeMap<String, ServerConfig>, ImportError> {
    let root: serde_json::Value = serde_json::from_str(json)?;
    let servers = root
        .get("mcpServers")
        .or_else(|| root.get("mcp_servers"))
        .ok_or(ImportError::NoServers)?;
    let servers: BTreeMap<String, ImportedServer> = serde_json::from_value(servers.clone())?;
    let mut out = BTreeMap::new();
    for (name, s) in servers {
        let cfg = ServerConfig {
            command: s.command,
            args: s.args,
            env: s.env,
            cwd: s.cwd,
            url: s.url,
            headers: s.headers,
            enabled: !s.disabled,
            ..ServerConfig::default()
        };
        cfg.validate(&name).map_err(ImportError::Invalid)?;
        out.insert(name, cfg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_desktop_and_open_llm_vtuber_import() {
        let claude = r#"{"mcpServers": {
            "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"A": "b"}},
            "remote": {"type": "http", "url": "https://example.invalid/mcp", "headers": {"X-Key": "k"}}
        }}"#;
        let s = import_claude_desktop(claude).unwrap();
        assert_eq!(s["fs"].command.as_deref(), Some("npx"));
        assert_eq!(s["fs"].env["A"], "b");
        assert_eq!(s["remote"].headers["X-Key"], "k");
        let olv = r#"{"mcp_servers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}}}"#;
        assert_eq!(
            import_claude_desktop(olv).unwrap()["time"].args,
            ["mcp-server-time"]
        );
        assert!(matches!(
            import_claude_desktop("{}"),
            Err(ImportError::NoServers)
        ));
        let both = r#"{"mcpServers": {"x": {"command": "a", "url": "http://b"}}}"#;
        assert!(
            matches!(import_claude_desktop(both), Err(ImportError::Invalid(m)) if m.contains('x'))
        );
    }
}
