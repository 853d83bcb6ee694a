//! Runs the configured MCP servers and performs tool calls for the turn pipeline.
//!
//! Each server has a supervisor task that connects, lists tools, watches for
//! `tools/list_changed`, and restarts a crashed server with capped exponential backoff.
//! Shared state sits behind short-lived `std` mutexes that are never held across an
//! `.await`, so concurrent calls never wait on each other.

// MCP roots are deprecated from protocol 2026-07-28 on, but the `initialize` handshake
// rmcp uses negotiates 2025-11-25 at most, where servers still ask for them.
#![allow(deprecated)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification,
    CancelledNotificationParam, ClientCapabilities, ClientRequest, ContentBlock, Implementation,
    InitializeRequestParams, ListRootsResult, NumberOrString, ProgressNotificationParam,
    ProgressToken, RequestId, Root, RootsCapabilities, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, Peer, RoleClient, ServiceError, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use vtuber_shared::{
    ApprovalDecision, ApprovalResolution, AuditEntry, ErrorBody, ErrorCode, Event, McpServerInfo,
    McpServerState, McpToolInfo, SandboxLevel, ToolOutcome, ToolPolicy,
};

use super::audit::{self, AuditRecord, Redactor};
use super::naming::{exposed_name, sanitise_schema};
use super::policy::{self, Hints};
use super::sandbox::{self, SandboxReport, SandboxSpec};
use super::secrets::{Secrets, is_secret_key, looks_like_literal_secret};
use super::{ToolCallRequest, ToolCallResult};
use crate::config::{McpConfig, ServerConfig, Transport};
use crate::events::EventBus;
use crate::llm::ToolSpec;
use crate::store::{Store, now_ms};

/// Longest tool result handed to the LLM.
const MAX_RESULT_BYTES: usize = 16 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Floor for connecting and listing tools (first runs of `npx`/`uvx` download packages).
const MIN_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Options that tests and benchmarks may change.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Program run as `PROGRAM --sandbox-exec ...` for sandboxed servers; default: this
    /// executable (`$VTUBERD_SANDBOX_LAUNCHER` overrides).
    pub launcher: Option<PathBuf>,
    /// The daemon's private files (socket cookie, history, web token): a sandbox grant
    /// that covers one is reported, since it lets the server drive the daemon.
    pub protected: Vec<PathBuf>,
}

/// Handle to all MCP servers; cheap to clone.
#[derive(Clone)]
pub struct McpManager {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: McpConfig,
    bus: EventBus,
    store: Store,
    secrets: Secrets,
    secrets_error: Option<String>,
    redactor: Redactor,
    launcher: Option<PathBuf>,
    protected: Vec<PathBuf>,
    slots: BTreeMap<String, Arc<Slot>>,
    index: Mutex<Index>,
    pending: Mutex<HashMap<u64, oneshot::Sender<ApprovalDecision>>>,
    session_allowed: Mutex<HashSet<(String, String)>>,
    next_request: AtomicU64,
    progress: Arc<ProgressRoutes>,
    shutdown: CancellationToken,
}

/// Progress token → call id, shared with the client handlers.
struct ProgressRoutes {
    bus: EventBus,
    routes: Mutex<HashMap<String, String>>,
}

struct Slot {
    name: String,
    cfg: ServerConfig,
    info: watch::Sender<McpServerInfo>,
    conn: Mutex<Option<Conn>>,
    task: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    scratch: Option<PathBuf>,
}

#[derive(Clone)]
struct Conn {
    peer: Peer<RoleClient>,
    tools: Vec<Arc<ToolEntry>>,
}

struct ToolEntry {
    name: String,
    description: String,
    schema: Value,
    hints: Hints,
    policy: ToolPolicy,
}

#[derive(Default)]
struct Index {
    /// In server order, then the server's tool order.
    tools: Vec<Indexed>,
}

#[derive(Clone)]
struct Indexed {
    exposed: String,
    server: String,
    tool: Arc<ToolEntry>,
}

impl McpManager {
    /// Starts every enabled server in the background and returns at once.
    pub fn start(cfg: McpConfig, bus: EventBus, store: Store) -> Self {
        Self::start_with(cfg, bus, store, StartOptions::default())
    }

