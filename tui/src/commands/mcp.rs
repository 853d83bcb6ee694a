//! `vtuber mcp`: the daemon's MCP tool servers, their tools and the audit log, and
//! importing server definitions from other apps' config files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use vtuber_shared::{
    AuditEntry, McpServerInfo, McpServerState, McpToolInfo, Reply, Request, SandboxLevel,
    ToolOutcome, ToolPolicy, paths,
};

use super::print_json;
use crate::cli::McpCommand;
use crate::launcher::{self, Target};
use crate::time::format_ms;
use crate::tool_text::truncate;
use vtuber_shared::client::{Client, Hello, REQUEST_TIMEOUT};

async fn ask(client: &Client, request: Request) -> Result<Reply> {
    tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| {
            anyhow!(
                "vtuberd did not answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| anyhow!("{e}"))
}

fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow!("vtuberd sent an unexpected reply ({reply:?})")
}

pub async fn run(target: &Target, cmd: McpCommand) -> Result<ExitCode> {
    let conn = launcher::connect_existing(target, Hello::new("cli", false), 1).await?;
    let client = &conn.client;
    match cmd {
        McpCommand::List { json } => match ask(client, Request::ListMcpServers).await? {
            Reply::McpServers { servers } if json => print_json(&servers)?,
            Reply::McpServers { servers } => print!("{}", servers_table(&servers)),
            other => return Err(unexpected(&other)),
        },
        McpCommand::Tools { server, json } => {
            match ask(client, Request::ListMcpTools { server }).await? {
                Reply::McpTools { tools } if json => print_json(&tools)?,
                Reply::McpTools { tools } => print!("{}", tools_table(&tools)),
                other => return Err(unexpected(&other)),
            }
        }
        McpCommand::Restart { name } => {
            match ask(client, Request::RestartMcpServer { name }).await? {
                Reply::McpRestarting { name } => {
                    println!("restarting MCP server {name}; see `vtuber mcp list` for its state");
                }
                other => return Err(unexpected(&other)),
            }
        }
        McpCommand::Audit { since, limit, json } => {
            let request = Request::ToolAudit {
                since_ms: since,
                limit,
            };
            match ask(client, request).await? {
                Reply::ToolAudit { entries } if json => print_json(&entries)?,
                Reply::ToolAudit { entries } => print!("{}", audit_table(&entries)),
                other => return Err(unexpected(&other)),
            }
        }
        McpCommand::Import { .. } => unreachable!("handled without a daemon"),
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------- tables

/// Rows of cells as aligned columns; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn state_text(state: &McpServerState) -> String {
    match state {
        McpServerState::Starting => "starting".into(),
        McpServerState::Ready => "ready".into(),
        McpServerState::Failed { reason } => format!("failed: {reason}"),
        McpServerState::Restarting {
            attempt,
            in_ms,
            reason,
        } => format!(
            "restarting (attempt {attempt} in {:.1} s): {reason}",
            *in_ms as f64 / 1000.0
        ),
        McpServerState::Disabled => "disabled".into(),
    }
}

fn sandbox_text(level: SandboxLevel, detail: &str) -> String {
    let level = match level {
        SandboxLevel::Enforced => "enforced",
        SandboxLevel::Partial => "partial",
        SandboxLevel::Unsupported => "unsupported",
        SandboxLevel::Off => "off",
    };
    if detail.is_empty() {
        level.to_owned()
    } else {
        format!("{level} ({detail})")
    }
}

pub fn servers_table(servers: &[McpServerInfo]) -> String {
    if servers.is_empty() {
        return "no MCP servers configured (add them under `mcp: servers:` in the config, \
                or see `vtuber mcp import`)\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.transport.clone(),
                s.tools.to_string(),
                sandbox_text(s.sandbox, &s.sandbox_detail),
                state_text(&s.state),
            ]
        })
        .collect();
    table(&["NAME", "TRANSPORT", "TOOLS", "SANDBOX", "STATE"], &rows)
}

