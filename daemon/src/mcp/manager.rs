//! The MCP manager: the handle the rest of the daemon holds. It starts every configured
//! server under supervision and answers for them: tools, state, restarts, approvals,
//! the audit log and calls.
//!
//! Shared state sits behind short-lived `std` mutexes that are never held across an
//! `.await`, so concurrent calls never wait on each other.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{
    ApprovalDecision, AuditEntry, ErrorBody, ErrorCode, Event, McpServerInfo, McpServerState,
    McpToolInfo,
};

use super::approval::Approvals;
use super::audit::{self, Redactor};
use super::call::Caller;
use super::progress::ProgressRoutes;
use super::registry::Registry;
use super::secrets::{Secrets, is_secret_key, looks_like_literal_secret};
use super::server::{MIN_START_TIMEOUT, Servers, Slot, start_timeout};
use super::supervisor::{spawn_supervisor, stop_supervisor};
use super::{ToolCallRequest, ToolCallResult};
use crate::config::{McpConfig, ServerConfig};
use crate::events::EventBus;
use crate::llm::ToolSpec;
use crate::store::Store;

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
    servers: Arc<Servers>,
    store: Store,
    /// Rebuilt on reload, as new servers bring new secret values.
    redactor: std::sync::Mutex<Redactor>,
    approvals: Approvals,
}

/// What a reload changed among the tool servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Servers whose settings changed: stopped and started again.
    pub restarted: Vec<String>,
    /// `mcp.*` settings applied live (such as `call_timeout_secs`).
    pub settings: Vec<String>,
    /// `mcp.*` settings that take effect only after a restart of the daemon.
    pub need_restart: Vec<String>,
}

impl McpChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl McpManager {
    /// Starts every enabled server in the background and returns at once.
    pub fn start(cfg: McpConfig, bus: EventBus, store: Store) -> Self {
        Self::start_with(cfg, bus, store, StartOptions::default())
    }

