//! The stage: the current character, its conversation, and the one turn in progress.
//!
//! A single actor task owns the mutable state and handles commands in order, so turns
//! never overlap: new input cancels the running turn and waits for it to store its
//! partial reply before the next begins. Each turn runs as its own task that streams the
//! LLM's deltas to the event bus. Read-mostly state (for `status`) is mirrored in
//! [`StageView`] so status requests never queue behind the actor.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vtuber_shared::framing::{json_chunks, json_str_len};
use vtuber_shared::{
    CharacterInfo, CutReason, DaemonState, ErrorBody, ErrorCode, Event, LlmInfo, ModelLoad,
    ReplyCut, Role, Status, TurnOutcome, Usage,
};

use crate::characters::{Character, Roster};
use crate::config::{Config, LlmConfig, ProviderKind, ReplyLimits};
use crate::events::EventBus;
use crate::llm::{
    ChatMessage, ChatRequest, FinishReason, LlmError, LlmEvent, SharedProvider, ToolCall,
    embedded::EmbeddedProvider, openai::OpenAiProvider,
};
use crate::store::Store;
use crate::tools::{self, ToolInvocation, ToolReply, ToolRunner};

/// File name of the default embedded model.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Most messages read back from history when building a prompt; the token budget
/// usually stops earlier.
const HISTORY_SCAN_LIMIT: usize = 200;

/// Largest piece of reply text in one `delta` event (JSON-escaped bytes). A provider may
/// hand over any amount at once (a non-streaming server, held-back JSON-mode text);
/// events stay far below the frame limit.
pub const DELTA_MAX_BYTES: usize = 64 * 1024;

/// Largest reply repeated in `turn_ended` (JSON-escaped bytes); a larger one is left out
/// (`text_omitted`), as clients already have it from the deltas.
pub const TURN_ENDED_TEXT_MAX_BYTES: usize = 1024 * 1024;

/// Tool calls read from one LLM reply; the index a server sends sizes a table, so it is
/// checked first.
const MAX_TOOL_CALLS: usize = 128;

/// Longest input `send_text` accepts: it is repeated in `turn_started`, which must fit a
/// frame, and no model's context holds more anyway.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Snapshot of what clients see in `status`, kept current by the actor.
#[derive(Debug, Clone)]
pub struct StageView {
    pub state: DaemonState,
    pub character: CharacterInfo,
    pub llm: LlmInfo,
    pub model_load: ModelLoad,
    pub conversation_id: Option<i64>,
    pub last_error: Option<ErrorBody>,
    /// The current character's voice.
    pub voice: crate::speech::Voice,
    /// Hands-free listening is on.
    pub listening: bool,
    /// Someone is speaking to the daemon right now.
    pub hearing: bool,
    /// The turn whose reply is still being spoken, if any.
    pub speaking_turn: Option<u64>,
}

/// What the daemon knows about itself, shared by the socket server.
pub struct DaemonInfo {
    pub started: Instant,
    pub socket: PathBuf,
    pub config_file: Option<PathBuf>,
    pub clients: std::sync::atomic::AtomicUsize,
    /// Fired by a client's `shutdown` request; the main loop then stops the daemon.
    pub shutdown_requested: CancellationToken,
    /// The MCP tool servers, when any are configured.
    pub mcp: Option<crate::mcp::McpManager>,
    /// Voice input and speech engines, once started.
    pub voice: std::sync::OnceLock<crate::voice::Voice>,
    /// The browser page's address (with `?token=` when one is needed), once the web
    /// server listens.
    pub web_url: std::sync::OnceLock<String>,
    /// `web.auth` of the running web server: `token` or `none`.
    pub web_auth: std::sync::OnceLock<String>,
    /// Why the web server is not running, when it failed to start.
    pub web_error: std::sync::OnceLock<String>,
}

enum Command {
    SendText {
        text: String,
        origin: String,
        reply: oneshot::Sender<Result<(u64, i64), ErrorBody>>,
    },
    Interrupt {
        reply: oneshot::Sender<Option<u64>>,
    },
    SwitchCharacter {
        name: String,
        reply: oneshot::Sender<Result<CharacterInfo, ErrorBody>>,
    },
    NewConversation {
        reply: oneshot::Sender<Result<i64, ErrorBody>>,
    },
    LoadConversation {
        id: i64,
        reply: oneshot::Sender<Result<i64, ErrorBody>>,
    },
    DeleteConversation {
        id: i64,
        reply: oneshot::Sender<Result<(), ErrorBody>>,
    },
    ListCharacters {
        reply: oneshot::Sender<(String, Vec<CharacterInfo>)>,
    },
    CharactersChanged,
    TurnDone {
        turn_id: u64,
    },
    ModelLoadChanged {
        generation: u64,
        load: ModelLoad,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    SpeechDone {
        turn_id: u64,
    },
    SetListening(bool),
    SetHearing(bool),
}

/// What the stage starts with.
pub struct StageSetup {
    pub config: Config,
    pub roster: Roster,
    /// Folder of user character files, watched for edits.
    pub character_dir: Option<PathBuf>,
    pub character: Character,
    /// Conversation to resume, if any.
    pub conversation: Option<i64>,
    /// Where tools come from (the MCP manager); `None` offers none.
    pub tools: Option<Arc<dyn ToolRunner>>,
    /// Tool-call rounds allowed per turn.
    pub max_tool_rounds: u32,
    /// Speech output; `None` for text only.
    pub speech: Option<crate::voice::SpeechOut>,
}

/// Cheap handle used by client sessions to drive the stage.
#[derive(Clone)]
pub struct Stage {
    tx: mpsc::Sender<Command>,
    view: Arc<Mutex<StageView>>,
    pub bus: EventBus,
    pub store: Store,
    pub info: Arc<DaemonInfo>,
}

fn stage_gone() -> ErrorBody {
    ErrorBody::new(ErrorCode::ShuttingDown, "the daemon is shutting down")
        .with_hint("start it again with `vtuber daemon start`")
}

impl Stage {
    /// Starts the actor. `character_dir` is watched for edits when it exists.
    pub fn start(setup: StageSetup, store: Store, bus: EventBus, info: Arc<DaemonInfo>) -> Self {
        let StageSetup {
            config,
            roster,
            character_dir,
            character: initial_character,
            conversation: initial_conversation,
            tools,
            max_tool_rounds,
            speech,
        } = setup;
        let (tx, rx) = mpsc::channel(256);
        let llm = initial_character.llm.apply(&config.llm);
        let provider = make_provider(&llm);
        let view = Arc::new(Mutex::new(StageView {
            state: DaemonState::Idle,
            character: initial_character.info(),
            llm: provider_info(&provider, &llm),
            model_load: provider_load(&provider),
            conversation_id: initial_conversation,
            last_error: None,
            voice: initial_character.voice.clone(),
            listening: false,
            hearing: false,
            speaking_turn: None,
        }));
        let stage = Self {
            tx: tx.clone(),
            view: view.clone(),
            bus: bus.clone(),
            store: store.clone(),
            info,
        };
        let actor = Actor {
            config,
            roster,
            character: initial_character,
            provider,
            provider_generation: 0,
            conversation: initial_conversation,
            running: None,
            next_turn: 1,
            tools,
            max_tool_rounds,
            speech,
            speaking: None,
            tx: tx.clone(),
            view,
            bus,
            store,
        };
        actor.refresh_state();
        actor.watch_model_load();
        if let Some(dir) = character_dir {
            spawn_character_watcher(dir, tx);
        }
        tokio::spawn(actor.run(rx));
        stage
    }

