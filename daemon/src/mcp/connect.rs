//! Starting one server and handshaking with it: a stdio server through the sandbox
//! launcher with its minimal environment, or a streamable-HTTP one with its headers; then
//! the sandbox level it reached and its tool list.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot};
use vtuber_shared::SandboxLevel;

use super::client::{Elicit, Handler, roots};
use super::registry::{ToolEntry, list_tools};
use super::sandbox::{self, SandboxReport, SandboxSpec};
use super::server::{Servers, Slot, start_timeout};
use crate::config::{ServerConfig, Transport};

pub(super) type Running = RunningService<RoleClient, Handler>;

/// Connects, handshakes and lists tools. Errors are reasons for the state line.
pub(super) async fn connect(
    servers: &Arc<Servers>,
    slot: &Arc<Slot>,
    relist: mpsc::UnboundedSender<()>,
) -> Result<(Running, Vec<Arc<ToolEntry>>), String> {
    let cfg = &slot.cfg;
    let timeout = start_timeout(&servers.cfg(), cfg);
    let resolve = |v: &String| -> Result<String, String> {
        servers
            .secrets
            .resolve(v)
            .map_err(|e| match &servers.secrets_error {
                Some(load) => format!("{e} ({load})"),
                None => e.to_string(),
            })
    };
    let handler = Handler {
        server: slot.name.clone(),
        roots: roots(cfg),
        relist,
        progress: servers.progress.clone(),
        elicit: Elicit::Unsupported,
    };
    match cfg.transport() {
        Transport::Stdio { command } => {
            let mut own = Vec::new();
            for (k, v) in &cfg.env {
                own.push((k.clone(), resolve(v)?));
            }
            let env = super::environment::server_environment(
                std::env::vars_os(),
                &cfg.env_passthrough,
                own,
            );
            let sandboxed = cfg.sandbox.enabled;
            // Every server goes through the launcher, which drops capabilities; only a
            // sandboxed one is also confined by Landlock.
            let launched = sandboxed || servers.launcher.is_some();
            let mut cmd = if launched {
                let launcher = servers
                    .launcher
                    .clone()
                    .ok_or("sandbox: cannot find the vtuberd executable to launch it")?;
                let spec = SandboxSpec {
                    read: cfg.sandbox.read.clone(),
                    write: cfg.sandbox.write.clone(),
                    network: cfg.sandbox.network,
                    cwd: cfg.cwd.clone(),
                    scratch: slot.scratch.clone(),
                    confine: sandboxed,
                };
                let spec = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
                let mut c = tokio::process::Command::new(launcher);
                c.arg("--sandbox-exec").arg(spec).arg("--").arg(command);
                c
            } else {
                tokio::process::Command::new(command)
            };
            cmd.args(&cfg.args).env_clear().envs(env);
            if let Some(cwd) = &cfg.cwd {
                cmd.current_dir(cwd);
            }
            if let Some(dir) = &slot.scratch {
                create_private_dir(dir)
                    .map_err(|e| format!("sandbox scratch folder {}: {e}", dir.display()))?;
                cmd.env("TMPDIR", dir);
            }
            let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start `{command}`: {e}"))?;
            let (report_tx, report_rx) = oneshot::channel();
            if let Some(stderr) = stderr {
                tokio::spawn(read_stderr(slot.name.clone(), stderr, report_tx));
            }
            let served = tokio::time::timeout(timeout, handler.serve(transport)).await;
            let report = if launched {
                // The launcher reports before `exec`, so by now the line is in the pipe.
                tokio::time::timeout(Duration::from_secs(2), report_rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            } else {
                None
            };
            let running = match served {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return Err(match report {
                        Some(SandboxReport { level, detail }) if level == "error" => {
                            format!("sandbox: {detail}")
                        }
                        _ => format!("MCP handshake failed: {e}"),
                    });
                }
                Err(_) => return Err(format!("no MCP handshake within {} s", timeout.as_secs())),
            };
            let (level, mut detail) = match (sandboxed, report.and_then(|r| r.to_level())) {
                (false, Some((_, detail))) => (SandboxLevel::Off, detail),
                (false, None) => (SandboxLevel::Off, String::new()),
                (true, Some(l)) => l,
                (true, None) => (
                    SandboxLevel::Unsupported,
                    "the sandbox launcher did not report".into(),
                ),
            };
            let mut level = level;
            if sandboxed {
                let exposed = exposed_private_paths(cfg, &servers.protected);
                if !exposed.is_empty() {
                    tracing::warn!(target: "mcp", server = %slot.name, "{exposed}");
                    if level == SandboxLevel::Enforced {
                        level = SandboxLevel::Partial;
                        detail = exposed;
                    } else {
                        detail = format!("{detail}; {exposed}");
                    }
                }
            }
            slot.info.send_modify(|i| {
                i.sandbox = level;
                i.sandbox_detail = detail;
            });
            let tools = tokio::time::timeout(timeout, list_tools(running.peer(), &slot.cfg.policy))
                .await
                .map_err(|_| "tools/list timed out".to_owned())?
                .map_err(|e| format!("tools/list failed: {e}"))?;
            Ok((running, tools))
        }
        Transport::Http { url } => {
            let mut headers = HashMap::new();
            for (k, v) in &cfg.headers {
                let name = http::HeaderName::try_from(k.as_str())
                    .map_err(|e| format!("header `{k}`: {e}"))?;
                let value = http::HeaderValue::try_from(resolve(v)?)
                    .map_err(|e| format!("header `{k}`: {e}"))?;
                headers.insert(name, value);
            }
            let transport = http_transport(url, headers);
            let running = tokio::time::timeout(timeout, handler.serve(transport))
                .await
                .map_err(|_| format!("no MCP handshake within {} s", timeout.as_secs()))?
                .map_err(|e| format!("MCP handshake with {url} failed: {e}"))?;
            let tools = tokio::time::timeout(timeout, list_tools(running.peer(), &slot.cfg.policy))
                .await
                .map_err(|_| "tools/list timed out".to_owned())?
                .map_err(|e| format!("tools/list failed: {e}"))?;
            Ok((running, tools))
        }
    }
}