fn policy_text(policy: ToolPolicy) -> &'static str {
    match policy {
        ToolPolicy::Allow => "allow",
        ToolPolicy::Ask => "ask",
        ToolPolicy::Deny => "deny",
    }
}

pub fn tools_table(tools: &[McpToolInfo]) -> String {
    if tools.is_empty() {
        return "no tools offered (is a server still starting? see `vtuber mcp list`)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = tools
        .iter()
        .map(|t| {
            let flags = match (t.read_only, t.destructive) {
                (true, true) => "read-only,destructive",
                (true, false) => "read-only",
                (false, true) => "destructive",
                (false, false) => "-",
            };
            vec![
                t.exposed_name.clone(),
                policy_text(t.policy).to_owned(),
                flags.to_owned(),
                truncate(t.description.lines().next().unwrap_or("").trim(), 70),
            ]
        })
        .collect();
    table(&["TOOL", "POLICY", "FLAGS", "DESCRIPTION"], &rows)
}

fn outcome_word(outcome: ToolOutcome) -> &'static str {
    match outcome {
        ToolOutcome::Ok => "ok",
        ToolOutcome::Error => "error",
        ToolOutcome::Denied => "denied",
        ToolOutcome::TimedOut => "timed_out",
        ToolOutcome::Cancelled => "cancelled",
    }
}

pub fn audit_table(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "no tool calls recorded in that time\n".to_owned();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let detail = if e.detail.trim().is_empty() {
                e.arguments.clone()
            } else {
                format!("{} → {}", e.arguments, e.detail.trim())
            };
            vec![
                format_ms(e.time_ms),
                format!("{} · {}", e.server, e.tool),
                e.decision.clone(),
                outcome_word(e.outcome).to_owned(),
                format!("{} ms", e.duration_ms),
                truncate(&detail.replace(['\n', '\r'], " "), 80),
            ]
        })
        .collect();
    table(
        &["TIME", "TOOL", "DECISION", "OUTCOME", "DURATION", "DETAIL"],
        &rows,
    )
}

// ------------------------------------------------------------------------- import

/// The result of converting another app's server list.
#[derive(Debug, PartialEq)]
pub struct Imported {
    /// The `mcp:` block, ready to append to conf.yaml.
    pub yaml: String,
    pub servers: usize,
    /// Things the user must do or know (secrets to export, fields dropped).
    pub notes: Vec<String>,
}

/// `text` as a YAML scalar: JSON's double-quoted strings are valid YAML. vtuberd
/// expands `${NAME}` anywhere in its config and reads `$$` as `$`, so every `$` is
/// doubled to stay literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(&text.replace('$', "$$")).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A value for the YAML: kept as a `${NAME}` reference when it is one.
fn yaml_value(text: &str) -> String {
    if is_reference(text) {
        serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
    } else {
        quoted(text)
    }
}

/// A mapping key: bare when that is unambiguous, else quoted.
fn key(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !text.starts_with('-')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain { text.to_owned() } else { quoted(text) }
}

fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "cookie",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// An environment variable name: upper case, anything else an underscore.
fn env_name(parts: &[&str]) -> String {
    let mut name: String = parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// `"${NAME}"`, a reference vtuberd expands from its environment.
fn value_ref(name: &str) -> String {
    format!("\"${{{name}}}\"")
}

/// Whether a value already is a `${NAME}` reference (nothing secret to hide).
fn is_reference(value: &str) -> bool {
    value.starts_with("${") && value.ends_with('}')
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Converts a Claude Desktop style `{"mcpServers": {...}}` (or Open-LLM-VTuber's
/// `{"mcp_servers": {...}}`) file into vtuberd's `mcp: servers:` YAML. Secrets in
/// `env` and `headers` become `${NAME}` references and never reach the output.
pub fn import(json: &str) -> Result<Imported> {
    let root: Value = serde_json::from_str(json).context("the file is not valid JSON")?;
    let servers = ["mcpServers", "mcp_servers"]
        .iter()
        .find_map(|k| root.get(k))
        .or_else(|| root.get("mcp").and_then(|m| m.get("servers")))
        .ok_or_else(|| {
            anyhow!("no `mcpServers` (Claude Desktop) or `mcp_servers` (Open-LLM-VTuber) object")
        })?
        .as_object()
        .ok_or_else(|| anyhow!("`mcpServers` must be an object of servers by name"))?;
    if servers.is_empty() {
        bail!("the file lists no servers");
    }
    let mut notes = Vec::new();
    let mut yaml = String::from("mcp:\n  servers:\n");
    let mut used = std::collections::HashSet::new();
    for (original, def) in servers {
        let def = def
            .as_object()
            .ok_or_else(|| anyhow!("server `{original}` is not an object"))?;
        // vtuberd takes letters, digits, `_` and `-` in server names.
        let base: String = original
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "server".to_owned()
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 1;
        while !used.insert(name.clone()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        if name != *original {
            notes.push(format!(
                "server `{original}` is named `{name}` (names take letters, digits, _ and -)"
            ));
        }
        let name = &name;
        let _ = writeln!(yaml, "    {}:", key(name));
        let command = def.get("command").and_then(Value::as_str);
        let url = def
            .get("url")
            .or_else(|| def.get("serverUrl"))
            .and_then(Value::as_str);
        if command.is_some() && url.is_some() {
            notes.push(format!(
                "server `{name}` has both `command` and `url`; kept the command"
            ));
        }
        match (command, url) {
            (Some(command), _) => {
                let _ = writeln!(yaml, "      command: {}", yaml_value(command));
                if let Some(args) = def.get("args").and_then(Value::as_array)
                    && !args.is_empty()
                {
                    let args: Vec<String> = args
                        .iter()
                        .map(|a| yaml_value(&scalar(a).unwrap_or_else(|| a.to_string())))
                        .collect();
                    let _ = writeln!(yaml, "      args: [{}]", args.join(", "));
                }
                if let Some(env) = def.get("env").and_then(Value::as_object)
                    && !env.is_empty()
                {
                    yaml.push_str("      env:\n");
                    for (var, value) in env {
                        let value = scalar(value).unwrap_or_else(|| value.to_string());
                        let valid_name = !var.is_empty()
                            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !var.starts_with(|c: char| c.is_ascii_digit());
                        let text = if looks_secret(var) && !is_reference(&value) {
                            let name_ref = if valid_name {
                                var.clone()
                            } else {
                                env_name(&[name, var])
                            };
                            notes.push(format!(
                                "server `{name}`: export {name_ref} before starting vtuberd \
                                 (the value of {var} was not copied)"
                            ));
                            value_ref(&name_ref)
                        } else {
                            yaml_value(&value)
                        };
                        let _ = writeln!(yaml, "        {}: {text}", key(var));
                    }
                }
                if let Some(cwd) = def.get("cwd").and_then(Value::as_str) {
                    let _ = writeln!(yaml, "      cwd: {}", yaml_value(cwd));
                }
            }
            (None, Some(url)) => {
                let _ = writeln!(yaml, "      url: {}", yaml_value(url));
                if let Some(t) = def.get("type").or_else(|| def.get("transport"))
                    && t.as_str() == Some("sse")
                {
                    notes.push(format!(
                        "server `{name}` uses the old SSE transport; vtuberd speaks \
                         Streamable HTTP, check that the server offers it at this URL"
                    ));
                }
                if let Some(headers) = def.get("headers").and_then(Value::as_object)
                    && !headers.is_empty()
                {
                    yaml.push_str("      headers:\n");
                    for (header, value) in headers {
                        let value = scalar(value).unwrap_or_else(|| value.to_string());
                        let text = if looks_secret(header) && !is_reference(&value) {
                            let var = env_name(&[name, header]);
                            notes.push(format!(
                                "server `{name}`: export {var} with the full value of the \
                                 {header} header before starting vtuberd (it was not copied)"
                            ));
                            value_ref(&var)
                        } else {
                            yaml_value(&value)
                        };
                        let _ = writeln!(yaml, "        {}: {text}", quoted(header));
                    }
                }
            }
            (None, None) => bail!("server `{name}` has neither `command` nor `url`"),
        }
        let disabled = def.get("disabled").and_then(Value::as_bool) == Some(true)
            || def.get("enabled").and_then(Value::as_bool) == Some(false);
        let _ = writeln!(yaml, "      enabled: {}", !disabled);
        let known = [
            "command",
            "args",
            "env",
            "cwd",
            "url",
            "serverUrl",
            "headers",
            "type",
            "transport",
            "disabled",
            "enabled",
        ];
        let mut dropped: Vec<&str> = def
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k))
            .collect();
        dropped.sort_unstable();
        if !dropped.is_empty() {
            notes.push(format!(
                "server `{name}`: ignored {} (no equivalent in vtuberd's config)",
                dropped
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(Imported {
        yaml,
        servers: servers.len(),
        notes,
    })
}

/// Where `--write` puts the block: `--config` / `$VTUBER_CONFIG`, else the default.
fn config_file(target: &Target) -> PathBuf {
    target
        .config
        .clone()
        .unwrap_or_else(|| paths::config_dir().join("conf.yaml"))
}

/// Whether YAML text already has a top-level `mcp:` key.
fn has_mcp_section(text: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("mcp")
            .or_else(|| line.strip_prefix("\"mcp\""))
            .or_else(|| line.strip_prefix("'mcp'"))
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })
}

/// Appends `block` to the config at `path` (creating it), unless it has `mcp:`.
pub fn append_to_config(path: &Path, block: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if has_mcp_section(&existing) {
        bail!(
            "{} already has an `mcp:` section; merge the servers printed by \
             `vtuber mcp import FILE` (without --write) into it by hand",
            path.display()
        );
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str("# Imported by `vtuber mcp import`.\n");
    text.push_str(block);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub fn import_command(target: &Target, file: &Path, write: bool) -> Result<ExitCode> {
    let json =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let imported = import(&json).with_context(|| format!("cannot import {}", file.display()))?;
    if write {
        let path = config_file(target);
        append_to_config(&path, &imported.yaml)?;
        eprintln!(
            "added {} MCP server(s) to {}; restart vtuberd (`vtuber daemon restart`) to use them",
            imported.servers,
            path.display()
        );
    } else {
        print!("{}", imported.yaml);
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_desktop_servers_become_yaml_without_secrets() {
        let json = r#"{
          "mcpServers": {
            "filesystem": {
              "command": "npx",
              "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/My Files"],
              "env": {"GITHUB_TOKEN": "ghp_SECRET", "DEBUG": "1", "API_KEY": "${API_KEY}"}
            },
            "remote weather": {
              "url": "https://example.com/mcp",
              "headers": {"Authorization": "Bearer sk-SECRET", "X-Region": "eu"},
              "disabled": true,
              "alwaysAllow": []
            }
          }
        }"#;
        let imported = import(json).unwrap();
        assert_eq!(
            imported.yaml,
            r#"mcp:
  servers:
    filesystem:
      command: "npx"
      args: ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/My Files"]
      env:
        API_KEY: "${API_KEY}"
        DEBUG: "1"
        GITHUB_TOKEN: "${GITHUB_TOKEN}"
      enabled: true
    remote_weather:
      url: "https://example.com/mcp"
      headers:
        "Authorization": "${REMOTE_WEATHER_AUTHORIZATION}"
        "X-Region": "eu"
      enabled: false
"#
        );
        assert!(!imported.yaml.contains("SECRET"));
        assert_eq!(imported.servers, 2);
        let notes = imported.notes.join("\n");
        assert!(notes.contains("export GITHUB_TOKEN"), "{notes}");
        assert!(!notes.contains("export API_KEY"), "{notes}");
        assert!(notes.contains("REMOTE_WEATHER_AUTHORIZATION"), "{notes}");
        assert!(notes.contains("`alwaysAllow`"), "{notes}");
        assert!(notes.contains("is named `remote_weather`"), "{notes}");
    }

    #[test]
    fn open_llm_vtuber_key_and_quoting() {
        let json = r#"{"mcp_servers": {"time": {"command": "uvx", "args": ["mcp-server-time", "--tz", "a \"quoted\"\nline"], "cwd": "/tmp"}}}"#;
        let imported = import(json).unwrap();
        assert_eq!(
            imported.yaml,
            "mcp:\n  servers:\n    time:\n      command: \"uvx\"\n      args: [\"mcp-server-time\", \"--tz\", \"a \\\"quoted\\\"\\nline\"]\n      cwd: \"/tmp\"\n      enabled: true\n"
        );
        assert!(imported.notes.is_empty());
        assert!(import(r#"{"servers": {}}"#).is_err());
        assert!(import(r#"{"mcpServers": {"x": {"args": []}}}"#).is_err());
        assert!(import("not json").is_err());
        assert_eq!(key("yes"), "\"yes\"");
        let imported = import(
            r#"{"mcpServers": {"sh": {"command": "sh", "args": ["-c", "echo $HOME ${X}"]}}}"#,
        )
        .unwrap();
        assert!(
            imported
                .yaml
                .contains(r#"args: ["-c", "echo $$HOME $${X}"]"#),
            "{}",
            imported.yaml
        );
        assert_eq!(key("my-server_2"), "my-server_2");
    }

    /// The shapes the daemon's own (unused) importer took, now read here: the only
    /// importer is `vtuber mcp import`.
    #[test]
    fn claude_desktop_shapes_with_transport_keys_and_conflicts() {
        let claude = r#"{"mcpServers": {
            "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"A": "b"}},
            "remote": {"type": "http", "url": "https://example.invalid/mcp", "headers": {"X-Region": "eu"}}
        }}"#;
        let imported = import(claude).unwrap();
        assert_eq!(
            imported.yaml,
            r#"mcp:
  servers:
    fs:
      command: "npx"
      args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
      env:
        A: "b"
      enabled: true
    remote:
      url: "https://example.invalid/mcp"
      headers:
        "X-Region": "eu"
      enabled: true
"#
        );
        assert_eq!(imported.servers, 2);
        assert!(import("{}").is_err());
        // A server with both a command and a URL keeps the command and says so.
        let both = import(r#"{"mcpServers": {"x": {"command": "a", "url": "http://b"}}}"#).unwrap();
        assert!(both.yaml.contains("command: \"a\""), "{}", both.yaml);
        assert!(!both.yaml.contains("http://b"), "{}", both.yaml);
        assert!(
            both.notes.iter().any(|n| n.contains("`x` has both")),
            "{:?}",
            both.notes
        );
    }

    #[test]
    fn writing_refuses_a_config_with_an_mcp_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/conf.yaml");
        append_to_config(&path, "mcp:\n  servers: {}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# Imported by `vtuber mcp import`.\nmcp:\n  servers: {}\n"
        );
        let err = append_to_config(&path, "mcp:\n").unwrap_err();
        assert!(err.to_string().contains("merge"), "{err}");

        let other = dir.path().join("conf.yaml");
        std::fs::write(&other, "character: aria").unwrap();
        append_to_config(&other, "mcp:\n  servers: {}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&other).unwrap(),
            "character: aria\n\n# Imported by `vtuber mcp import`.\nmcp:\n  servers: {}\n"
        );
        assert!(has_mcp_section("a: 1\nmcp :\n"));
        assert!(!has_mcp_section("llm:\n  mcp: 1\n"));
    }

    /// The MCP replies are read as the daemon writes them, and a daemon without tool
    /// servers gives its error, not a hang.
    #[tokio::test]
    async fn mcp_replies_and_errors_are_decoded() {
        use vtuber_shared::PROTOCOL_VERSION;
        use vtuber_shared::client::fake_daemon::{self as fake, Peer};
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            assert_eq!(req.request, Request::ListMcpServers);
            peer.write_line(
                &format!(
                    r#"{{"kind":"response","id":{},"result":{{"type":"mcp_servers","servers":[
                {{"name":"time","transport":"stdio","state":"restarting","attempt":2,
                  "in_ms":1500,"reason":"exit 1","tools":0,"sandbox":"enforced"}}]}}}}"#,
                    req.id
                )
                .replace('\n', ""),
            )
            .await;
            let req = peer.read().await;
            assert_eq!(req.request, Request::RestartMcpServer { name: "x".into() });
            peer.write_line(&format!(
                r#"{{"kind":"response","id":{},"error":{{"code":"invalid_argument","message":"tool servers are not available in this daemon build","hint":"upgrade vtuberd"}}}}"#,
                req.id
            ))
            .await;
        });
        let conn = vtuber_shared::client::connect(&path, Hello::new("cli", false))
            .await
            .unwrap();
        match ask(&conn.client, Request::ListMcpServers).await.unwrap() {
            Reply::McpServers { servers } => {
                assert_eq!(
                    state_text(&servers[0].state),
                    "restarting (attempt 2 in 1.5 s): exit 1"
                );
            }
            other => panic!("{other:?}"),
        }
        let err = ask(&conn.client, Request::RestartMcpServer { name: "x".into() })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tool servers are not available in this daemon build (upgrade vtuberd)"
        );
        server.await.unwrap();
    }

    #[test]
    fn tables() {
        let servers = vec![
            McpServerInfo {
                name: "time".into(),
                transport: "stdio".into(),
                state: McpServerState::Ready,
                tools: 2,
                sandbox: SandboxLevel::Partial,
                sandbox_detail: "no network rules".into(),
            },
            McpServerInfo {
                name: "web".into(),
                transport: "http".into(),
                state: McpServerState::Failed {
                    reason: "connection refused".into(),
                },
                tools: 0,
                sandbox: SandboxLevel::Off,
                sandbox_detail: String::new(),
            },
        ];
        assert_eq!(
            servers_table(&servers),
            "\
NAME  TRANSPORT  TOOLS  SANDBOX                     STATE
time  stdio      2      partial (no network rules)  ready
web   http       0      off                         failed: connection refused
"
        );
        let tools = vec![McpToolInfo {
            server: "time".into(),
            name: "get_current_time".into(),
            exposed_name: "time__get_current_time".into(),
            description: "Current time in a timezone.\nMore.".into(),
            input_schema: serde_json::json!({}),
            read_only: true,
            destructive: false,
            policy: ToolPolicy::Allow,
        }];
        assert_eq!(
            tools_table(&tools),
            "\
TOOL                    POLICY  FLAGS      DESCRIPTION
time__get_current_time  allow   read-only  Current time in a timezone.
"
        );
        let entries = vec![AuditEntry {
            id: 1,
            time_ms: 0,
            character: "aria".into(),
            server: "time".into(),
            tool: "get_current_time".into(),
            arguments: r#"{"timezone":"UTC"}"#.into(),
            decision: "auto".into(),
            duration_ms: 12,
            outcome: ToolOutcome::Ok,
            detail: "12:00".into(),
        }];
        assert_eq!(
            audit_table(&entries),
            "\
TIME                     TOOL                     DECISION  OUTCOME  DURATION  DETAIL
1970-01-01 00:00:00 UTC  time · get_current_time  auto      ok       12 ms     {\"timezone\":\"UTC\"} → 12:00
"
        );
    }
}