    pub fn view(&self) -> StageView {
        match self.view.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn status(&self) -> Status {
        let v = self.view();
        Status {
            state: v.state,
            character: v.character.id.clone(),
            llm: v.llm,
            model_load: v.model_load,
            clients: self.info.clients.load(std::sync::atomic::Ordering::Relaxed),
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.info.started.elapsed().as_secs_f64(),
            pid: std::process::id(),
            conversation_id: v.conversation_id,
            socket: self.info.socket.display().to_string(),
            config_file: self
                .info
                .config_file
                .as_ref()
                .map(|p| p.display().to_string()),
            last_error: v.last_error,
            voice: self.info.voice.get().map(|voice| Box::new(voice.status())),
            web_url: self.info.web_url.get().cloned(),
            web_auth: self.info.web_auth.get().cloned(),
            web_error: self.info.web_error.get().cloned(),
        }
    }

    /// Hands-free listening changed (for the state shown to clients).
    pub fn set_listening(&self, on: bool) {
        let _ = self.tx.try_send(Command::SetListening(on));
    }

    /// Someone started or stopped speaking to the daemon.
    pub fn set_hearing(&self, on: bool) {
        let _ = self.tx.try_send(Command::SetHearing(on));
    }

    /// Whether the character is thinking or speaking (what barge-in interrupts).
    pub fn is_busy(&self) -> bool {
        let v = self.view();
        matches!(v.state, DaemonState::Thinking | DaemonState::Speaking)
            || v.speaking_turn.is_some()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ErrorBody> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| stage_gone())?;
        rx.await.map_err(|_| stage_gone())
    }

    /// Starts a turn with `text`; returns (turn id, conversation id).
    pub async fn send_text(&self, text: String, origin: String) -> Result<(u64, i64), ErrorBody> {
        if text.trim().is_empty() {
            return Err(
                ErrorBody::new(ErrorCode::InvalidArgument, "the message is empty")
                    .with_hint("type something to say"),
            );
        }
        if json_str_len(&text) > MAX_INPUT_BYTES {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the message is {} bytes; the limit is {MAX_INPUT_BYTES}",
                    text.len()
                ),
            )
            .with_hint("send a shorter message"));
        }
        self.ask(|reply| Command::SendText {
            text,
            origin,
            reply,
        })
        .await?
    }

    pub async fn interrupt(&self) -> Result<Option<u64>, ErrorBody> {
        self.ask(|reply| Command::Interrupt { reply }).await
    }

    pub async fn switch_character(&self, name: String) -> Result<CharacterInfo, ErrorBody> {
        self.ask(|reply| Command::SwitchCharacter { name, reply })
            .await?
    }

    pub async fn new_conversation(&self) -> Result<i64, ErrorBody> {
        self.ask(|reply| Command::NewConversation { reply }).await?
    }

    pub async fn load_conversation(&self, id: i64) -> Result<i64, ErrorBody> {
        self.ask(|reply| Command::LoadConversation { id, reply })
            .await?
    }

    pub async fn delete_conversation(&self, id: i64) -> Result<(), ErrorBody> {
        self.ask(|reply| Command::DeleteConversation { id, reply })
            .await?
    }

    pub async fn characters(&self) -> Result<(String, Vec<CharacterInfo>), ErrorBody> {
        self.ask(|reply| Command::ListCharacters { reply }).await
    }

    /// Asks the main loop to stop the daemon (as SIGTERM does).
    pub fn request_shutdown(&self) {
        self.info.shutdown_requested.cancel();
    }

    /// Cancels the running turn, waits for it to store its partial reply, and stops the
    /// actor. Later commands fail with `shutting_down`.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}

/// Builds the provider a character's effective LLM settings call for.
pub fn make_provider(cfg: &LlmConfig) -> Result<SharedProvider, ErrorBody> {
    match cfg.provider {
        ProviderKind::Embedded => {
            let default = vtuber_shared::paths::models_dir().join(DEFAULT_MODEL_FILE);
            Ok(Arc::new(EmbeddedProvider::new(cfg, default)))
        }
        ProviderKind::OpenaiCompatible => OpenAiProvider::new(cfg)
            .map(|p| Arc::new(p) as SharedProvider)
            .map_err(|e| e.to_body()),
    }
}

fn provider_info(p: &Result<SharedProvider, ErrorBody>, cfg: &LlmConfig) -> LlmInfo {
    match p {
        Ok(p) => p.info(),
        Err(_) => LlmInfo {
            backend: cfg.provider.as_str().to_owned(),
            model: cfg.model.clone().unwrap_or_else(|| "(none)".into()),
        },
    }
}

fn provider_load(p: &Result<SharedProvider, ErrorBody>) -> ModelLoad {
    match p {
        Ok(p) => p.load_state(),
        Err(e) => ModelLoad::Failed {
            reason: e.to_string(),
        },
    }
}