/// The streamable-HTTP transport to `url`, with `headers` on every request.
pub(super) fn http_transport(
    url: &str,
    headers: HashMap<http::HeaderName, http::HeaderValue>,
) -> rmcp::transport::StreamableHttpClientTransport<reqwest013::Client> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    // rmcp's reqwest is built without a rustls provider; any caller may be the first.
    super::install_crypto_provider();
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
    StreamableHttpClientTransport::from_config(config)
}

/// The same, with OAuth: `manager`'s token on every request, refreshed as needed.
pub(super) fn http_transport_with_auth(
    url: &str,
    headers: HashMap<http::HeaderName, http::HeaderValue>,
    manager: rmcp::transport::AuthorizationManager,
) -> rmcp::transport::StreamableHttpClientTransport<rmcp::transport::AuthClient<reqwest013::Client>>
{
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    super::install_crypto_provider();
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
    let client = rmcp::transport::AuthClient::new(reqwest013::Client::default(), manager);
    StreamableHttpClientTransport::with_client(client, config)
}

/// What a sandboxed server's grants expose of the daemon's private files (its cookie,
/// history, web token): Landlock cannot carve a folder out of a granted one, so a grant
/// of a parent lets the server read them. Empty when nothing is exposed.
fn exposed_private_paths(cfg: &ServerConfig, protected: &[std::path::PathBuf]) -> String {
    let grants = cfg
        .sandbox
        .read
        .iter()
        .chain(&cfg.sandbox.write)
        .chain(cfg.cwd.iter());
    let mut out = Vec::new();
    for grant in grants {
        let grant_c = std::fs::canonicalize(grant).unwrap_or_else(|_| grant.clone());
        for p in protected {
            let p_c = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            // A grant above a private path, or inside a private folder, opens it.
            if p_c.starts_with(&grant_c) || grant_c.starts_with(&p_c) {
                out.push(format!(
                    "the grant {} exposes the daemon's private {} (its socket cookie, history or web token): the server can drive the daemon; grant a narrower folder",
                    grant.display(),
                    p.display()
                ));
            }
        }
    }
    out.join("; ")
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

async fn read_stderr(
    server: String,
    stderr: tokio::process::ChildStderr,
    report: oneshot::Sender<SandboxReport>,
) {
    let mut report = Some(report);
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(r) = sandbox::parse_report(&line) {
            match r.level.as_str() {
                "error" => {
                    tracing::error!(target: "mcp", server = %server, detail = %r.detail, "sandbox not applied")
                }
                level => {
                    tracing::info!(target: "mcp", server = %server, level, detail = %r.detail, "sandbox")
                }
            }
            if let Some(tx) = report.take() {
                let _ = tx.send(r);
            }
            continue;
        }
        tracing::info!(target: "mcp", server = %server, "{line}");
    }
}
