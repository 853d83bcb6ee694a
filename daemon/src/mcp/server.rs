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

/// Every configured server and what running them needs. The settings and the set of
/// servers change on reload (`McpManager::reconfigure`).
pub(super) struct Servers {
    /// `mcp:` as last applied; read with [`Servers::cfg`].
    pub cfg: Mutex<McpConfig>,
    pub bus: EventBus,
    pub secrets: Secrets,
    pub secrets_error: Option<String>,
    pub launcher: Option<PathBuf>,
    pub protected: Vec<PathBuf>,
    /// One slot per configured server; read with [`Servers::slot`] and [`Servers::slots`].
    pub slots: Mutex<BTreeMap<String, Arc<Slot>>>,
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
    /// The settings as last applied.
    pub fn cfg(&self) -> McpConfig {
        lock(&self.cfg).clone()
    }

    pub fn slot(&self, server: &str) -> Option<Arc<Slot>> {
        lock(&self.slots).get(server).cloned()
    }

    /// Every slot, in name order.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        lock(&self.slots).values().cloned().collect()
    }

    /// The connection to `server`, when it is ready.
    pub fn peer(&self, server: &str) -> Option<Peer<RoleClient>> {
        self.slot(server)
            .and_then(|s| lock(&s.conn).as_ref().map(|c| c.peer.clone()))
    }

    pub fn slot_cfg(&self, server: &str) -> ServerConfig {
        self.slot(server).map(|s| s.cfg.clone()).unwrap_or_default()
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
        self.rebuild_registry();
        slot.info.send_modify(|i| i.tools = count);
    }

    /// Registers the tools of every connected server (and only those).
    pub fn rebuild_registry(&self) {
        let slots = self.slots();
        self.registry.rebuild(slots.iter().filter_map(|slot| {
            let conn = lock(&slot.conn).clone();
            conn.map(|c| (&slot.name, c.tools))
        }));
    }
}

pub(super) fn call_timeout(cfg: &McpConfig, server: &ServerConfig) -> Duration {
    Duration::from_secs(server.timeout_secs.unwrap_or(cfg.call_timeout_secs).max(1))
}

pub(super) fn start_timeout(cfg: &McpConfig, server: &ServerConfig) -> Duration {
    call_timeout(cfg, server).max(MIN_START_TIMEOUT)
}