fn spawn_character_watcher(dir: PathBuf, tx: mpsc::Sender<Command>) {
    if !dir.is_dir() {
        tracing::debug!(dir = %dir.display(), "character folder does not exist; not watching");
        return;
    }
    match crate::characters::watch(&dir) {
        Ok((watcher, mut rx)) => {
            tokio::spawn(async move {
                let _watcher = watcher;
                while rx.recv().await.is_some() {
                    if tx.send(Command::CharactersChanged).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the character folder; edits need a restart")
        }
    }
}

struct RunningTurn {
    id: u64,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// A reply still being spoken (it may outlast its turn's text).
struct RunningSpeech {
    turn_id: u64,
    cancel: CancellationToken,
}

struct Actor {
    config: Config,
    roster: Roster,
    character: Character,
    provider: Result<SharedProvider, ErrorBody>,
    /// Bumped whenever the provider is replaced, so stale load notices are ignored.
    provider_generation: u64,
    conversation: Option<i64>,
    running: Option<RunningTurn>,
    next_turn: u64,
    tools: Option<Arc<dyn ToolRunner>>,
    max_tool_rounds: u32,
    speech: Option<crate::voice::SpeechOut>,
    speaking: Option<RunningSpeech>,
    tx: mpsc::Sender<Command>,
    view: Arc<Mutex<StageView>>,
    bus: EventBus,
    store: Store,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::SendText {
                    text,
                    origin,
                    reply,
                } => {
                    let r = self.start_turn(text, origin).await;
                    let _ = reply.send(r);
                }
                Command::Interrupt { reply } => {
                    let id = self.stop_turn().await;
                    let _ = reply.send(id);
                }
                Command::SwitchCharacter { name, reply } => {
                    let r = self.switch_character(&name).await;
                    let _ = reply.send(r);
                }
                Command::NewConversation { reply } => {
                    self.stop_turn().await;
                    let r = match self.store.create_conversation(&self.character.id).await {
                        Ok(c) => {
                            self.set_conversation(Some(c.id));
                            Ok(c.id)
                        }
                        Err(e) => Err(e.to_body()),
                    };
                    let _ = reply.send(r);
                }
                Command::LoadConversation { id, reply } => {
                    let r = self.load_conversation(id).await;
                    let _ = reply.send(r);
                }
                Command::DeleteConversation { id, reply } => {
                    if self.conversation == Some(id) {
                        self.stop_turn().await;
                    }
                    let r = self
                        .store
                        .delete_conversation(id)
                        .await
                        .map_err(|e| e.to_body());
                    if r.is_ok() {
                        let was_current = self.conversation == Some(id);
                        if was_current {
                            self.set_conversation(None);
                        }
                        self.bus
                            .emit(Event::ConversationDeleted { id, was_current });
                    }
                    let _ = reply.send(r);
                }
                Command::ListCharacters { reply } => {
                    let _ = reply.send((self.character.id.clone(), self.roster.infos()));
                }
                Command::CharactersChanged => self.reload_characters(),
                Command::TurnDone { turn_id } => {
                    if self.running.as_ref().is_some_and(|r| r.id == turn_id) {
                        self.running = None;
                    }
                    self.refresh_state();
                }
                Command::ModelLoadChanged { generation, load } => {
                    if generation == self.provider_generation {
                        self.update_view(|v| v.model_load = load.clone());
                        self.bus.emit(Event::ModelLoad { load: load.clone() });
                        if let ModelLoad::Failed { reason } = load {
                            let err = ErrorBody::new(ErrorCode::Model, reason).with_hint(
                                "run scripts/fetch-model.sh, or set llm.model_path in conf.yaml",
                            );
                            self.update_view(|v| v.last_error = Some(err.clone()));
                            self.bus.emit(Event::Error { error: err });
                        }
                        self.refresh_state();
                    }
                }
                Command::SpeechDone { turn_id } => {
                    if self.speaking.as_ref().is_some_and(|s| s.turn_id == turn_id) {
                        self.speaking = None;
                        self.update_view(|v| v.speaking_turn = None);
                    }
                    self.refresh_state();
                }
                Command::SetListening(on) => {
                    self.update_view(|v| v.listening = on);
                    self.refresh_state();
                }
                Command::SetHearing(on) => {
                    self.update_view(|v| v.hearing = on);
                    self.refresh_state();
                }
                Command::Shutdown { reply } => {
                    self.stop_turn().await;
                    self.bus.emit(Event::ShuttingDown);
                    let _ = reply.send(());
                    break;
                }
            }
        }
    }

    fn update_view(&self, f: impl FnOnce(&mut StageView)) {
        match self.view.lock() {
            Ok(mut v) => f(&mut v),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn set_state(&self, state: DaemonState) {
        let mut changed = false;
        self.update_view(|v| {
            changed = v.state != state;
            v.state = state;
        });
        if changed {
            self.bus.emit(Event::StateChanged { state });
        }
    }

    /// The resting state when no turn runs: speaking (a reply still playing), hearing,
    /// loading, error, listening or idle.
    fn refresh_state(&self) {
        if self.running.is_some() {
            return;
        }
        let view = match self.view.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let state = match view.model_load {
            _ if view.hearing => DaemonState::Hearing,
            _ if self.speaking.is_some() => DaemonState::Speaking,
            ModelLoad::Loading => DaemonState::Loading,
            ModelLoad::Failed { .. } => DaemonState::Error,
            _ if view.last_error.is_some() => DaemonState::Error,
            _ if view.listening => DaemonState::Listening,
            _ => DaemonState::Idle,
        };
        self.set_state(state);
    }

    fn set_conversation(&mut self, id: Option<i64>) {
        self.conversation = id;
        self.update_view(|v| v.conversation_id = id);
        if let Some(conversation_id) = id {
            self.bus
                .emit(Event::ConversationChanged { conversation_id });
        }
    }

    /// Polls the provider's load state until it settles, reporting each change.
    fn watch_model_load(&self) {
        let Ok(provider) = self.provider.clone() else {
            return;
        };
        let generation = self.provider_generation;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut last = provider.load_state();
            loop {
                let now = provider.load_state();
                if now != last {
                    last = now.clone();
                    if tx
                        .send(Command::ModelLoadChanged {
                            generation,
                            load: now.clone(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if !matches!(now, ModelLoad::Loading | ModelLoad::NotLoaded) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    fn effective_llm(&self, character: &Character) -> LlmConfig {
        character.llm.apply(&self.config.llm)
    }

    /// Switches provider when a character's effective LLM settings differ.
    fn use_character(&mut self, character: Character) {
        let old = self.effective_llm(&self.character);
        let new = self.effective_llm(&character);
        self.character = character;
        if old != new || self.provider.is_err() {
            self.provider = make_provider(&new);
            self.provider_generation += 1;
            let info = provider_info(&self.provider, &new);
            let load = provider_load(&self.provider);
            self.update_view(|v| {
                v.llm = info;
                v.model_load = load;
                v.last_error = None;
            });
            self.watch_model_load();
        }
        let info = self.character.info();
        let voice = self.character.voice.clone();
        self.update_view(|v| v.voice = voice);
        let llm = match self.view.lock() {
            Ok(v) => v.llm.clone(),
            Err(p) => p.into_inner().llm.clone(),
        };
        self.update_view(|v| v.character = info.clone());
        self.bus.emit(Event::CharacterChanged {
            character: info,
            llm,
        });
        self.refresh_state();
    }

    async fn switch_character(&mut self, name: &str) -> Result<CharacterInfo, ErrorBody> {
        let Some(character) = self.roster.find(name).cloned() else {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no character named `{name}`"),
            )
            .with_hint(format!(
                "known characters: {}",
                self.roster.ids().join(", ")
            )));
        };
        self.stop_turn().await;
        let latest = self
            .store
            .latest_conversation(&character.id)
            .await
            .map_err(|e| e.to_body())?;
        self.use_character(character);
        self.set_conversation(latest);
        Ok(self.character.info())
    }

    async fn load_conversation(&mut self, id: i64) -> Result<i64, ErrorBody> {
        let (summary, _) = self.store.conversation(id).await.map_err(|e| e.to_body())?;
        self.stop_turn().await;
        if summary.character != self.character.id {
            let Some(character) = self.roster.get(&summary.character).cloned() else {
                return Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!(
                        "conversation {id} belongs to character `{}`, which no longer exists",
                        summary.character
                    ),
                )
                .with_hint("restore its character file, or delete the conversation"));
            };
            self.use_character(character);
        }
        self.set_conversation(Some(id));
        Ok(id)
    }

    fn reload_characters(&mut self) {
        let dir = character_dir(&self.config);
        let (roster, problems) = Roster::load(dir.as_deref());
        for p in &problems {
            tracing::warn!(problem = %p, "character file skipped");
            self.bus.emit(Event::Error {
                error: ErrorBody::new(ErrorCode::Config, p.to_string())
                    .with_hint("fix the file; it is reloaded on save"),
            });
        }
        self.roster = roster;
        self.bus.emit(Event::CharactersReloaded {
            characters: self.roster.infos(),
        });
        match self.roster.get(&self.character.id).cloned() {
            Some(updated) if updated != self.character => {
                tracing::info!(character = %updated.id, "character file changed; applied");
                self.use_character(updated);
            }
            Some(_) => {}
            None => tracing::warn!(
                character = %self.character.id,
                "the current character's file is gone; keeping it until you switch"
            ),
        }
    }

    /// Cancels the running turn (and any speech still playing) and waits until the turn
    /// has stored its partial reply.
    async fn stop_turn(&mut self) -> Option<u64> {
        let speech = self.speaking.take().map(|s| {
            s.cancel.cancel();
            if let Some(player) = self.speech.as_ref().and_then(|s| s.player.as_ref()) {
                player.stop();
            }
            self.update_view(|v| v.speaking_turn = None);
            s.turn_id
        });
        let Some(turn) = self.running.take() else {
            self.refresh_state();
            return speech;
        };
        turn.cancel.cancel();
        if let Err(e) = turn.handle.await {
            tracing::error!(error = %e, "turn task failed");
        }
        self.refresh_state();
        Some(turn.id)
    }

    async fn start_turn(&mut self, text: String, origin: String) -> Result<(u64, i64), ErrorBody> {
        self.stop_turn().await;
        let provider = self.provider.clone()?;
        let conversation = match self.conversation {
            Some(id) => id,
            None => {
                let c = self
                    .store
                    .create_conversation(&self.character.id)
                    .await
                    .map_err(|e| e.to_body())?;
                self.set_conversation(Some(c.id));
                c.id
            }
        };
        self.store
            .add_message(conversation, Role::User, &text, false)
            .await
            .map_err(|e| e.to_body())?;
        let turn_id = self.next_turn;
        self.next_turn += 1;
        let cancel = CancellationToken::new();
        self.update_view(|v| v.last_error = None);
        self.bus.emit(Event::TurnStarted {
            turn_id,
            conversation_id: conversation,
            text,
            origin,
        });
        let llm = self.effective_llm(&self.character);
        let speaker = self.speech.clone().map(|out| {
            let speech_cancel = CancellationToken::new();
            let (speaker, handle) =
                crate::speech::speaker::Speaker::start(crate::speech::speaker::SpeakerSetup {
                    turn_id,
                    tts: out.tts.clone(),
                    voice: self.character.voice.clone(),
                    clean: self.character.voice.clean.clone(),
                    splitter: crate::speech::text::SplitterConfig {
                        first_min_chars: self.config.speech.tts.first_sentence_min_chars,
                        max_chars: self.config.speech.tts.max_sentence_chars,
                    },
                    emotions: self.character.avatar.emotions.clone(),
                    bus: self.bus.clone(),
                    player: out.player.clone(),
                    audio_to_clients: out.playback != crate::config::Playback::Local,
                    cancel: speech_cancel.clone(),
                });
            self.speaking = Some(RunningSpeech {
                turn_id,
                cancel: speech_cancel,
            });
            self.update_view(|v| v.speaking_turn = Some(turn_id));
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = handle.await;
                let _ = tx.send(Command::SpeechDone { turn_id }).await;
            });
            speaker
        });
        let turn = Turn {
            id: turn_id,
            conversation,
            system_prompt: self.character.system_prompt(),
            provider,
            limits: llm.reply_limits(),
            llm,
            token_budget: self.config.history.token_budget,
            cancel: cancel.clone(),
            bus: self.bus.clone(),
            store: self.store.clone(),
            view: self.view.clone(),
            tools: self.tools.clone(),
            max_tool_rounds: self.max_tool_rounds,
            character: self.character.id.clone(),
            speaker,
        };
        let tx = self.tx.clone();
        let handle = tokio::spawn(async move {
            turn.run().await;
            let _ = tx.send(Command::TurnDone { turn_id }).await;
        });
        self.running = Some(RunningTurn {
            id: turn_id,
            cancel,
            handle,
        });
        Ok((turn_id, conversation))
    }
}

/// Where user character files live: `character.dir`, else `$XDG_CONFIG_HOME/vtuber/characters`.
pub fn character_dir(config: &Config) -> Option<PathBuf> {
    Some(
        config
            .character
            .dir
            .clone()
            .unwrap_or_else(|| vtuber_shared::paths::config_dir().join("characters")),
    )
}

/// How one LLM request of a turn ended.
enum Step {
    Cancelled,
    /// A per-turn limit was reached; what came before it was emitted.
    Cut(Limit),
    Finished {
        /// The text of this request.
        text: String,
        calls: Vec<ToolCall>,
        /// Whether `text` already went out as deltas (else it was held back).
        emitted: bool,
    },
}

/// How a turn's generation ended, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Finished,
    Cancelled,
    Cut(Limit),
}

/// Which of the per-turn limits (`llm.max_reply_*`) a reply reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Tokens(u64),
    Bytes(u64),
    Time(Duration),
}

impl Limit {
    fn reason(self) -> CutReason {
        match self {
            Self::Tokens(_) | Self::Bytes(_) => CutReason::Length,
            Self::Time(_) => CutReason::Time,
        }
    }

    /// The note clients show: what happened and which setting to change.
    fn note(self) -> ReplyCut {
        let message = match self {
            Self::Tokens(n) => format!(
                "the reply reached the daemon's limit of {n} tokens and was cut there \
                 (raise llm.max_reply_tokens in conf.yaml for longer replies)"
            ),
            Self::Bytes(n) => format!(
                "the reply reached the daemon's limit of {n} bytes and was cut there \
                 (raise llm.max_reply_bytes in conf.yaml for longer replies)"
            ),
            Self::Time(d) => format!(
                "the reply took longer than the daemon's limit of {} s and was cut there \
                 (raise llm.max_reply_secs in conf.yaml, or check the LLM server)",
                d.as_secs()
            ),
        };
        ReplyCut {
            reason: self.reason(),
            message,
        }
    }
}

/// What a turn has received so far, against its [`ReplyLimits`]. Counted as the stream
/// arrives, whatever the provider and the server do with `max_tokens`.
struct Budget {
    limits: ReplyLimits,
    /// Streamed pieces (text and tool-call fragments), about one token each.
    tokens: u64,
    /// Bytes of text and tool-call arguments.
    bytes: u64,
    /// Receiving time left; tool calls do not spend it.
    time_left: Duration,
}

impl Budget {
    fn new(limits: ReplyLimits) -> Self {
        Self {
            limits,
            tokens: 0,
            bytes: 0,
            time_left: limits.time,
        }
    }

    /// Counts one streamed piece of `len` bytes. `Ok(())` when it fits whole; otherwise
    /// the limit reached and how many of its bytes still fit.
    fn take(&mut self, len: usize) -> Result<(), (Limit, usize)> {
        if self.tokens >= self.limits.tokens {
            return Err((Limit::Tokens(self.limits.tokens), 0));
        }
        let room = self.limits.bytes.saturating_sub(self.bytes);
        if len as u64 > room {
            self.bytes = self.limits.bytes;
            return Err((
                Limit::Bytes(self.limits.bytes),
                usize::try_from(room).unwrap_or(usize::MAX),
            ));
        }
        self.tokens += 1;
        self.bytes += len as u64;
        Ok(())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn floor_prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One reply being generated.
struct Turn {
    id: u64,
    conversation: i64,
    system_prompt: String,
    provider: SharedProvider,
    limits: ReplyLimits,
    llm: LlmConfig,
    token_budget: usize,
    cancel: CancellationToken,
    bus: EventBus,
    store: Store,
    view: Arc<Mutex<StageView>>,
    /// Tools on offer; `None` when no tool source is configured.
    tools: Option<Arc<dyn ToolRunner>>,
    max_tool_rounds: u32,
    /// Character id, for the audit log.
    character: String,
    /// Speaks the reply as it streams; dropped with the turn, which ends the speech input.
    speaker: Option<crate::speech::speaker::Speaker>,
}

impl Turn {
    fn set_state(&self, state: DaemonState) {
        let changed = match self.view.lock() {
            Ok(mut v) => std::mem::replace(&mut v.state, state) != state,
            Err(_) => false,
        };
        if changed {
            self.bus.emit(Event::StateChanged { state });
        }
    }

    async fn run(self) {
        self.set_state(DaemonState::Thinking);
        let mut reply = String::new();
        let mut usage: Option<Usage> = None;
        let mut budget = Budget::new(self.limits);
        let result = self.generate(&mut reply, &mut usage, &mut budget).await;
        let interrupted = matches!(result, Ok(Ended::Cancelled));
        let cut = match result {
            Ok(Ended::Cut(limit)) => {
                tracing::info!(
                    turn = self.id,
                    ?limit,
                    bytes = reply.len(),
                    "reply cut at a per-turn limit"
                );
                Some(limit.note())
            }
            _ => None,
        };
        let outcome = match result {
            Ok(Ended::Cancelled) => TurnOutcome::Interrupted,
            Ok(_) => TurnOutcome::Finished,
            Err(e) => TurnOutcome::Failed { error: e },
        };
        // Store before announcing the end: a client that saw `turn_ended` can rely on
        // the reply being durable.
        if !reply.is_empty() || matches!(outcome, TurnOutcome::Finished) {
            let partial = interrupted || matches!(outcome, TurnOutcome::Failed { .. });
            if let Err(e) = self
                .store
                .add_reply(
                    self.conversation,
                    Role::Assistant,
                    &reply,
                    partial,
                    cut.as_ref().map(|c| c.reason),
                )
                .await
            {
                tracing::error!(error = %e, "could not store the reply");
                self.bus.emit(Event::Error { error: e.to_body() });
            }
        }
        if let TurnOutcome::Failed { error } = &outcome {
            tracing::warn!(turn = self.id, error = %error, "turn failed");
            if let Ok(mut v) = self.view.lock() {
                v.last_error = Some(error.clone());
            }
        }
        // Clients have the reply from the deltas; only a size that surely fits a frame
        // is repeated here.
        let text_omitted = json_str_len(&reply) > TURN_ENDED_TEXT_MAX_BYTES;
        if text_omitted {
            reply = String::new();
        }
        self.bus.emit(Event::TurnEnded {
            turn_id: self.id,
            outcome,
            text: reply,
            usage,
            cut,
            text_omitted,
        });
    }

    async fn generate(
        &self,
        reply: &mut String,
        usage: &mut Option<Usage>,
        budget: &mut Budget,
    ) -> Result<Ended, ErrorBody> {
        let mut messages = self.prompt().await?;
        let specs = self.tools.as_ref().map(|t| t.specs()).unwrap_or_default();
        let native = self.provider.supports_native_tools();
        if !specs.is_empty()
            && !native
            && let Some(system) = messages.first_mut()
        {
            system.content.push_str(&tools::json_mode_prompt(&specs));
        }
        let mut rounds = 0u32;
        loop {
            // Past the round limit the model must answer without tools.
            let offer = !specs.is_empty() && rounds < self.max_tool_rounds;
            let request = ChatRequest {
                messages: messages.clone(),
                tools: if offer && native {
                    specs.clone()
                } else {
                    Vec::new()
                },
                temperature: self.llm.temperature,
                max_tokens: self.llm.max_tokens,
            };
            let step = self
                .stream_step(request, reply, usage, offer && !native, budget)
                .await?;
            let (text, mut calls, emitted) = match step {
                Step::Cancelled => return Ok(Ended::Cancelled),
                Step::Cut(limit) => return Ok(Ended::Cut(limit)),
                Step::Finished {
                    text,
                    calls,
                    emitted,
                } => (text, calls, emitted),
            };
            if offer
                && !native
                && let Some((name, arguments)) = tools::detect_json_call(&text, &specs)
            {
                calls.push(ToolCall {
                    id: format!("call_{}_{rounds}", self.id),
                    name,
                    arguments,
                });
            } else if !emitted && !text.is_empty() {
                // Held back in case it was a call; it was not: show it now.
                self.emit_text(reply, text.clone());
            }
            if calls.is_empty() || !offer {
                return Ok(Ended::Finished);
            }
            rounds += 1;
            self.set_state(DaemonState::Thinking);
            let Some(results) = self.run_tools(&calls).await else {
                return Ok(Ended::Cancelled);
            };
            if native {
                let mut assistant = ChatMessage::new(Role::Assistant, text);
                assistant.tool_calls = calls.clone();
                messages.push(assistant);
                for (call, result) in calls.iter().zip(results) {
                    let mut m = ChatMessage::new(Role::Tool, result.content);
                    m.tool_call_id = Some(call.id.clone());
                    messages.push(m);
                }
            } else {
                messages.push(ChatMessage::new(Role::Assistant, text));
                let mut note = String::new();
                for (call, result) in calls.iter().zip(results) {
                    note.push_str(&format!(
                        "Result of tool {} ({:?}): {}\n",
                        call.name, result.outcome, result.content
                    ));
                }
                note.push_str("Now answer the user using this result.");
                messages.push(ChatMessage::new(Role::User, note));
            }
        }
    }

    /// Streams one LLM request. Text is forwarded as it arrives, except in JSON tool
    /// mode (`hold_json`), where a reply that may be a tool call is held back.
    async fn stream_step(
        &self,
        request: ChatRequest,
        reply: &mut String,
        usage: &mut Option<Usage>,
        hold_json: bool,
        budget: &mut Budget,
    ) -> Result<Step, ErrorBody> {
        let started = tokio::time::Instant::now();
        let deadline = started + budget.time_left;
        let stream_cancel = self.cancel.child_token();
        // Dropping the receiver or cancelling stops the provider; both happen on a cut.
        let _stop_on_exit = stream_cancel.clone().drop_guard();
        let mut stream = self.provider.stream(request, stream_cancel);
        let mut text = String::new();
        let mut held = hold_json;
        let mut partial: Vec<(Option<String>, Option<String>, String)> = Vec::new();
        let result = loop {
            let item = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break Ok(Step::Cancelled),
                () = tokio::time::sleep_until(deadline) => {
                    break Ok(self.cut(Limit::Time(budget.limits.time), &mut text, held, reply));
                }
                item = stream.recv() => item,
            };
            match item {
                Some(Ok(LlmEvent::TextDelta(delta))) => {
                    if delta.is_empty() {
                        continue;
                    }
                    if let Err((limit, fits)) = budget.take(delta.len()) {
                        let kept = floor_prefix(&delta, fits).to_owned();
                        if !kept.is_empty() {
                            text.push_str(&kept);
                            if !held {
                                self.emit_text(reply, kept);
                            }
                        }
                        break Ok(self.cut(limit, &mut text, held, reply));
                    }
                    text.push_str(&delta);
                    if held {
                        if tools::may_be_json_call(&text) {
                            continue;
                        }
                        // Plain prose after all: release what was held.
                        held = false;
                        self.emit_text(reply, text.clone());
                    } else {
                        self.emit_text(reply, delta);
                    }
                }
                Some(Ok(LlmEvent::ToolCallDelta {
                    index,
                    id,
                    name,
                    arguments,
                })) => {
                    let len = arguments.len()
                        + id.as_ref().map_or(0, String::len)
                        + name.as_ref().map_or(0, String::len);
                    if let Err((limit, _)) = budget.take(len) {
                        break Ok(self.cut(limit, &mut text, held, reply));
                    }
                    if index >= MAX_TOOL_CALLS {
                        break Err(LlmError::Protocol(format!(
                            "the LLM server sent tool call number {index}; at most {MAX_TOOL_CALLS} are read per reply"
                        ))
                        .to_body());
                    }
                    if partial.len() <= index {
                        partial.resize(index + 1, (None, None, String::new()));
                    }
                    let slot = &mut partial[index];
                    if id.is_some() {
                        slot.0 = id;
                    }
                    if name.is_some() {
                        slot.1 = name;
                    }
                    slot.2.push_str(&arguments);
                }
                Some(Ok(LlmEvent::Usage(u))) => *usage = Some(u),
                Some(Ok(LlmEvent::Finish(FinishReason::Cancelled))) => break Ok(Step::Cancelled),
                Some(Ok(LlmEvent::Finish(_))) => {
                    let calls = partial
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, (id, name, arguments))| {
                            Some(ToolCall {
                                id: id.unwrap_or_else(|| format!("call_{}_{i}", self.id)),
                                name: name?,
                                arguments,
                            })
                        })
                        .collect();
                    break Ok(Step::Finished {
                        text,
                        calls,
                        emitted: !held,
                    });
                }
                Some(Err(e)) => break Err(e.to_body()),
                None => {
                    break if self.cancel.is_cancelled() {
                        Ok(Step::Cancelled)
                    } else {
                        Err(
                            LlmError::Protocol("the stream ended without a finish".into())
                                .to_body(),
                        )
                    };
                }
            }
        };
        budget.time_left = budget.time_left.saturating_sub(started.elapsed());
        result
    }

    /// Ends a step at a limit. Text held back in JSON tool mode is shown after all: it
    /// is the reply so far, and a cut tool call will not run.
    fn cut(&self, limit: Limit, text: &mut String, held: bool, reply: &mut String) -> Step {
        if held && !text.is_empty() {
            self.emit_text(reply, std::mem::take(text));
        }
        Step::Cut(limit)
    }

    /// Sends reply text out: to the speaker and, in pieces that always fit a frame, to
    /// clients as `delta` events.
    fn emit_text(&self, reply: &mut String, text: String) {
        if text.is_empty() {
            return;
        }
        if reply.is_empty() {
            self.set_state(DaemonState::Speaking);
        }
        reply.push_str(&text);
        if let Some(s) = &self.speaker {
            s.push(&text);
        }
        if json_str_len(&text) <= DELTA_MAX_BYTES {
            self.bus.emit(Event::Delta {
                turn_id: self.id,
                text,
            });
            return;
        }
        for piece in json_chunks(&text, DELTA_MAX_BYTES) {
            self.bus.emit(Event::Delta {
                turn_id: self.id,
                text: piece.to_owned(),
            });
        }
    }

    /// Runs one step's calls concurrently. `None` when the turn was cancelled.
    async fn run_tools(&self, calls: &[ToolCall]) -> Option<Vec<ToolReply>> {
        let runner = self.tools.as_ref()?;
        let futures = calls.iter().map(|c| {
            runner.call(ToolInvocation {
                turn_id: self.id,
                call_id: c.id.clone(),
                character: self.character.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
                cancel: self.cancel.child_token(),
            })
        });
        let results = futures::future::join_all(futures).await;
        if self.cancel.is_cancelled() {
            None
        } else {
            Some(results)
        }
    }

    /// Persona plus as much recent history as fits the budget, newest kept.
    async fn prompt(&self) -> Result<Vec<ChatMessage>, ErrorBody> {
        let history = self
            .store
            .recent_messages(self.conversation, HISTORY_SCAN_LIMIT)
            .await
            .map_err(|e| e.to_body())?;
        let system_tokens = self.provider.estimate_tokens(&self.system_prompt);
        let reserve = self.llm.max_tokens.unwrap_or(512) as usize;
        let room = self
            .provider
            .context_size()
            .saturating_sub(system_tokens + reserve + 16);
        let budget = self.token_budget.min(room);
        let mut window = Vec::new();
        let mut used = 0usize;
        for (i, m) in history.iter().rev().enumerate() {
            let cost = self.provider.estimate_tokens(&m.text) + 4;
            // The newest message (this turn's input) is always sent.
            if i > 0 && used + cost > budget {
                break;
            }
            used += cost;
            let text = if m.interrupted && m.role == Role::Assistant {
                crate::llm::interrupted_reply_text(&m.text)
            } else {
                m.text.clone()
            };
            window.push(ChatMessage::new(m.role, text));
        }
        // A window must not open with the assistant's side of an exchange it cut.
        while window.len() > 1 && window.last().is_some_and(|m| m.role != Role::User) {
            window.pop();
        }
        window.push(ChatMessage::new(Role::System, self.system_prompt.clone()));
        window.reverse();
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;
    use vtuber_e2e::mock_llm::{MockBehaviour, MockLlm, MockReply, MockToolCall};
    use vtuber_shared::ToolOutcome;

    use super::*;
    use crate::llm::{LlmProvider as _, ToolSpec};

    /// Tools `calc__add` (sums a and b) and `calc__slow` (300 ms), counting calls.
    struct FakeTools {
        calls: AtomicUsize,
    }

    impl ToolRunner for FakeTools {
        fn specs(&self) -> Vec<ToolSpec> {
            ["calc__add", "calc__slow"]
                .iter()
                .map(|n| ToolSpec {
                    name: (*n).into(),
                    description: "test tool".into(),
                    parameters: serde_json::json!({"type": "object"}),
                })
                .collect()
        }

        fn call(&self, inv: ToolInvocation) -> futures::future::BoxFuture<'static, ToolReply> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let started = Instant::now();
                let args: serde_json::Value =
                    serde_json::from_str(&inv.arguments).unwrap_or_default();
                let content = match inv.name.as_str() {
                    "calc__add" => (args["a"].as_i64().unwrap_or(0)
                        + args["b"].as_i64().unwrap_or(0))
                    .to_string(),
                    _ => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(300)) => "slept".into(),
                            _ = inv.cancel.cancelled() => "cancelled".into(),
                        }
                    }
                };
                ToolReply {
                    outcome: ToolOutcome::Ok,
                    content,
                    duration: started.elapsed(),
                }
            }
            .boxed()
        }
    }

    async fn stage_with(mock: &MockLlm, tools: Arc<FakeTools>) -> (Stage, tempfile::TempDir) {
        stage_configured(mock, tools, |_| {}).await
    }

    async fn stage_configured(
        mock: &MockLlm,
        tools: Arc<FakeTools>,
        tweak: impl FnOnce(&mut Config),
    ) -> (Stage, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.llm.provider = ProviderKind::OpenaiCompatible;
        config.llm.base_url = mock.base_url();
        config.llm.model = Some("mock-model".into());
        config.llm.retries = 0;
        tweak(&mut config);
        let (roster, _) = Roster::load(None);
        let character = roster.get("mao").unwrap().clone();
        let store = Store::open(&dir.path().join("h.sqlite3")).unwrap();
        let info = Arc::new(DaemonInfo {
            started: Instant::now(),
            socket: dir.path().join("s"),
            config_file: None,
            clients: Default::default(),
            shutdown_requested: CancellationToken::new(),
            mcp: None,
            voice: Default::default(),
            web_url: Default::default(),
            web_auth: Default::default(),
            web_error: Default::default(),
        });
        let stage = Stage::start(
            StageSetup {
                config,
                roster,
                character_dir: None,
                character,
                conversation: None,
                tools: Some(tools),
                max_tool_rounds: 3,
                speech: None,
            },
            store,
            EventBus::new(1024),
            info,
        );
        (stage, dir)
    }

    async fn finish(stage: &Stage, text: &str) -> (Vec<Event>, String) {
        let (mut rx, _) = stage.bus.subscribe();
        stage.send_text(text.into(), "test".into()).await.unwrap();
        let mut events = Vec::new();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap();
            let frame: vtuber_shared::ServerFrame =
                vtuber_shared::framing::decode(&ev.line).unwrap();
            let vtuber_shared::ServerFrame::Event { event, .. } = frame else {
                continue;
            };
            if let Event::TurnEnded { text, outcome, .. } = &event {
                assert_eq!(*outcome, TurnOutcome::Finished, "{events:?}");
                let text = text.clone();
                events.push(event);
                return (events, text);
            }
            events.push(event);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn native_tool_calls_run_and_results_go_back() {
        let mock = MockLlm::start(MockBehaviour::Script(vec![
            MockBehaviour::Reply(MockReply::text("Let me add.").with_tool_calls(vec![
                MockToolCall::new("c1", "calc__add", r#"{"a": 2, "b": 3}"#),
            ])),
            MockBehaviour::reply(" It is 5."),
        ]))
        .await
        .unwrap();
        let tools = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let (stage, _dir) = stage_with(&mock, tools.clone()).await;
        let (_, text) = finish(&stage, "2+3?").await;
        assert_eq!(text, "Let me add. It is 5.");
        assert_eq!(tools.calls.load(Ordering::SeqCst), 1);
        let second = mock.requests().pop().unwrap();
        let msgs = second.messages();
        let tool_msg = msgs
            .iter()
            .find(|m| m["role"] == "tool")
            .expect("tool result sent");
        assert_eq!(tool_msg["content"], "5");
        assert_eq!(tool_msg["tool_call_id"], "c1");
        let asked = msgs
            .iter()
            .find(|m| m["role"] == "assistant" && m.get("tool_calls").is_some())
            .expect("assistant tool_calls echoed");
        assert_eq!(asked["tool_calls"][0]["function"]["name"], "calc__add");
        // The tools were offered in the first request.
        let first = &mock.requests()[0];
        assert_eq!(first.body["tools"][0]["function"]["name"], "calc__add");
    }

    /// An interrupted reply reaches the next prompt as said, marked as interrupted (a
    /// small model otherwise carries on with it), and stays unmarked in the history.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_interrupted_reply_reaches_the_next_prompt_marked() {
        let mock = MockLlm::start(MockBehaviour::Script(vec![
            MockBehaviour::endless(200.0),
            MockBehaviour::reply("Paris."),
        ]))
        .await
        .unwrap();
        let tools = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let (stage, _dir) = stage_with(&mock, tools).await;
        let (mut rx, _) = stage.bus.subscribe();
        stage
            .send_text("tell me a story".into(), "test".into())
            .await
            .unwrap();
        // Interrupt once some of the reply has come.
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if let Ok(vtuber_shared::ServerFrame::Event {
                event: Event::Delta { .. },
                ..
            }) = vtuber_shared::framing::decode(&ev.line)
            {
                break;
            }
        }
        stage.interrupt().await.unwrap();
        let (_, text) = finish(&stage, "capital of France?").await;
        assert_eq!(text, "Paris.");
        let second = mock.requests().pop().unwrap();
        let msgs = second.messages();
        let said = msgs
            .iter()
            .find(|m| m["role"] == "assistant")
            .and_then(|m| m["content"].as_str())
            .expect("the interrupted reply is in the prompt")
            .to_owned();
        assert!(
            said.ends_with(&format!("... {}", crate::llm::INTERRUPTED_NOTE)),
            "{said}"
        );
        let partial = said
            .strip_suffix(&format!("... {}", crate::llm::INTERRUPTED_NOTE))
            .unwrap_or_default();
        assert!(!partial.is_empty());
        assert_eq!(msgs.last().unwrap()["content"], "capital of France?");
        let conv = stage.view.lock().unwrap().conversation_id.unwrap();
        let (_, stored) = stage.store.conversation(conv).await.unwrap();
        assert!(stored[1].interrupted);
        assert_eq!(stored[1].text.trim_end(), partial);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn calls_of_one_step_run_concurrently() {
        let calls = (0..3)
            .map(|i| MockToolCall::new(format!("s{i}"), "calc__slow", "{}"))
            .collect();
        let mock = MockLlm::start(MockBehaviour::Script(vec![
            MockBehaviour::Reply(MockReply::tool_calls(calls)),
            MockBehaviour::reply("Done."),
        ]))
        .await
        .unwrap();
        let tools = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let (stage, _dir) = stage_with(&mock, tools.clone()).await;
        let t = Instant::now();
        let (_, text) = finish(&stage, "slow x3").await;
        let took = t.elapsed();
        assert_eq!(text, "Done.");
        assert_eq!(tools.calls.load(Ordering::SeqCst), 3);
        assert!(took < Duration::from_millis(800), "took {took:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tool_rounds_are_bounded() {
        // The model asks for a tool every time; after 3 rounds it must answer without.
        let ask = MockBehaviour::Reply(MockReply::tool_calls(vec![MockToolCall::new(
            "c",
            "calc__add",
            "{}",
        )]));
        let mock = MockLlm::start(MockBehaviour::Script(vec![
            ask.clone(),
            ask.clone(),
            ask,
            MockBehaviour::reply("Giving up on tools."),
        ]))
        .await
        .unwrap();
        let tools = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let (stage, _dir) = stage_with(&mock, tools.clone()).await;
        let (_, text) = finish(&stage, "loop").await;
        assert_eq!(text, "Giving up on tools.");
        assert_eq!(tools.calls.load(Ordering::SeqCst), 3);
        let last = mock.requests().pop().unwrap();
        assert!(
            last.body
                .get("tools")
                .is_none_or(|t| t.as_array().is_none_or(Vec::is_empty))
        );
    }

    /// A provider without native tools that replies with scripted chunks, recording
    /// the prompts it got.
    struct ScriptedProvider {
        replies: Mutex<Vec<Vec<&'static str>>>,
        prompts: Mutex<Vec<Vec<ChatMessage>>>,
    }

    impl crate::llm::LlmProvider for ScriptedProvider {
        fn info(&self) -> LlmInfo {
            LlmInfo {
                backend: "scripted".into(),
                model: "s".into(),
            }
        }
        fn load_state(&self) -> ModelLoad {
            ModelLoad::Ready
        }
        fn stream(&self, req: ChatRequest, _cancel: CancellationToken) -> crate::llm::LlmStream {
            assert!(req.tools.is_empty(), "no native tools for this provider");
            self.prompts.lock().unwrap().push(req.messages);
            let chunks = {
                let mut r = self.replies.lock().unwrap();
                if r.is_empty() {
                    vec!["(no more)"]
                } else {
                    r.remove(0)
                }
            };
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                for c in chunks {
                    let _ = tx.send(Ok(LlmEvent::TextDelta(c.into()))).await;
                }
                let _ = tx.send(Ok(LlmEvent::Finish(FinishReason::Stop))).await;
            });
            rx
        }
        fn context_size(&self) -> usize {
            8192
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn json_mode_calls_tools_without_showing_the_json() {
        let provider = Arc::new(ScriptedProvider {
            replies: Mutex::new(vec![
                vec![
                    "```json\n{\"tool\": \"calc__add\",",
                    " \"arguments\": {\"a\": 20, \"b\": 22}}\n```",
                ],
                vec!["The sum", " is 42."],
            ]),
            prompts: Mutex::new(Vec::new()),
        });
        let tools: Arc<dyn ToolRunner> = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let bus = EventBus::new(256);
        let (mut rx, _) = bus.subscribe();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite3")).unwrap();
        let conv = store.create_conversation("mao").await.unwrap().id;
        store
            .add_message(conv, Role::User, "add 20 and 22", false)
            .await
            .unwrap();
        let (roster, _) = Roster::load(None);
        let turn = Turn {
            id: 1,
            conversation: conv,
            system_prompt: roster.get("mao").unwrap().system_prompt(),
            provider: provider.clone(),
            limits: LlmConfig::default().reply_limits(),
            llm: LlmConfig::default(),
            token_budget: 2048,
            cancel: CancellationToken::new(),
            bus: bus.clone(),
            store,
            view: Arc::new(Mutex::new(StageView {
                state: DaemonState::Idle,
                character: roster.get("mao").unwrap().info(),
                llm: provider.info(),
                model_load: ModelLoad::Ready,
                conversation_id: Some(conv),
                last_error: None,
                voice: Default::default(),
                listening: false,
                hearing: false,
                speaking_turn: None,
            })),
            tools: Some(tools),
            max_tool_rounds: 3,
            character: "mao".into(),
            speaker: None,
        };
        turn.run().await;
        let mut deltas = String::new();
        while let Ok(ev) = rx.try_recv() {
            let frame: vtuber_shared::ServerFrame =
                vtuber_shared::framing::decode(&ev.line).unwrap();
            if let vtuber_shared::ServerFrame::Event {
                event: Event::Delta { text, .. },
                ..
            } = frame
            {
                deltas.push_str(&text);
            }
        }
        assert_eq!(deltas, "The sum is 42.");
        let prompts = provider.prompts.lock().unwrap();
        assert!(
            prompts[0][0].content.contains("calc__add"),
            "tools described in the system prompt"
        );
        let last = prompts[1].last().unwrap();
        assert_eq!(last.role, Role::User);
        assert!(last.content.contains("42"), "{}", last.content);
    }

    #[test]
    fn budget_counts_pieces_and_bytes() {
        let mut b = Budget::new(ReplyLimits {
            tokens: 3,
            bytes: 10,
            time: Duration::from_secs(1),
        });
        assert_eq!(b.take(4), Ok(()));
        assert_eq!(b.take(4), Ok(()));
        // Only two of these five bytes fit.
        assert_eq!(b.take(5), Err((Limit::Bytes(10), 2)));
        let mut b = Budget::new(ReplyLimits {
            tokens: 2,
            bytes: 100,
            time: Duration::from_secs(1),
        });
        assert_eq!(b.take(1), Ok(()));
        assert_eq!(b.take(1), Ok(()));
        assert_eq!(b.take(1), Err((Limit::Tokens(2), 0)));
        assert_eq!(floor_prefix("aé", 2), "a");
        assert!(
            Limit::Time(Duration::from_secs(5))
                .note()
                .message
                .contains("llm.max_reply_secs")
        );
    }

    /// Runs one turn and returns its deltas joined, and its `turn_ended`.
    async fn turn_events(stage: &Stage, text: &str) -> (String, Event) {
        let (mut rx, _) = stage.bus.subscribe();
        stage.send_text(text.into(), "test".into()).await.unwrap();
        let mut deltas = String::new();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(ev.line.len() <= vtuber_shared::framing::MAX_FRAME_BYTES + 1);
            match &ev.event {
                Event::Delta { text, .. } => deltas.push_str(text),
                Event::TurnEnded { .. } => return (deltas, ev.event.clone()),
                _ => {}
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_reply_over_the_token_limit_is_cut_and_stored_as_cut() {
        let words: Vec<String> = (0..100).map(|i| format!(" w{i}")).collect();
        let mock = MockLlm::start(MockBehaviour::Reply(MockReply::tokens(words.clone())))
            .await
            .unwrap();
        let tools = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let (stage, _dir) = stage_configured(&mock, tools, |c| {
            c.llm.max_reply_tokens = Some(10);
        })
        .await;
        let (deltas, ended) = turn_events(&stage, "talk").await;
        assert_eq!(deltas, words[..10].concat());
        let Event::TurnEnded {
            outcome, text, cut, ..
        } = ended
        else {
            unreachable!()
        };
        assert_eq!(outcome, TurnOutcome::Finished);
        assert_eq!(text, deltas);
        let cut = cut.expect("a cut note");
        assert_eq!(cut.reason, CutReason::Length);
        assert!(
            cut.message.contains("llm.max_reply_tokens"),
            "{}",
            cut.message
        );
        let id = stage.view().conversation_id.unwrap();
        let (_, msgs) = stage.store.conversation(id).await.unwrap();
        assert_eq!(msgs[1].text, deltas);
        assert_eq!(msgs[1].cut, Some(CutReason::Length));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_large_reply_goes_out_in_pieces_that_fit_frames() {
        // Two huge pieces, as a non-streaming server or a big chunk would hand over.
        let piece = "\u{1}\"ab".repeat(100_000);
        let mock = MockLlm::start(MockBehaviour::Reply(MockReply::tokens([
            piece.clone(),
            piece.clone(),
        ])))
        .await
        .unwrap();
        let tools = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let (stage, _dir) = stage_configured(&mock, tools, |c| {
            c.llm.max_reply_bytes = Some(64 * 1024 * 1024);
        })
        .await;
        let (deltas, ended) = turn_events(&stage, "talk").await;
        assert_eq!(deltas, piece.repeat(2));
        let Event::TurnEnded {
            text,
            text_omitted,
            cut,
            ..
        } = ended
        else {
            unreachable!()
        };
        assert!(text_omitted, "a reply this large is not repeated");
        assert!(text.is_empty());
        assert_eq!(cut, None);
    }
}