    pub fn start_with(cfg: McpConfig, bus: EventBus, store: Store, opts: StartOptions) -> Self {
        install_crypto_provider();
        let (secrets, secrets_error) = match &cfg.secrets_file {
            None => (Secrets::default(), None),
            Some(path) => match Secrets::load(path) {
                Ok(s) => (s, None),
                Err(e) => {
                    tracing::error!(target: "mcp", error = %e, "secrets file not loaded");
                    bus.emit(Event::Error {
                        error: ErrorBody::new(ErrorCode::Config, e.to_string())
                            .with_hint("servers using `secret:` values will fail to start"),
                    });
                    (Secrets::default(), Some(e.to_string()))
                }
            },
        };
        let redactor = Redactor::new(secret_values(&cfg, &secrets));
        warn_literal_secrets(&cfg);
        let launcher = opts.launcher.or_else(|| {
            std::env::var_os("VTUBERD_SANDBOX_LAUNCHER")
                .map(PathBuf::from)
                .or_else(|| std::env::current_exe().ok())
        });
        let slots = cfg
            .servers
            .iter()
            .map(|(name, sc)| {
                let stdio = matches!(sc.transport(), Transport::Stdio { .. });
                let info = McpServerInfo {
                    name: name.clone(),
                    transport: if stdio { "stdio" } else { "http" }.into(),
                    state: if sc.enabled {
                        McpServerState::Starting
                    } else {
                        McpServerState::Disabled
                    },
                    tools: 0,
                    sandbox: SandboxLevel::Off,
                    sandbox_detail: String::new(),
                };
                let scratch = (stdio && sc.sandbox.enabled).then(|| {
                    std::env::temp_dir().join(format!("vtuberd-{}-mcp-{name}", std::process::id()))
                });
                let slot = Slot {
                    name: name.clone(),
                    cfg: sc.clone(),
                    info: watch::Sender::new(info),
                    conn: Mutex::new(None),
                    task: Mutex::new(None),
                    scratch,
                };
                (name.clone(), Arc::new(slot))
            })
            .collect();
        let inner = Arc::new(Inner {
            progress: Arc::new(ProgressRoutes {
                bus: bus.clone(),
                routes: Mutex::new(HashMap::new()),
            }),
            cfg,
            bus,
            store,
            secrets,
            secrets_error,
            redactor,
            launcher,
            protected: opts.protected,
            slots,
            index: Mutex::new(Index::default()),
            pending: Mutex::new(HashMap::new()),
            session_allowed: Mutex::new(HashSet::new()),
            next_request: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        let store = inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = audit::ensure_table(&store).await {
                tracing::error!(target: "mcp", error = %e, "tool-call audit table not created");
            }
        });
        for slot in inner.slots.values() {
            if slot.cfg.enabled {
                spawn_supervisor(&inner, slot);
            }
        }
        Self { inner }
    }

    /// Tools of ready servers, under their exposed names.
    pub fn tool_specs(&self) -> Vec<ToolSpec> {
        self.indexed()
            .into_iter()
            .filter(|t| t.tool.policy != ToolPolicy::Deny)
            .map(|t| ToolSpec {
                name: t.exposed,
                description: t.tool.description.clone(),
                parameters: t.tool.schema.clone(),
            })
            .collect()
    }

    pub fn servers(&self) -> Vec<McpServerInfo> {
        self.inner
            .slots
            .values()
            .map(|s| s.info.borrow().clone())
            .collect()
    }

