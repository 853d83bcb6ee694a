//! The conversation's actor: one task that owns the current character, its stored
//! conversation and the running turn, and handles [`Command`]s in order, so turns never
//! overlap: new input cancels the running turn and waits for it to store its partial
//! reply before the next begins.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{CharacterInfo, DaemonState, ErrorBody, ErrorCode, Event, ModelLoad};

use super::character_files::{character_dir, spawn_watcher};
use super::proactive::{ORIGIN_PROACTIVE, ProactiveClock};
use super::provider::{make_provider, provider_info, provider_load};
use super::tool_use::ToolRunner;
use super::turn::Turn;
use super::view::{ConversationView, SharedView};
use crate::characters::{Character, Roster};
use crate::config::{Config, LlmConfig};
use crate::events::EventBus;
use crate::images::PreparedImage;
use crate::llm::SharedProvider;
use crate::speech_out::SpeechOut;
use crate::store::Store;

/// What the handle asks of the actor, and what the actor's helper tasks (turns, speech,
/// the model-load watcher, the character watcher) tell it.
pub(super) enum Command {
    SendText {
        text: String,
        images: Vec<PreparedImage>,
        origin: String,
        reply: oneshot::Sender<Result<(u64, i64), ErrorBody>>,
    },
    Interrupt {
        reply: oneshot::Sender<Option<u64>>,
    },
    /// The character speaks up now, unasked (Open-LLM-VTuber's `ai-speak-signal`).
    SpeakUp {
        reply: oneshot::Sender<Result<(u64, i64), ErrorBody>>,
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
    /// A reload: new settings and characters, already validated. Answered with notes
    /// for the caller (such as a current character that is gone).
    Reload {
        config: Box<Config>,
        roster: Roster,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Answered at once: proves the actor still takes commands (the watchdog).
    Ping {
        reply: oneshot::Sender<()>,
    },
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

/// What the conversation starts with.
pub struct ConversationSetup {
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
    pub speech: Option<SpeechOut>,
}

/// What a turn answers.
enum Input {
    /// A message from the user, stored before the reply.
    User {
        text: String,
        images: Vec<PreparedImage>,
    },
    /// A note for the model only (proactive speech): not stored, not shown.
    Instruction(String),
}

/// Starts the actor for `setup`; returns its command queue and the view it keeps current.
pub(super) fn spawn(
    setup: ConversationSetup,
    store: Store,
    bus: EventBus,
) -> (mpsc::Sender<Command>, SharedView) {
    let ConversationSetup {
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
    let view = SharedView::new(ConversationView {
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
    });
    let mut actor = Actor {
        config,
        roster,
        character: initial_character,
        provider,
        provider_generation: 0,
        conversation_id: initial_conversation,
        running: None,
        next_turn: 1,
        tools,
        max_tool_rounds,
        speech,
        speaking: None,
        tx: tx.clone(),
        view: view.clone(),
        bus,
        store,
        told_text_only: None,
        proactive: ProactiveClock::default(),
    };
    actor.refresh_state();
    actor.watch_model_load();
    if let Some(dir) = character_dir {
        spawn_watcher(dir, tx.clone(), || Command::CharactersChanged);
    }
    tokio::spawn(actor.run(rx));
    (tx, view)
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
    conversation_id: Option<i64>,
    running: Option<RunningTurn>,
    next_turn: u64,
    tools: Option<Arc<dyn ToolRunner>>,
    max_tool_rounds: u32,
    speech: Option<SpeechOut>,
    speaking: Option<RunningSpeech>,
    tx: mpsc::Sender<Command>,
    view: SharedView,
    bus: EventBus,
    store: Store,
    /// The conversation whose client was told the model is text-only (once each).
    told_text_only: Option<i64>,
    proactive: ProactiveClock,
}

impl Actor {
    /// The next command; meanwhile, speaks up when a quiet spell has lasted long enough.
    async fn next_command(&mut self, rx: &mut mpsc::Receiver<Command>) -> Option<Command> {
        loop {
            let Some(at) = self.proactive.deadline(&self.character.proactive) else {
                return rx.recv().await;
            };
            tokio::select! {
                cmd = rx.recv() => return cmd,
                () = tokio::time::sleep_until(at.into()) => {
                    if let Err(e) = self.speak_up().await {
                        // Not now (the model is loading, say): the quiet spell ends here,
                        // or the passed deadline would fire again at once. The next
                        // state change starts a new one.
                        self.proactive.busy();
                        tracing::debug!(error = %e, "did not speak up");
                    }
                }
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = self.next_command(&mut rx).await {
            match cmd {
                Command::SendText {
                    text,
                    images,
                    origin,
                    reply,
                } => {
                    self.proactive.user_spoke();
                    let r = self.start_turn(Input::User { text, images }, origin).await;
                    let _ = reply.send(r);
                }
                Command::SpeakUp { reply } => {
                    let r = if self.running.is_some() || self.speaking.is_some() {
                        Err(ErrorBody::new(
                            ErrorCode::InvalidArgument,
                            "the character is already talking",
                        )
                        .with_hint("ask again when the reply has finished"))
                    } else {
                        self.speak_up().await
                    };
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
                    if self.conversation_id == Some(id) {
                        self.stop_turn().await;
                    }
                    let r = self
                        .store
                        .delete_conversation(id)
                        .await
                        .map_err(|e| e.to_body());
                    if r.is_ok() {
                        let was_current = self.conversation_id == Some(id);
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
                Command::Ping { reply } => {
                    let _ = reply.send(());
                }
                Command::Reload {
                    config,
                    roster,
                    reply,
                } => {
                    let notes = self.reload(*config, roster);
                    let _ = reply.send(notes);
                }
                Command::TurnDone { turn_id } => {
                    if self.running.as_ref().is_some_and(|r| r.id == turn_id) {
                        self.running = None;
                    }
                    self.refresh_state();
                }
                Command::ModelLoadChanged { generation, load } => {
                    if generation == self.provider_generation {
                        self.view.update(|v| v.model_load = load.clone());
                        self.bus.emit(Event::ModelLoad { load: load.clone() });
                        if let ModelLoad::Failed { reason } = load {
                            let err = ErrorBody::new(ErrorCode::Model, reason).with_hint(
                                "run scripts/fetch-model.sh, or set llm.model_path in conf.yaml",
                            );
                            self.view.update(|v| v.last_error = Some(err.clone()));
                            self.bus.emit(Event::Error { error: err });
                        }
                        self.refresh_state();
                    }
                }
                Command::SpeechDone { turn_id } => {
                    if self.speaking.as_ref().is_some_and(|s| s.turn_id == turn_id) {
                        self.speaking = None;
                        self.view.update(|v| v.speaking_turn = None);
                    }
                    self.refresh_state();
                }
                Command::SetListening(on) => {
                    self.view.update(|v| v.listening = on);
                    self.refresh_state();
                }
                Command::SetHearing(on) => {
                    self.view.update(|v| v.hearing = on);
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

    /// The resting state when no turn runs: speaking (a reply still playing), hearing,
    /// loading, error, listening or idle.
    fn refresh_state(&mut self) {
        if self.running.is_some() {
            self.proactive.busy();
            return;
        }
        let view = self.view.get();
        if view.hearing || self.speaking.is_some() {
            self.proactive.busy();
        } else {
            self.proactive.quiet(std::time::Instant::now());
        }
        let state = match view.model_load {
            _ if view.hearing => DaemonState::Hearing,
            _ if self.speaking.is_some() => DaemonState::Speaking,
            ModelLoad::Loading => DaemonState::Loading,
            ModelLoad::Failed { .. } => DaemonState::Error,
            _ if view.last_error.is_some() => DaemonState::Error,
            _ if view.listening => DaemonState::Listening,
            _ => DaemonState::Idle,
        };
        self.view.set_state(state, &self.bus);
    }

    fn set_conversation(&mut self, id: Option<i64>) {
        self.conversation_id = id;
        self.view.update(|v| v.conversation_id = id);
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
        self.use_character_after(character, old);
    }

    /// [`Self::use_character`] when the LLM settings in use were `old` (they may have
    /// changed under the character, on reload).
    fn use_character_after(&mut self, character: Character, old: LlmConfig) {
        let new = self.effective_llm(&character);
        self.character = character;
        if old != new || self.provider.is_err() {
            self.provider = make_provider(&new);
            self.provider_generation += 1;
            let info = provider_info(&self.provider, &new);
            let load = provider_load(&self.provider);
            self.view.update(|v| {
                v.llm = info;
                v.model_load = load;
                v.last_error = None;
            });
            self.watch_model_load();
        }
        let info = self.character.info();
        let voice = self.character.voice.clone();
        self.view.update(|v| v.voice = voice);
        let llm = self.view.get().llm;
        self.view.update(|v| v.character = info.clone());
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

    /// Applies reloaded settings and characters. A turn in progress finishes with the
    /// provider it started with; the next one uses the new settings.
    fn reload(&mut self, config: Config, roster: Roster) -> Vec<String> {
        let mut notes = Vec::new();
        let old_llm = self.effective_llm(&self.character);
        let old_dir = character_dir(&self.config);
        self.max_tool_rounds = config.mcp.max_rounds;
        self.config = config;
        self.roster = roster;
        let new_dir = character_dir(&self.config);
        if new_dir != old_dir
            && let Some(dir) = new_dir
        {
            spawn_watcher(dir, self.tx.clone(), || Command::CharactersChanged);
        }
        self.bus.emit(Event::CharactersReloaded {
            characters: self.roster.infos(),
        });
        let character = match self.roster.get(&self.character.id).cloned() {
            Some(c) => c,
            None => {
                notes.push(format!(
                    "the current character `{}` is no longer in the character folder; it stays until you switch",
                    self.character.id
                ));
                self.character.clone()
            }
        };
        if character != self.character || self.effective_llm(&character) != old_llm {
            self.use_character_after(character, old_llm);
        }
        notes
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
            self.view.update(|v| v.speaking_turn = None);
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

    /// A turn of the character's own: the character's proactive prompt as a hidden
    /// instruction. Only when the model is ready, so a broken setup is not retried.
    async fn speak_up(&mut self) -> Result<(u64, i64), ErrorBody> {
        let view = self.view.get();
        if view.hearing {
            return Err(
                ErrorBody::new(ErrorCode::InvalidArgument, "someone is speaking")
                    .with_hint("the character speaks up only in a quiet moment"),
            );
        }
        if let ModelLoad::Loading | ModelLoad::Failed { .. } = view.model_load {
            return Err(ErrorBody::new(ErrorCode::Model, "the model is not ready")
                .with_hint("wait for it to load (see `vtuber status`)"));
        }
        self.proactive.spoke_up();
        let instruction = self.character.proactive.prompt.trim().to_owned();
        self.start_turn(Input::Instruction(instruction), ORIGIN_PROACTIVE.into())
            .await
    }

    async fn start_turn(&mut self, input: Input, origin: String) -> Result<(u64, i64), ErrorBody> {
        self.stop_turn().await;
        let provider = self.provider.clone()?;
        let conversation = match self.conversation_id {
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
        let (text, instruction, has_images) = match input {
            Input::User { text, images } => {
                let has_images = !images.is_empty();
                self.store
                    .add_user_message(conversation, &text, images)
                    .await
                    .map_err(|e| e.to_body())?;
                (text, None, has_images)
            }
            Input::Instruction(instruction) => (String::new(), Some(instruction), false),
        };
        if has_images && !provider.sees_images() && self.told_text_only != Some(conversation) {
            self.told_text_only = Some(conversation);
            self.bus.emit(Event::Error {
                error: ErrorBody::new(
                    ErrorCode::InvalidArgument,
                    "this model cannot see images; sent the text only",
                )
                .with_hint("use a vision model (llm.provider openai, anthropic, gemini or ollama with one) to send pictures"),
            });
        }
        let turn_id = self.next_turn;
        self.next_turn += 1;
        let cancel = CancellationToken::new();
        self.view.update(|v| v.last_error = None);
        self.bus.emit(Event::TurnStarted {
            turn_id,
            conversation_id: conversation,
            text,
            origin,
        });
        let llm = self.effective_llm(&self.character);
        let speaker = self.speech.clone().map(|out| {
            let speech_cancel = CancellationToken::new();
            let (speaker, handle) = out.speak_turn(
                turn_id,
                &self.character,
                &self.config.speech.tts,
                self.bus.clone(),
                speech_cancel.clone(),
            );
            self.speaking = Some(RunningSpeech {
                turn_id,
                cancel: speech_cancel,
            });
            self.view.update(|v| v.speaking_turn = Some(turn_id));
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
            instruction,
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
