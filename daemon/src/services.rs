//! The daemon's services: everything the socket server and the web page serve from, made
//! once at start (in `daemon.rs`) and shared; the configuration inside changes on reload
//! (`reload.rs`); and the `status` they report.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use vtuber_shared::{ErrorBody, ErrorCode, Status};

use crate::clients::Clients;
use crate::config::Config;
use crate::conversation::Conversation;
use crate::events::EventBus;
use crate::logging::LogLevel;
use crate::mcp::McpManager;
use crate::service_manager::Notifier;
use crate::speech_out::SpeechOut;
use crate::store::Store;
use crate::voice_input::VoiceInput;

/// What the daemon runs on. The LLM provider is not here: the conversation owns it, as
/// it changes with the character.
pub struct Services {
    pub started: Instant,
    /// The configuration as it applies now; reloads change it.
    pub config: LiveConfig,
    /// The base configuration file read (`conf.yaml` or `--config`), if any.
    pub config_file: Option<PathBuf>,
    /// The service manager (systemd), told about reloads as well as readiness.
    pub notifier: Arc<Notifier>,
    pub socket: PathBuf,
    pub store: Store,
    pub bus: EventBus,
    pub conversation: Conversation,
    /// Speech output; `None` when speech is disabled.
    pub speech: Option<SpeechOut>,
    /// Voice input; `None` when speech is disabled.
    pub voice: Option<VoiceInput>,
    /// The MCP tool servers, when any are configured.
    pub mcp: Option<McpManager>,
    pub clients: Clients,
    pub web: WebAccess,
    /// Fired by a client's `shutdown` request; the main loop then stops the daemon.
    pub shutdown_requested: CancellationToken,
}

/// The configuration that applies now, how to read it again, and how the last reload
/// went. Only settings that changed live are in `get()`; those waiting for a restart are
/// listed in the reload state instead.
pub struct LiveConfig {
    current: RwLock<Arc<Config>>,
    /// `--config`, to read the same files again.
    pub explicit: Option<PathBuf>,
    /// `--profile` / `$VTUBER_PROFILE`.
    pub profile: Option<String>,
    pub log_level: LogLevel,
    state: Mutex<ReloadState>,
    /// One reload at a time (SIGHUP and requests may race).
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

/// What `status` says about the configuration files.
#[derive(Debug, Clone, Default)]
pub struct ReloadState {
    pub files: Vec<String>,
    pub error: Option<ErrorBody>,
    pub needs_restart: Vec<String>,
}

impl LiveConfig {
    pub fn new(config: Config, files: Vec<String>) -> Self {
        Self {
            current: RwLock::new(Arc::new(config)),
            explicit: None,
            profile: None,
            log_level: LogLevel::fixed(),
            state: Mutex::new(ReloadState {
                files,
                ..ReloadState::default()
            }),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn get(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, config: Config) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    pub fn state(&self) -> ReloadState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn update_state(&self, f: impl FnOnce(&mut ReloadState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The web page as `status` reports it.
#[derive(Debug, Clone, Default)]
pub struct WebAccess {
    /// The page's address (with `?token=` when one is needed): a secret, for the local
    /// socket only.
    pub url: Option<String>,
    /// `web.auth` of the running web server: `token` or `none`.
    pub auth: Option<String>,
    /// Why the web server is not running, when it failed to start.
    pub error: Option<String>,
    /// What the page last said about showing the character's model.
    pub avatar: AvatarReport,
}

/// The page's last word on the character's model (`avatar-status`): why it could not be
/// shown, or nothing once one was. Shared by the web sessions and `status`.
#[derive(Debug, Clone, Default)]
pub struct AvatarReport(Arc<Mutex<Option<String>>>);

impl AvatarReport {
    /// Longest message kept: it comes from a client.
    const MAX_CHARS: usize = 600;

    /// Records a page's report on `model_url`: `error` is why it could not show it, `None`
    /// that it did (which clears an earlier problem).
    pub fn report(&self, model_url: &str, error: Option<&str>) {
        let text = error.map(|why| {
            let url: String = model_url.chars().take(200).collect();
            let why: String = why.chars().take(Self::MAX_CHARS).collect();
            if url.is_empty() {
                why
            } else {
                format!("{url}: {why}")
            }
        });
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    /// The problem last reported, if any.
    pub fn problem(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Services {
    pub fn status(&self) -> Status {
        let v = self.conversation.view();
        let reload = self.config.state();
        Status {
            state: v.state,
            character: v.character.id.clone(),
            llm: v.llm,
            model_load: v.model_load,
            clients: self.clients.count(),
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            pid: std::process::id(),
            conversation_id: v.conversation_id,
            socket: self.socket.display().to_string(),
            config_file: self.config_file.as_ref().map(|p| p.display().to_string()),
            last_error: v.last_error,
            voice: self.voice.as_ref().map(|voice| Box::new(voice.status())),
            web_url: self.web.url.clone(),
            web_auth: self.web.auth.clone(),
            web_error: self.web.error.clone(),
            avatar_error: self.web.avatar.problem(),
            config_files: reload.files,
            reload_error: reload.error,
            needs_restart: reload.needs_restart,
            cpu: Some(crate::cpu_plan::plan(&self.config.get())),
        }
    }

    /// Voice input, or why there is none.
    pub fn voice(&self) -> Result<&VoiceInput, ErrorBody> {
        self.voice.as_ref().ok_or_else(voice_disabled)
    }

    /// Speech output, or why there is none.
    pub fn speech(&self) -> Result<&SpeechOut, ErrorBody> {
        self.speech.as_ref().ok_or_else(voice_disabled)
    }

    /// The MCP servers, or why there are none.
    pub fn mcp(&self) -> Result<&McpManager, ErrorBody> {
        self.mcp.as_ref().ok_or_else(|| {
            ErrorBody::new(ErrorCode::NotFound, "no MCP servers are configured")
                .with_hint("add servers under `mcp.servers` in conf.yaml (see `vtuber mcp import`)")
        })
    }
}

fn voice_disabled() -> ErrorBody {
    ErrorBody::new(ErrorCode::Config, "voice is disabled on this daemon")
        .with_hint("set speech.enabled: true in conf.yaml and restart the daemon")
}