    pub fn tools(&self, server: Option<&str>) -> Vec<McpToolInfo> {
        self.indexed()
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

    /// Live state of one server (state, tool count, sandbox level).
    pub fn watch_server(&self, name: &str) -> Option<watch::Receiver<McpServerInfo>> {
        self.inner.slots.get(name).map(|s| s.info.subscribe())
    }

    /// Waits until `name` is ready, failed or disabled, up to `timeout`. For tests,
    /// benchmarks and `restart`; `None` when unknown or still starting at the deadline.
    pub async fn wait_settled(&self, name: &str, timeout: Duration) -> Option<McpServerInfo> {
        let slot = self.inner.slots.get(name)?;
        let mut rx = slot.info.subscribe();
        let settled = |i: &McpServerInfo| {
            matches!(
                i.state,
                McpServerState::Ready | McpServerState::Failed { .. } | McpServerState::Disabled
            )
        };
        let r = tokio::time::timeout(timeout, rx.wait_for(settled)).await;
        match r {
            Ok(Ok(info)) => Some(info.clone()),
            _ => None,
        }
    }

    /// Stops and starts one server again (also a failed or disabled-by-crash one).
    pub async fn restart(&self, name: &str) -> Result<(), ErrorBody> {
        let Some(slot) = self.inner.slots.get(name) else {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no MCP server named `{name}`"),
            )
            .with_hint("list them with `vtuber mcp list`"));
        };
        if !slot.cfg.enabled {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("MCP server `{name}` is disabled"),
            )
            .with_hint("set `enabled: true` for it in conf.yaml"));
        }
        stop_supervisor(slot).await;
        spawn_supervisor(&self.inner, slot);
        let timeout = start_timeout(&self.inner.cfg, &slot.cfg) + Duration::from_secs(5);
        match self.wait_settled(name, timeout).await {
            Some(McpServerInfo {
                state: McpServerState::Ready,
                ..
            }) => Ok(()),
            Some(McpServerInfo {
                state: McpServerState::Failed { reason },
                ..
            }) => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("MCP server `{name}` failed to start: {reason}"),
            )
            .with_hint("see the daemon log for the server's stderr")),
            _ => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("MCP server `{name}` did not become ready in time"),
            )),
        }
    }

    pub async fn audit(
        &self,
        since_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, ErrorBody> {
        audit::query(&self.inner.store, since_ms, limit).await
    }

    /// Settles an approval request. `false` when the id is unknown or already settled.
    pub fn answer_approval(&self, request_id: u64, decision: ApprovalDecision) -> bool {
        let tx = lock(&self.inner.pending).remove(&request_id);
        match tx {
            Some(tx) => tx.send(decision).is_ok(),
            None => false,
        }
    }

    /// Stops every server (closing stdin, then SIGTERM, then kill) and cancels waits.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let stops = self.inner.slots.values().map(|s| stop_supervisor(s));
        let _ =
            tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(stops)).await;
        for slot in self.inner.slots.values() {
            if let Some(dir) = &slot.scratch {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// One tool call from start to end: lookup, arguments, policy, approval, the call
    /// itself with timeout and cancellation, events and the audit row.
    pub async fn call(&self, req: ToolCallRequest) -> ToolCallResult {
        let started = Instant::now();
        let inner = &self.inner;
        let found = self
            .indexed()
            .into_iter()
            .find(|t| t.exposed == req.exposed_name);
        let Some(found) = found else {
            let names: Vec<String> = self.indexed().into_iter().map(|t| t.exposed).collect();
            let content = format!(
                "There is no tool named `{}`. Available tools: {}.",
                req.exposed_name,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
            let arguments = match parse_arguments(&req.arguments) {
                Ok(a) => inner.redactor.redact(&Value::Object(a)).to_string(),
                Err(_) => inner.redactor.redact_text(&req.arguments),
            };
            return self
                .finish(
                    &req,
                    "",
                    &req.exposed_name,
                    arguments,
                    "auto",
                    ToolOutcome::Error,
                    content,
                    started,
                )
                .await;
        };
        let server = found.server.clone();
        let tool = found.tool.clone();
        let arguments = match parse_arguments(&req.arguments) {
            Ok(a) => a,
            Err(msg) => {
                let redacted_raw = inner.redactor.redact_text(&req.arguments);
                let content = format!(
                    "The arguments for `{}` were not a JSON object ({msg}); call it again with valid JSON arguments.",
                    req.exposed_name
                );
                return self
                    .finish(
                        &req,
                        &server,
                        &tool.name,
                        redacted_raw,
                        "auto",
                        ToolOutcome::Error,
                        content,
                        started,
                    )
                    .await;
            }
        };
        let redacted = inner.redactor.redact(&Value::Object(arguments.clone()));
        let redacted_text = redacted.to_string();

        let session_ok =
            lock(&inner.session_allowed).contains(&(server.clone(), tool.name.clone()));
        let decision = match (tool.policy, session_ok) {
            (ToolPolicy::Deny, _) => {
                let content = format!(
                    "The tool `{}` is not allowed by the user's policy and did not run; do not try it again.",
                    req.exposed_name
                );
                return self
                    .finish(
                        &req,
                        &server,
                        &tool.name,
                        redacted_text,
                        "denied",
                        ToolOutcome::Denied,
                        content,
                        started,
                    )
                    .await;
            }
            (ToolPolicy::Allow, _) | (ToolPolicy::Ask, true) => "auto",
            (ToolPolicy::Ask, false) => {
                let resolution = self.ask(&req, &server, &tool, redacted.clone()).await;
                let (decision, refusal) = match resolution {
                    ApprovalResolution::Approved => ("approved", None),
                    ApprovalResolution::ApprovedForSession => {
                        lock(&inner.session_allowed).insert((server.clone(), tool.name.clone()));
                        ("approved_for_session", None)
                    }
                    ApprovalResolution::Denied => (
                        "denied",
                        Some((
                            ToolOutcome::Denied,
                            format!(
                                "The user declined the call to `{}`; it did not run.",
                                req.exposed_name
                            ),
                        )),
                    ),
                    ApprovalResolution::TimedOut => (
                        "timed_out",
                        Some((
                            ToolOutcome::Denied,
                            format!(
                                "Nobody approved the call to `{}` within {} s, so it did not run.",
                                req.exposed_name, inner.cfg.approval_timeout_secs
                            ),
                        )),
                    ),
                    ApprovalResolution::Cancelled => (
                        "cancelled",
                        Some((
                            ToolOutcome::Cancelled,
                            format!(
                                "The call to `{}` was cancelled before it ran.",
                                req.exposed_name
                            ),
                        )),
                    ),
                };
                if let Some((outcome, content)) = refusal {
                    return self
                        .finish(
                            &req,
                            &server,
                            &tool.name,
                            redacted_text,
                            decision,
                            outcome,
                            content,
                            started,
                        )
                        .await;
                }
                decision
            }
        };

        let peer = self
            .inner
            .slots
            .get(&server)
            .and_then(|s| lock(&s.conn).as_ref().map(|c| c.peer.clone()));
        let Some(peer) = peer else {
            let content =
                format!("The tool server `{server}` is not running right now; try again later.");
            return self
                .finish(
                    &req,
                    &server,
                    &tool.name,
                    redacted_text,
                    decision,
                    ToolOutcome::Error,
                    content,
                    started,
                )
                .await;
        };
        inner.bus.emit(Event::ToolCallStarted {
            turn_id: req.turn_id,
            call_id: req.call_id.clone(),
            server: server.clone(),
            tool: tool.name.clone(),
            arguments: redacted,
        });
        let params = CallToolRequestParams::new(tool.name.clone()).with_arguments(arguments);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let timeout = call_timeout(&inner.cfg, &self.slot_cfg(&server));
        let result = match peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
        {
            Err(e) => Some(Err(e)),
            Ok(mut handle) => {
                // rmcp puts its own progress token on every request: route that one.
                let token = token_key(&handle.progress_token);
                lock(&inner.progress.routes).insert(token.clone(), req.call_id.clone());
                let mut guard = CancelOnDrop {
                    peer: Some(peer.clone()),
                    id: handle.id.clone(),
                };
                let stopped: Result<_, String> = tokio::select! {
                    r = tokio::time::timeout(timeout, &mut handle.rx) => match r {
                        Ok(r) => {
                            guard.disarm();
                            Ok(Some(r.unwrap_or(Err(ServiceError::TransportClosed))))
                        }
                        Err(_) => Ok(None),
                    },
                    _ = req.cancel.cancelled() => {
                        Err(format!("The call to `{}` was cancelled.", req.exposed_name))
                    }
                    _ = inner.shutdown.cancelled() => {
                        Err("The call was cancelled because the daemon is shutting down.".to_owned())
                    }
                };
                lock(&inner.progress.routes).remove(&token);
                // Sends `notifications/cancelled` unless the server answered.
                drop(guard);
                match stopped {
                    Ok(r) => r.map(|r| r.and_then(into_call_result)),
                    Err(content) => {
                        return self
                            .finish(
                                &req,
                                &server,
                                &tool.name,
                                redacted_text,
                                decision,
                                ToolOutcome::Cancelled,
                                content,
                                started,
                            )
                            .await;
                    }
                }
            }
        };
        let (outcome, content) = match result {
            None => (
                ToolOutcome::TimedOut,
                format!(
                    "The tool `{}` did not finish within {} s and was cancelled.",
                    req.exposed_name,
                    timeout.as_secs()
                ),
            ),
            Some(Ok(r)) => {
                let text = result_text(&r.content, r.structured_content.as_ref());
                if r.is_error == Some(true) {
                    (
                        ToolOutcome::Error,
                        format!("The tool reported an error: {text}"),
                    )
                } else {
                    (ToolOutcome::Ok, text)
                }
            }
            Some(Err(e)) => {
                let crashed = matches!(
                    e,
                    ServiceError::TransportClosed | ServiceError::TransportSend(_)
                ) || peer.is_transport_closed();
                if crashed {
                    (
                        ToolOutcome::Error,
                        format!(
                            "The tool server `{server}` crashed during the call; it is being restarted."
                        ),
                    )
                } else {
                    (ToolOutcome::Error, format!("The tool call failed: {e}"))
                }
            }
        };
        self.finish(
            &req,
            &server,
            &tool.name,
            redacted_text,
            decision,
            outcome,
            content,
            started,
        )
        .await
    }

    /// Emits `ToolCallEnded`, writes the audit row and builds the result.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        req: &ToolCallRequest,
        server: &str,
        tool: &str,
        arguments: String,
        decision: &'static str,
        outcome: ToolOutcome,
        content: String,
        started: Instant,
    ) -> ToolCallResult {
        let content = truncate(&content, MAX_RESULT_BYTES);
        let duration = started.elapsed();
        let summary = summarise(&self.inner.redactor.redact_text(&content), 200);
        self.inner.bus.emit(Event::ToolCallEnded {
            turn_id: req.turn_id,
            call_id: req.call_id.clone(),
            outcome,
            duration_ms: duration.as_millis() as u64,
            summary: summary.clone(),
        });
        let record = AuditRecord {
            time_ms: now_ms(),
            character: req.character.clone(),
            server: server.to_owned(),
            tool: tool.to_owned(),
            arguments,
            decision,
            duration_ms: duration.as_millis() as u64,
            outcome,
            detail: summary,
        };
        if let Err(e) = audit::insert(&self.inner.store, record).await {
            tracing::error!(target: "mcp", error = %e, "tool call not written to the audit log");
        }
        ToolCallResult {
            outcome,
            content,
            duration,
        }
    }

    async fn ask(
        &self,
        req: &ToolCallRequest,
        server: &str,
        tool: &ToolEntry,
        arguments: Value,
    ) -> ApprovalResolution {
        let inner = &self.inner;
        let request_id = inner.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        lock(&inner.pending).insert(request_id, tx);
        inner.bus.emit(Event::ApprovalRequested {
            request_id,
            turn_id: req.turn_id,
            call_id: req.call_id.clone(),
            server: server.to_owned(),
            tool: tool.name.clone(),
            description: tool.description.clone(),
            arguments,
            timeout_secs: inner.cfg.approval_timeout_secs,
        });
        let timeout = Duration::from_secs(inner.cfg.approval_timeout_secs);
        let resolution = tokio::select! {
            answer = rx => match answer {
                Ok(ApprovalDecision::AllowOnce) => ApprovalResolution::Approved,
                Ok(ApprovalDecision::AllowForSession) => ApprovalResolution::ApprovedForSession,
                Ok(ApprovalDecision::Deny) => ApprovalResolution::Denied,
                Err(_) => ApprovalResolution::Cancelled,
            },
            _ = tokio::time::sleep(timeout) => ApprovalResolution::TimedOut,
            _ = req.cancel.cancelled() => ApprovalResolution::Cancelled,
            _ = inner.shutdown.cancelled() => ApprovalResolution::Cancelled,
        };
        lock(&inner.pending).remove(&request_id);
        inner.bus.emit(Event::ApprovalResolved {
            request_id,
            resolution,
        });
        resolution
    }

    fn indexed(&self) -> Vec<Indexed> {
        lock(&self.inner.index).tools.clone()
    }

    fn slot_cfg(&self, server: &str) -> ServerConfig {
        self.inner
            .slots
            .get(server)
            .map(|s| s.cfg.clone())
            .unwrap_or_default()
    }
}

/// Tells the server to stop a request this side no longer waits for (timeout, barge-in,
/// or the caller dropping the call future).
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.peer = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let note = CancelledNotification::new(CancelledNotificationParam::new(
            Some(self.id.clone()),
            Some("cancelled by vtuberd".into()),
        ));
        rt.spawn(async move {
            if let Err(e) = peer.send_notification(note.into()).await {
                tracing::debug!(target: "mcp", error = %e, "notifications/cancelled not sent");
            }
        });
    }
}

