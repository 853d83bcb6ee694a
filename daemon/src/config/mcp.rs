//! The `mcp:` section of `conf.yaml`: which MCP servers to run and how far to trust them.
//! Plain data with its validation; `crate::mcp` runs what it describes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
use vtuber_shared::ToolPolicy;

/// `mcp:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// Tool-call rounds per turn before the LLM must answer in words.
    pub max_rounds: u32,
    /// Longest a single tool call may run (servers may override).
    pub call_timeout_secs: u64,
    /// How long an `ask` tool waits for a person before it counts as denied.
    pub approval_timeout_secs: u64,
    /// A file of `KEY=VALUE` lines readable only by its owner (mode 0600), for `secret:NAME`.
    pub secrets_file: Option<PathBuf>,
    #[serde(deserialize_with = "validated_servers")]
    pub servers: BTreeMap<String, ServerConfig>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            max_rounds: 5,
            call_timeout_secs: 30,
            approval_timeout_secs: 60,
            secrets_file: None,
            servers: BTreeMap::new(),
        }
    }
}

/// One MCP server: `command` (stdio) or `url` (streamable HTTP), never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Extra environment; values may be `secret:NAME`. A stdio server gets only the
    /// base variables (see `crate::mcp::environment`), this map and `env_passthrough`,
    /// never the daemon's whole environment (which holds API keys).
    pub env: BTreeMap<String, String>,
    /// Names of the daemon's environment variables to hand on as they are.
    pub env_passthrough: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub url: Option<String>,
    /// Extra HTTP headers; values may be `secret:NAME`.
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    /// Per-call timeout overriding `mcp.call_timeout_secs`.
    pub timeout_secs: Option<u64>,
    pub policy: PolicyConfig,
    pub sandbox: SandboxConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            enabled: true,
            timeout_secs: None,
            policy: PolicyConfig::default(),
            sandbox: SandboxConfig::default(),
        }
    }
}

/// How a server is reached, as decided by [`ServerConfig::transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    Stdio { command: &'a str },
    Http { url: &'a str },
}

impl ServerConfig {
    /// Checks that exactly one of `command` and `url` is set; the message names the server.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        match (&self.command, &self.url) {
            (Some(c), None) if !c.trim().is_empty() => {}
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {}
            (None, Some(u)) => {
                return Err(format!(
                    "mcp server `{name}`: url `{u}` must start with http:// or https://"
                ));
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "mcp server `{name}`: set either `command` (stdio) or `url` (HTTP), not both"
                ));
            }
            _ => {
                return Err(format!(
                    "mcp server `{name}`: set `command` (a program speaking MCP on stdio) or `url` (a streamable HTTP endpoint)"
                ));
            }
        }
        if self.url.is_some()
            && (!self.args.is_empty()
                || !self.env.is_empty()
                || !self.env_passthrough.is_empty()
                || self.cwd.is_some())
        {
            return Err(format!(
                "mcp server `{name}`: `args`, `env`, `env_passthrough` and `cwd` apply to `command` servers only"
            ));
        }
        for var in self.env.keys().chain(&self.env_passthrough) {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(format!(
                    "mcp server `{name}`: `{var}` is not an environment variable name (no `=`, not empty)"
                ));
            }
        }
        if self.command.is_some() && !self.headers.is_empty() {
            return Err(format!(
                "mcp server `{name}`: `headers` apply to `url` servers only"
            ));
        }
        if !valid_server_name(name) {
            return Err(format!(
                "mcp server name `{name}`: use letters, digits, `_` and `-` only"
            ));
        }
        for glob in self.policy.tools.keys() {
            if let Err(e) = globset::Glob::new(glob) {
                return Err(format!("mcp server `{name}`: policy pattern `{glob}`: {e}"));
            }
        }
        Ok(())
    }

    /// The transport; call [`Self::validate`] first (an invalid entry reads as stdio "").
    pub fn transport(&self) -> Transport<'_> {
        match (&self.command, &self.url) {
            (_, Some(url)) if self.command.is_none() => Transport::Http { url },
            (Some(command), _) => Transport::Stdio { command },
            _ => Transport::Stdio { command: "" },
        }
    }
}

fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `policy:` of one server. See [`crate::mcp::policy`] for how a tool's policy is chosen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unset: follow the tool's annotations.
    pub default: Option<ToolPolicy>,
    /// Tool-name glob → policy.
    pub tools: BTreeMap<String, ToolPolicy>,
}

/// `sandbox:` of one stdio server (Landlock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    pub enabled: bool,
    /// Folders (or files) the server may read.
    pub read: Vec<PathBuf>,
    /// Folders (or files) the server may read and write.
    pub write: Vec<PathBuf>,
    /// `false` denies TCP bind and connect (needs Landlock ABI 4, Linux 6.7).
    pub network: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            read: Vec::new(),
            write: Vec::new(),
            network: true,
        }
    }
}

/// Deserializes `servers` and rejects bad entries with the server's name in the message.
fn validated_servers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ServerConfig>, D::Error> {
    let servers = BTreeMap::<String, ServerConfig>::deserialize(d)?;
    for (name, server) in &servers {
        server.validate(name).map_err(serde::de::Error::custom)?;
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, parse};

    #[test]
    fn the_documented_snippet_loads() {
        let text = "mcp:\n  servers:\n    time:\n      command: python3\n      args: [\"-m\", \"mcp_server_time\"]\n";
        let c: Config = parse(text, "c.yaml").unwrap();
        let time = &c.mcp.servers["time"];
        assert_eq!(time.transport(), Transport::Stdio { command: "python3" });
        assert_eq!(time.args, ["-m", "mcp_server_time"]);
        assert!(time.enabled && time.sandbox.enabled && time.sandbox.network);
        assert_eq!(c.mcp.max_rounds, 5);
    }

    #[test]
    fn env_names_are_checked() {
        let bad = "mcp:\n  servers:\n    s:\n      command: x\n      env_passthrough: [\"A=B\"]\n";
        let err = parse(bad, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("A=B") && err.contains("`s`"), "{err}");
        let http =
            "mcp:\n  servers:\n    w:\n      url: http://h/mcp\n      env_passthrough: [X]\n";
        let err = parse(http, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("env_passthrough"), "{err}");
    }

    #[test]
    fn command_and_url_are_exclusive() {
        let both = "mcp:\n  servers:\n    weird:\n      command: x\n      url: http://h/mcp\n";
        let err = parse(both, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("weird") && err.contains("not both"), "{err}");
        let neither = "mcp:\n  servers:\n    empty:\n      enabled: true\n";
        let err = parse(neither, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let http = "mcp:\n  servers:\n    web:\n      url: https://h/mcp\n      headers: {Authorization: \"secret:TOKEN\"}\n";
        let c = parse(http, "c.yaml").unwrap();
        assert_eq!(
            c.mcp.servers["web"].transport(),
            Transport::Http {
                url: "https://h/mcp"
            }
        );
        let bad_glob =
            "mcp:\n  servers:\n    g:\n      command: x\n      policy: {tools: {\"[\": deny}}\n";
        assert!(parse(bad_glob, "c.yaml").is_err());
    }
}