    pub fn start_with(cfg: McpConfig, bus: EventBus, store: Store, opts: StartOptions) -> Self {
        super::install_crypto_provider();
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
        let slots = std::sync::Mutex::new(
            cfg.servers
                .iter()
                .map(|(name, sc)| (name.clone(), Arc::new(Slot::new(name, sc))))
                .collect(),
        );
        let shutdown = CancellationToken::new();
        let approvals = Approvals::new(bus.clone(), cfg.approval_timeout_secs, shutdown.clone());
        let servers = Arc::new(Servers {
            progress: Arc::new(ProgressRoutes::new(bus.clone())),
            cfg: std::sync::Mutex::new(cfg),
            bus,
            secrets,
            secrets_error,
            launcher,
            protected: opts.protected,
            slots,
            registry: Registry::default(),
            shutdown,
        });
        let inner = Arc::new(Inner {
            servers,
            store,
            redactor: std::sync::Mutex::new(redactor),
            approvals,
        });
        let store = inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = audit::ensure_table(&store).await {
                tracing::error!(target: "mcp", error = %e, "tool-call audit table not created");
            }
        });
        for slot in inner.servers.slots() {
            if slot.cfg.enabled {
                spawn_supervisor(&inner.servers, &slot);
            }
        }
        Self { inner }
    }

    /// Applies a new `mcp:` section: starts added servers, stops removed ones, restarts
    /// those whose settings changed and leaves the others running untouched.
    pub async fn reconfigure(&self, new: McpConfig) -> McpChanges {
        let servers = &self.inner.servers;
        let old = servers.cfg();
        let mut changes = McpChanges::default();
        for (key, differs) in [
            (
                "mcp.call_timeout_secs",
                old.call_timeout_secs != new.call_timeout_secs,
            ),
            ("mcp.max_rounds", old.max_rounds != new.max_rounds),
        ] {
            if differs {
                changes.settings.push(key.to_owned());
            }
        }
        for (key, differs) in [
            (
                "mcp.approval_timeout_secs",
                old.approval_timeout_secs != new.approval_timeout_secs,
            ),
            ("mcp.secrets_file", old.secrets_file != new.secrets_file),
        ] {
            if differs {
                changes.need_restart.push(key.to_owned());
            }
        }
        let mut stopping = Vec::new();
        let mut starting = Vec::new();
        {
            let mut slots = super::lock(&servers.slots);
            let names: Vec<String> = slots.keys().cloned().collect();
            for name in names {
                match new.servers.get(&name) {
                    None => {
                        if let Some(slot) = slots.remove(&name) {
                            changes.removed.push(name);
                            stopping.push(slot);
                        }
                    }
                    Some(sc) if slots.get(&name).is_some_and(|s| s.cfg != *sc) => {
                        let fresh = Arc::new(Slot::new(&name, sc));
                        if let Some(slot) = slots.insert(name.clone(), fresh.clone()) {
                            stopping.push(slot);
                        }
                        changes.restarted.push(name);
                        starting.push(fresh);
                    }
                    Some(_) => {}
                }
            }
            for (name, sc) in &new.servers {
                if !slots.contains_key(name) {
                    let fresh = Arc::new(Slot::new(name, sc));
                    slots.insert(name.clone(), fresh.clone());
                    changes.added.push(name.clone());
                    starting.push(fresh);
                }
            }
        }
        *super::lock(&servers.cfg) = McpConfig {
            // Kept until a restart: the approvals and the secrets were made with them.
            approval_timeout_secs: old.approval_timeout_secs,
            secrets_file: old.secrets_file.clone(),
            ..new
        };
        *super::lock(&self.inner.redactor) =
            Redactor::new(secret_values(&servers.cfg(), &servers.secrets));
        for slot in &stopping {
            stop_supervisor(slot).await;
            *super::lock(&slot.conn) = None;
            if let Some(dir) = &slot.scratch {
                let _ = std::fs::remove_dir_all(dir);
            }
            slot.info.send_modify(|i| {
                i.state = McpServerState::Disabled;
                i.tools = 0;
            });
        }
        servers.rebuild_registry();
        for slot in &starting {
            servers.emit_info(slot);
            if slot.cfg.enabled {
                spawn_supervisor(servers, slot);
            }
        }
        for name in &changes.removed {
            tracing::info!(target: "mcp", server = %name, "removed by a reload; stopped");
        }
        changes
    }

    /// Tools of ready servers, under their exposed names.
    pub fn tool_specs(&self) -> Vec<ToolSpec> {
        self.inner.servers.registry.tool_specs()
    }

    pub fn servers(&self) -> Vec<McpServerInfo> {
        self.inner
            .servers
            .slots()
            .iter()
            .map(|s| s.info.borrow().clone())
            .collect()
    }

    pub fn tools(&self, server: Option<&str>) -> Vec<McpToolInfo> {
        self.inner.servers.registry.tool_infos(server)
    }

    /// Live state of one server (state, tool count, sandbox level).
    pub fn watch_server(&self, name: &str) -> Option<watch::Receiver<McpServerInfo>> {
        self.inner.servers.slot(name).map(|s| s.info.subscribe())
    }

    /// Waits until `name` is ready, failed or disabled, up to `timeout`. For tests,
    /// benchmarks and `restart`; `None` when unknown or still starting at the deadline.
    pub async fn wait_settled(&self, name: &str, timeout: Duration) -> Option<McpServerInfo> {
        let slot = self.inner.servers.slot(name)?;
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
        let Some(slot) = self.inner.servers.slot(name) else {
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
        stop_supervisor(&slot).await;
        spawn_supervisor(&self.inner.servers, &slot);
        let timeout = start_timeout(&self.inner.servers.cfg(), &slot.cfg) + Duration::from_secs(5);
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
        self.inner.approvals.answer(request_id, decision)
    }

    /// Stops every server (closing stdin, then SIGTERM, then kill) and cancels waits.
    pub async fn shutdown(&self) {
        self.inner.servers.shutdown.cancel();
        let slots = self.inner.servers.slots();
        let stops = slots.iter().map(|s| stop_supervisor(s));
        let _ =
            tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(stops)).await;
        for slot in &slots {
            if let Some(dir) = &slot.scratch {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// One tool call from start to end: lookup, arguments, policy, approval, the call
    /// itself with timeout and cancellation, events and the audit row.
    pub async fn call(&self, req: ToolCallRequest) -> ToolCallResult {
        let inner = &self.inner;
        let redactor = super::lock(&inner.redactor).clone();
        Caller {
            servers: &inner.servers,
            store: &inner.store,
            redactor: &redactor,
            approvals: &inner.approvals,
        }
        .run(req)
        .await
    }
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