fn token_key(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::String(s) => s.to_string(),
        NumberOrString::Number(n) => n.to_string(),
    }
}

fn into_call_result(r: ServerResult) -> Result<CallToolResult, ServiceError> {
    match r {
        ServerResult::CallToolResult(r) => Ok(r),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn install_crypto_provider() {
    // Fails only when one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn call_timeout(cfg: &McpConfig, server: &ServerConfig) -> Duration {
    Duration::from_secs(server.timeout_secs.unwrap_or(cfg.call_timeout_secs).max(1))
}

fn start_timeout(cfg: &McpConfig, server: &ServerConfig) -> Duration {
    call_timeout(cfg, server).max(MIN_START_TIMEOUT)
}

/// Values to redact: the secrets file, `secret:` references, header values, and env
/// values under secret-looking names. Other env values (paths, flags) are left alone so
/// arguments stay readable.
fn secret_values(cfg: &McpConfig, secrets: &Secrets) -> Vec<String> {
    let mut out: Vec<String> = secrets.values().map(str::to_owned).collect();
    for server in cfg.servers.values() {
        for (k, v) in &server.env {
            if (v.starts_with("secret:") || is_secret_key(k))
                && let Ok(v) = secrets.resolve(v)
            {
                out.push(v);
            }
        }
        for v in server.headers.values() {
            if let Ok(v) = secrets.resolve(v) {
                out.push(
                    v.strip_prefix("Bearer ")
                        .map(str::to_owned)
                        .unwrap_or(v.clone()),
                );
                out.push(v);
            }
        }
    }
    out
}

fn warn_literal_secrets(cfg: &McpConfig) {
    for (name, server) in &cfg.servers {
        for (key, value) in server.env.iter().chain(&server.headers) {
            // A value equal to an environment variable most likely came from `${VAR}`.
            let from_env = std::env::vars_os().any(|(_, v)| v == value.as_str());
            if looks_like_literal_secret(key, value) && !from_env {
                tracing::warn!(
                    target: "mcp",
                    server = %name,
                    key = %key,
                    "value looks like a secret written into conf.yaml; use `secret:NAME` with mcp.secrets_file instead"
                );
            }
        }
    }
}

fn parse_arguments(raw: &str) -> Result<serde_json::Map<String, Value>, String> {
    if raw.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(serde_json::Map::new()),
        Ok(other) => Err(format!("got {}", type_name(&other))),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text parts joined; other parts summarised in brackets.
fn result_text(content: &[ContentBlock], structured: Option<&Value>) -> String {
    let mut parts = Vec::new();
    for block in content {
        match block {
            ContentBlock::Text(t) => parts.push(t.text.clone()),
            other => {
                let v = serde_json::to_value(other).unwrap_or(Value::Null);
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("content");
                let mime = v
                    .get("mimeType")
                    .or_else(|| v.pointer("/resource/mimeType"))
                    .and_then(Value::as_str);
                let uri = v
                    .get("uri")
                    .or_else(|| v.pointer("/resource/uri"))
                    .and_then(Value::as_str);
                if let Some(text) = v.pointer("/resource/text").and_then(Value::as_str) {
                    parts.push(text.to_owned());
                    continue;
                }
                let mut s = format!("[{kind}");
                if let Some(m) = mime {
                    s.push_str(&format!(" {m}"));
                }
                if let Some(u) = uri {
                    s.push_str(&format!(" {u}"));
                }
                s.push(']');
                parts.push(s);
            }
        }
    }
    if parts.is_empty()
        && let Some(v) = structured
    {
        return v.to_string();
    }
    parts.join("\n")
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[truncated: {} more bytes]", &s[..end], s.len() - end)
}

/// One line, at most `max` characters.
fn summarise(s: &str, max: usize) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------------------
// Supervision

fn spawn_supervisor(inner: &Arc<Inner>, slot: &Arc<Slot>) {
    let stop = inner.shutdown.child_token();
    let handle = tokio::spawn(supervise(inner.clone(), slot.clone(), stop.clone()));
    *lock(&slot.task) = Some((stop, handle));
}

async fn stop_supervisor(slot: &Slot) {
    let task = lock(&slot.task).take();
    if let Some((stop, handle)) = task {
        stop.cancel();
        let _ = handle.await;
    }
}

fn set_state(inner: &Inner, slot: &Slot, state: McpServerState) {
    slot.info.send_modify(|i| i.state = state);
    emit_info(inner, slot);
}

fn emit_info(inner: &Inner, slot: &Slot) {
    let info = slot.info.borrow().clone();
    inner.bus.emit(Event::McpServerChanged { server: info });
}

/// Recomputes exposed names across all ready servers.
fn rebuild_index(inner: &Inner) {
    let mut index = lock(&inner.index);
    let mut taken = HashSet::new();
    let mut tools = Vec::new();
    for (name, slot) in &inner.slots {
        let conn = lock(&slot.conn).clone();
        if let Some(conn) = conn {
            for t in conn.tools {
                tools.push(Indexed {
                    exposed: exposed_name(name, &t.name, &mut taken),
                    server: name.clone(),
                    tool: t,
                });
            }
        }
    }
    index.tools = tools;
}

fn set_conn(inner: &Inner, slot: &Slot, conn: Option<Conn>) {
    let count = conn.as_ref().map_or(0, |c| c.tools.len());
    *lock(&slot.conn) = conn;
    rebuild_index(inner);
    slot.info.send_modify(|i| i.tools = count);
}

fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

async fn supervise(inner: Arc<Inner>, slot: Arc<Slot>, stop: CancellationToken) {
    let mut attempt = 0u32;
    let mut ever_ready = false;
    set_state(&inner, &slot, McpServerState::Starting);
    loop {
        let connected_at = Instant::now();
        let (relist_tx, mut relist_rx) = mpsc::unbounded_channel();
        let result = tokio::select! {
            r = connect(&inner, &slot, relist_tx) => r,
            _ = stop.cancelled() => return,
        };
        let reason = match result {
            Err(reason) if !ever_ready => {
                tracing::warn!(target: "mcp", server = %slot.name, %reason, "MCP server failed to start");
                set_state(&inner, &slot, McpServerState::Failed { reason });
                return;
            }
            Err(reason) => reason,
            Ok((running, tools)) => {
                ever_ready = true;
                let peer = running.peer().clone();
                tracing::info!(target: "mcp", server = %slot.name, tools = tools.len(), "MCP server ready");
                set_conn(
                    &inner,
                    &slot,
                    Some(Conn {
                        peer: peer.clone(),
                        tools,
                    }),
                );
                set_state(&inner, &slot, McpServerState::Ready);
                let closer = running.cancellation_token();
                let mut waiting = std::pin::pin!(running.waiting());
                let reason = loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            set_conn(&inner, &slot, None);
                            closer.cancel();
                            let _ = tokio::time::timeout(Duration::from_secs(8), waiting).await;
                            return;
                        }
                        r = &mut waiting => break match r {
                            Ok(q) => format!("connection closed ({q:?})"),
                            Err(e) => format!("connection task failed: {e}"),
                        },
                        Some(()) = relist_rx.recv() => {
                            match list_tools(&peer, &slot).await {
                                Ok(tools) => {
                                    tracing::info!(target: "mcp", server = %slot.name, tools = tools.len(), "tool list changed");
                                    set_conn(&inner, &slot, Some(Conn { peer: peer.clone(), tools }));
                                    emit_info(&inner, &slot);
                                }
                                Err(e) => tracing::warn!(target: "mcp", server = %slot.name, error = %e, "re-listing tools failed"),
                            }
                        }
                    }
                };
                set_conn(&inner, &slot, None);
                if connected_at.elapsed() >= HEALTHY_AFTER {
                    attempt = 0;
                }
                reason
            }
        };
        attempt += 1;
        let delay = backoff(attempt);
        tracing::warn!(target: "mcp", server = %slot.name, %reason, attempt, delay_ms = delay.as_millis() as u64, "MCP server stopped; restarting");
        set_state(
            &inner,
            &slot,
            McpServerState::Restarting {
                attempt,
                in_ms: delay.as_millis() as u64,
                reason,
            },
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
        set_state(&inner, &slot, McpServerState::Starting);
    }
}

async fn list_tools(
    peer: &Peer<RoleClient>,
    slot: &Slot,
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
                policy: policy::decide(&slot.cfg.policy, &name, hints),
                description: t.description.as_deref().unwrap_or_default().to_owned(),
                schema: sanitise_schema(&t.input_schema),
                hints,
                name,
            })
        })
        .collect())
}

