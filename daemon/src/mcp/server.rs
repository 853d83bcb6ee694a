//! The configured servers' live state, shared by supervision and calls: one slot per
//! server (its settings, state line, connection and supervisor task) and what connecting
//! needs (secrets, the sandbox launcher, the daemon's private paths).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::{Peer, RoleClient};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{Event, McpServerInfo, McpServerState, SandboxLevel};

use super::lock;
use super::progress::ProgressRoutes;
use super::registry::{Registry, ToolEntry};
use super::secrets::Secrets;
use crate::config::{McpConfig, ServerConfig, Transport};
use crate::events::EventBus;

/// Floor for connecting and listing tools (first runs of `npx`/`uvx` download packages).
pub(super) const MIN_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Every configured server and what running them needs.
pub(super) struct Servers {
    pub cfg: McpConfig,
    pub bus: EventBus,
    pub secrets: Secrets,
    pub secrets_error: Option<String>,
    pub launcher: Option<PathBuf>,
    pub protected: Vec<PathBuf>,
    pub slots: BTreeMap<String, Arc<Slot>>,
    pub registry: Registry,
    pub progress: Arc<ProgressRoutes>,
    pub shutdown: CancellationToken,
}

/// One configured server.
pub(super) struct Slot {
    pub name: String,
    pub cfg: ServerConfig,
    pub info: watch::Sender<McpServerInfo>,
    pub conn: Mutex<Option<Conn>>,
    pub task: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    pub scratch: Option<PathBuf>,
}

/// A ready server's connection and tools.
#[derive(Clone)]
pub(super) struct Conn {
    pub peer: Peer<RoleClient>,
    pub tools: Vec<Arc<ToolEntry>>,
}

impl Slot {
    /// The slot of server `name`, starting (or disabled), not connected.
    pub fn new(name: &String, sc: &ServerConfig) -> Self {
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
        Slot {
            name: name.clone(),
            cfg: sc.clone(),
            info: watch::Sender::new(info),
            conn: Mutex::new(None),
            task: Mutex::new(None),
            scratch,
        }
    }
}

impl Servers {
    /// The connection to `server`, when it is ready.
    pub fn peer(&self, server: &str) -> Option<Peer<RoleClient>> {
        self.slots
            .get(server)
            .and_then(|s| lock(&s.conn).as_ref().map(|c| c.peer.clone()))
    }

    pub fn slot_cfg(&self, server: &str) -> ServerConfig {
        self.slots
            .get(server)
            .map(|s| s.cfg.clone())
            .unwrap_or_default()
    }

    pub fn set_state(&self, slot: &Slot, state: McpServerState) {
        slot.info.send_modify(|i| i.state = state);
        self.emit_info(slot);
    }

    pub fn emit_info(&self, slot: &Slot) {
        let info = slot.info.borrow().clone();
        self.bus.emit(Event::McpServerChanged { server: info });
    }

    /// Sets (or clears) a server's connection and re-registers every server's tools.
    pub fn set_conn(&self, slot: &Slot, conn: Option<Conn>) {
        let count = conn.as_ref().map_or(0, |c| c.tools.len());
        *lock(&slot.conn) = conn;
        self.registry
            .rebuild(self.slots.iter().filter_map(|(name, slot)| {
                let conn = lock(&slot.conn).clone();
                conn.map(|c| (name, c.tools))
            }));
        slot.info.send_modify(|i| i.tools = count);
    }
}

pub(super) fn call_timeout(cfg: &McpConfig, server: &ServerConfig) -> Duration {
    Duration::from_secs(server.timeout_secs.unwrap_or(cfg.call_timeout_secs).max(1))
}

pub(super) fn start_timeout(cfg: &McpConfig, server: &ServerConfig) -> Duration {
    call_timeout(cfg, server).max(MIN_START_TIMEOUT)
}