type Running = RunningService<RoleClient, Handler>;

/// Connects, handshakes and lists tools. Errors are reasons for the state line.
async fn connect(
    inner: &Arc<Inner>,
    slot: &Arc<Slot>,
    relist: mpsc::UnboundedSender<()>,
) -> Result<(Running, Vec<Arc<ToolEntry>>), String> {
    let cfg = &slot.cfg;
    let timeout = start_timeout(&inner.cfg, cfg);
    let resolve = |v: &String| -> Result<String, String> {
        inner
            .secrets
            .resolve(v)
            .map_err(|e| match &inner.secrets_error {
                Some(load) => format!("{e} ({load})"),
                None => e.to_string(),
            })
    };
    let handler = Handler {
        server: slot.name.clone(),
        roots: roots(cfg),
        relist,
        progress: inner.progress.clone(),
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
            let launched = sandboxed || inner.launcher.is_some();
            let mut cmd = if launched {
                let launcher = inner
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
                let exposed = exposed_private_paths(cfg, &inner.protected);
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
            let tools = tokio::time::timeout(timeout, list_tools(running.peer(), slot))
                .await
                .map_err(|_| "tools/list timed out".to_owned())?
                .map_err(|e| format!("tools/list failed: {e}"))?;
            Ok((running, tools))
        }
        Transport::Http { url } => {
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let mut headers = HashMap::new();
            for (k, v) in &cfg.headers {
                let name = http::HeaderName::try_from(k.as_str())
                    .map_err(|e| format!("header `{k}`: {e}"))?;
                let value = http::HeaderValue::try_from(resolve(v)?)
                    .map_err(|e| format!("header `{k}`: {e}"))?;
                headers.insert(name, value);
            }
            let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
            let transport = StreamableHttpClientTransport::from_config(config);
            let running = tokio::time::timeout(timeout, handler.serve(transport))
                .await
                .map_err(|_| format!("no MCP handshake within {} s", timeout.as_secs()))?
                .map_err(|e| format!("MCP handshake with {url} failed: {e}"))?;
            let tools = tokio::time::timeout(timeout, list_tools(running.peer(), slot))
                .await
                .map_err(|_| "tools/list timed out".to_owned())?
                .map_err(|e| format!("tools/list failed: {e}"))?;
            Ok((running, tools))
        }
    }
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

/// The server's granted folders as MCP roots.
fn roots(cfg: &ServerConfig) -> Vec<Root> {
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

/// Receives what servers send on their own: progress and tool-list changes; answers
/// `roots/list`.
struct Handler {
    server: String,
    roots: Vec<Root>,
    relist: mpsc::UnboundedSender<()>,
    progress: Arc<ProgressRoutes>,
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
        let token = token_key(&params.progress_token);
        let call_id = lock(&self.progress.routes).get(&token).cloned();
        if let Some(call_id) = call_id {
            self.progress.bus.emit(Event::ToolCallProgress {
                call_id,
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(target: "mcp", server = %self.server, "tools/list_changed");
        let _ = self.relist.send(());
    }
}

/// Time from [`McpManager::start_with`] to the server being ready (handshake and tool
/// list done), for benchmarks comparing sandboxed and unsandboxed starts. The server is
/// stopped again before this returns.
pub async fn measure_start(
    cfg: ServerConfig,
    store: Store,
    opts: StartOptions,
) -> Result<Duration, String> {
    let mcp = McpConfig {
        servers: [("bench".to_owned(), cfg)].into_iter().collect(),
        ..McpConfig::default()
    };
    let started = Instant::now();
    let manager = McpManager::start_with(mcp, EventBus::new(64), store, opts);
    let info = manager.wait_settled("bench", MIN_START_TIMEOUT).await;
    let elapsed = started.elapsed();
    manager.shutdown().await;
    match info {
        Some(McpServerInfo {
            state: McpServerState::Ready,
            ..
        }) => Ok(elapsed),
        Some(other) => Err(format!("server did not start: {:?}", other.state)),
        None => Err("server did not start in time".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn arguments_and_results() {
        assert!(parse_arguments("").unwrap().is_empty());
        assert!(parse_arguments("null").unwrap().is_empty());
        assert_eq!(parse_arguments(r#"{"a":1}"#).unwrap()["a"], 1);
        assert!(parse_arguments("[1]").unwrap_err().contains("array"));
        assert!(
            parse_arguments("{oops")
                .unwrap_err()
                .contains("invalid JSON")
        );
        let blocks = vec![
            ContentBlock::text("one"),
            ContentBlock::image("AAAA", "image/png"),
        ];
        assert_eq!(result_text(&blocks, None), "one\n[image image/png]");
        assert_eq!(
            result_text(&[], Some(&serde_json::json!({"x": 1}))),
            r#"{"x":1}"#
        );
        let long = "é".repeat(20_000);
        let t = truncate(&long, MAX_RESULT_BYTES);
        assert!(t.len() < MAX_RESULT_BYTES + 64 && t.contains("[truncated"));
        assert_eq!(summarise("a\n b  c", 200), "a b c");
        assert_eq!(summarise(&"x".repeat(300), 200).chars().count(), 200);
    }
}
