//! The Open-LLM-VTuber message protocol: what clients send, what we send, and how the
//! daemon's events become those messages.
//!
//! Every bus event is translated once by [`Translator`] into ready-encoded JSON text
//! ([`WebEvent`]) that every connection shares, so a sentence's audio (tens of kilobytes
//! of base64) is serialized once however many browsers watch. Per-connection parts (the
//! turn's closing handshake, `client_uid`) are added by the session. See
//! `docs/web-protocol.md` for the dialect.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use vtuber_shared::{
    ApprovalDecision, ApprovalResolution, CharacterInfo, Event, SpeechAudio, ToolOutcome,
    TurnOutcome,
};

use crate::characters::Roster;
use crate::speech::text::{SentenceSplitter, SplitterConfig, extract_expressions};

/// A message from a client. Unknown fields are ignored (clients send extras).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    TextInput {
        text: String,
        /// Accepted and ignored for now (no vision yet).
        #[serde(default)]
        images: Option<Value>,
    },
    MicAudioData {
        audio: Vec<f32>,
    },
    MicAudioEnd {
        #[serde(default)]
        images: Option<Value>,
    },
    RawAudioData {
        audio: Vec<f32>,
    },
    InterruptSignal {
        #[serde(default)]
        text: Option<String>,
    },
    AiSpeakSignal,
    FrontendPlaybackComplete,
    AudioPlayStart {
        #[serde(default)]
        display_text: Option<Value>,
    },
    FetchHistoryList,
    FetchAndSetHistory {
        history_uid: String,
    },
    CreateNewHistory,
    DeleteHistory {
        history_uid: String,
    },
    FetchConfigs,
    SwitchConfig {
        file: String,
    },
    FetchBackgrounds,
    RequestInitConfig,
    Heartbeat,
    AddClientToGroup {
        #[serde(default)]
        invitee_uid: Option<String>,
    },
    RemoveClientFromGroup {
        #[serde(default)]
        target_uid: Option<String>,
    },
    RequestGroupInfo,
    /// Our extension: the answer to an `approval-request`.
    ApprovalResponse {
        request_id: u64,
        decision: ApprovalDecision,
    },
}

/// Every `type` a client may send, for telling "unknown type" from "bad fields".
pub const CLIENT_TYPES: &[&str] = &[
    "text-input",
    "mic-audio-data",
    "mic-audio-end",
    "raw-audio-data",
    "interrupt-signal",
    "ai-speak-signal",
    "frontend-playback-complete",
    "audio-play-start",
    "fetch-history-list",
    "fetch-and-set-history",
    "create-new-history",
    "delete-history",
    "fetch-configs",
    "switch-config",
    "fetch-backgrounds",
    "request-init-config",
    "heartbeat",
    "add-client-to-group",
    "remove-client-from-group",
    "request-group-info",
    "approval-response",
];

/// Parses one text frame; the error is a sentence for an `error` message.
pub fn parse_client(text: &str) -> Result<ClientMessage, String> {
    // The fast path parses straight into the enum (audio frames are large); only a
    // failure pays for a second look to say what was wrong.
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(m) => Ok(m),
        Err(e) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| format!("the message is not valid JSON: {e}"))?;
            let Some(obj) = value.as_object() else {
                return Err("expected a JSON object with a `type` field".into());
            };
            let Some(kind) = obj.get("type").and_then(Value::as_str) else {
                return Err("the message has no `type` field (a string)".into());
            };
            if !CLIENT_TYPES.contains(&kind) {
                return Err(format!(
                    "unknown message type `{kind}` (see docs/web-protocol.md for the supported ones)"
                ));
            }
            Err(format!("bad `{kind}` message: {}", strip_position(&e)))
        }
    }
}

/// serde_json's "at line 1 column 57" says nothing useful to a WebSocket client.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// `control` texts.
pub mod control {
    pub const START_MIC: &str = "start-mic";
    pub const INTERRUPT: &str = "interrupt";
    pub const CHAIN_START: &str = "conversation-chain-start";
    pub const CHAIN_END: &str = "conversation-chain-end";
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    #[serde(rename = "full-text")]
    FullText { text: String },
    #[serde(rename = "control")]
    Control { text: &'static str },
    #[serde(rename = "set-model-and-conf")]
    SetModelAndConf {
        model_info: Value,
        conf_name: String,
        conf_uid: String,
        client_uid: String,
    },
    #[serde(rename = "group-update")]
    GroupUpdate {
        members: Vec<String>,
        is_owner: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    #[serde(rename = "audio")]
    Audio {
        audio: Option<String>,
        volumes: Vec<f32>,
        slice_length: u32,
        display_text: DisplayText,
        actions: Option<Actions>,
        forwarded: bool,
    },
    #[serde(rename = "backend-synth-complete")]
    BackendSynthComplete,
    #[serde(rename = "force-new-message")]
    ForceNewMessage,
    #[serde(rename = "user-input-transcription")]
    UserInputTranscription { text: String },
    /// Our extension: input that started a turn, from whichever client sent it.
    #[serde(rename = "user-input")]
    UserInput { text: String, origin: String },
    #[serde(rename = "tool_call_status")]
    ToolCallStatus {
        tool_id: String,
        tool_name: String,
        status: &'static str,
        content: String,
        timestamp: String,
        name: String,
    },
    /// Our extension: a tool call waits for a person's yes or no.
    #[serde(rename = "approval-request")]
    ApprovalRequest {
        request_id: u64,
        tool: String,
        server: String,
        description: String,
        arguments: Value,
        timeout_secs: u64,
    },
    /// Our extension: how an approval request was settled.
    #[serde(rename = "approval-resolved")]
    ApprovalResolved {
        request_id: u64,
        resolution: ApprovalResolution,
    },
    /// Our extension: the daemon's state (`idle`, `thinking`, `speaking`, ...).
    #[serde(rename = "state")]
    State { state: &'static str },
    #[serde(rename = "error")]
    Error { message: String },
    #[serde(rename = "history-list")]
    HistoryList { histories: Vec<HistoryEntry> },
    #[serde(rename = "history-data")]
    HistoryData { messages: Vec<HistoryMessage> },
    #[serde(rename = "new-history-created")]
    NewHistoryCreated { history_uid: String },
    #[serde(rename = "history-deleted")]
    HistoryDeleted {
        success: bool,
        history_uid: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    #[serde(rename = "config-files")]
    ConfigFiles { configs: Vec<ConfigFile> },
    #[serde(rename = "config-switched")]
    ConfigSwitched { message: String },
    #[serde(rename = "background-files")]
    BackgroundFiles { files: Vec<String> },
    #[serde(rename = "heartbeat-ack")]
    HeartbeatAck,
}

impl ServerMessage {
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
        }
    }

    pub fn control(text: &'static str) -> Self {
        Self::Control { text }
    }

    /// The JSON text frame.
    pub fn encode(&self) -> Utf8Bytes {
        match serde_json::to_string(self) {
            Ok(s) => Utf8Bytes::from(s),
            Err(e) => {
                tracing::error!(error = %e, "web message could not be encoded");
                Utf8Bytes::from_static(
                    r#"{"type":"error","message":"internal error: a message could not be encoded"}"#,
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisplayText {
    pub text: String,
    pub name: String,
    pub avatar: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actions {
    /// Expression indexes from the emotion map, or tag names the map does not know.
    pub expressions: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub uid: String,
    pub latest_message: Option<LatestMessage>,
    pub timestamp: String,
    /// Our extension: the conversation's title and size.
    pub title: String,
    pub message_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestMessage {
    pub role: &'static str,
    pub timestamp: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryMessage {
    pub role: &'static str,
    pub timestamp: String,
    pub content: String,
    pub name: String,
    pub avatar: Option<String>,
    /// Our extension: the reply was cut short.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigFile {
    pub filename: String,
    pub name: String,
}

/// OLV's role names for stored roles (`None`: not shown in OLV history).
pub fn olv_role(role: vtuber_shared::Role) -> Option<&'static str> {
    match role {
        vtuber_shared::Role::User => Some("human"),
        vtuber_shared::Role::Assistant => Some("ai"),
        _ => None,
    }
}

/// Unix milliseconds as ISO-8601 UTC (`2026-01-31T12:00:00Z`).
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

pub fn now_iso() -> String {
    iso8601(crate::store::now_ms())
}

/// A character as the page needs it: the `set-model-and-conf` contents, minus the
/// per-connection `client_uid`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConf {
    pub conf_uid: String,
    pub conf_name: String,
    pub model_info: Value,
}

impl ModelConf {
    pub fn message(&self, client_uid: &str) -> ServerMessage {
        ServerMessage::SetModelAndConf {
            model_info: self.model_info.clone(),
            conf_name: self.conf_name.clone(),
            conf_uid: self.conf_uid.clone(),
            client_uid: client_uid.to_owned(),
        }
    }
}

/// The characters' avatars (the stage only shares names): a roster of our own, reloaded
/// when the character files change.
pub struct Characters {
    roster: RwLock<Roster>,
    dir: Option<PathBuf>,
    assets_dir: PathBuf,
}

impl Characters {
    pub fn load(dir: Option<PathBuf>, assets_dir: PathBuf) -> Self {
        let (roster, _) = Roster::load(dir.as_deref());
        Self {
            roster: RwLock::new(roster),
            dir,
            assets_dir,
        }
    }

    /// Reads the character files again (off the async workers).
    pub async fn reload(self: &Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let (roster, _) = Roster::load(me.dir.as_deref());
            if let Ok(mut r) = me.roster.write() {
                *r = roster;
            }
        })
        .await;
    }

    fn with<T>(&self, f: impl FnOnce(&Roster) -> T) -> T {
        match self.roster.read() {
            Ok(r) => f(&r),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// Tag → expression index of a character (empty when unknown).
    pub fn emotions(&self, id: &str) -> BTreeMap<String, i64> {
        self.with(|r| {
            r.get(id)
                .map(|c| c.avatar.emotions.clone())
                .unwrap_or_default()
        })
    }

    /// Display name of a character by id (the id when unknown).
    pub fn name(&self, id: &str) -> String {
        self.with(|r| r.get(id).map_or_else(|| id.to_owned(), |c| c.name.clone()))
    }

    pub fn model_conf(&self, info: &CharacterInfo) -> ModelConf {
        let (model, emotions) = self.with(|r| {
            r.get(&info.id).map_or_else(
                || (crate::characters::Avatar::default().model, BTreeMap::new()),
                |c| (c.avatar.model.clone(), c.avatar.emotions.clone()),
            )
        });
        ModelConf {
            conf_uid: info.id.clone(),
            conf_name: info.name.clone(),
            model_info: serde_json::json!({
                "name": model,
                "url": model_url(&self.assets_dir, &model),
                "kScale": 0.3,
                "initialXshift": 0,
                "initialYshift": 0,
                "kXOffset": 1150,
                "idleMotionGroupName": "idle",
                "emotionMap": emotions,
                "tapMotions": {},
            }),
        }
    }
}

/// Where the page loads a model from: `/live2d-models/<m>/<m>.model.json` (Cubism 2), or
/// `<m>.model3.json` when only that is installed; a model given as a `.json` path is
/// used as is.
pub fn model_url(assets_dir: &Path, model: &str) -> String {
    if model.ends_with(".json") {
        return format!("/live2d-models/{}", model.trim_start_matches('/'));
    }
    let dir = assets_dir.join("live2d-models").join(model);
    let v2 = format!("{model}.model.json");
    let v3 = format!("{model}.model3.json");
    if !dir.join(&v2).is_file() && dir.join(&v3).is_file() {
        format!("/live2d-models/{model}/{v3}")
    } else {
        format!("/live2d-models/{model}/{v2}")
    }
}

/// What a translated event means for a connection's turn bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Nothing turn-related: send `messages`.
    None,
    /// A turn began: close any earlier one, then send `turn_messages`.
    Start(u64),
    /// Part of turn `turn` (`turn_messages` go only to clients following that turn):
    /// `audio_ms` of speech, and `done: Some(interrupted)` once the turn's speech is all out.
    Turn {
        turn: u64,
        audio_ms: u32,
        done: Option<bool>,
    },
    /// The character (or its avatar) changed: send `set-model-and-conf`.
    Model(Arc<ModelConf>),
    /// The server is stopping: close the connection (1001) after what came before.
    Closing,
}

/// One bus event in OLV form, shared by every connection.
#[derive(Debug, Clone)]
pub struct WebEvent {
    pub seq: u64,
    pub signal: Signal,
    /// Sent only when the connection follows the signal's turn.
    pub turn_messages: Vec<Utf8Bytes>,
    /// Sent to every connection.
    pub messages: Vec<Utf8Bytes>,
}

impl WebEvent {
    fn new(seq: u64) -> Self {
        Self {
            seq,
            signal: Signal::None,
            turn_messages: Vec::new(),
            messages: Vec::new(),
        }
    }
}

/// Turns from voice carry a transcript event of their own.
pub fn is_voice_origin(origin: &str) -> bool {
    origin == "voice"
        || origin.starts_with("voice:")
        || origin.ends_with("(voice)")
        || origin.ends_with("(audio)")
}

/// A reply shown as text only (speech is off): its deltas cut into sentences here.
struct TextTurn {
    turn_id: u64,
    splitter: SentenceSplitter,
}

/// Translates bus events, in order, keeping what the mapping needs to remember.
pub struct Translator {
    characters: Arc<Characters>,
    /// The current character (id, name), as of the last event seen.
    character: CharacterInfo,
    /// Whether turns are spoken (a `speech_finished` ends each).
    speech: Box<dyn Fn() -> bool + Send + Sync>,
    splitter: SplitterConfig,
    text_turn: Option<TextTurn>,
    /// Tool name by call id, for progress messages.
    tools: HashMap<String, String>,
}

impl Translator {
    pub fn new(
        characters: Arc<Characters>,
        character: CharacterInfo,
        speech: Box<dyn Fn() -> bool + Send + Sync>,
        splitter: SplitterConfig,
    ) -> Self {
        Self {
            characters,
            character,
            speech,
            splitter,
            text_turn: None,
            tools: HashMap::new(),
        }
    }

    pub fn characters(&self) -> &Arc<Characters> {
        &self.characters
    }

    fn audio_message(
        &self,
        text: String,
        expressions: &[String],
        audio: Option<&SpeechAudio>,
    ) -> ServerMessage {
        let emotions = self.characters.emotions(&self.character.id);
        let expressions: Vec<Value> = expressions
            .iter()
            .map(|tag| match emotions.get(tag) {
                Some(i) => Value::from(*i),
                None => Value::from(tag.as_str()),
            })
            .collect();
        let (wav, volumes, slice) = match audio {
            Some(a) if !a.wav_base64.is_empty() => {
                (Some(a.wav_base64.clone()), a.volumes.clone(), a.slice_ms)
            }
            // Played on the daemon's speaker only: no sound for the page, but the
            // loudness still drives the avatar's mouth.
            Some(a) => (None, a.volumes.clone(), a.slice_ms),
            None => (None, Vec::new(), crate::speech::speaker::SLICE_MS),
        };
        ServerMessage::Audio {
            audio: wav,
            volumes,
            slice_length: slice,
            display_text: DisplayText {
                text,
                name: self.character.name.clone(),
                avatar: None,
            },
            actions: (!expressions.is_empty()).then_some(Actions { expressions }),
            forwarded: false,
        }
    }

    /// Text-only sentences of a reply, as `audio` messages without sound.
    fn text_sentences(&self, raws: Vec<String>) -> Vec<Utf8Bytes> {
        let emotions = self.characters.emotions(&self.character.id);
        raws.into_iter()
            .filter_map(|raw| {
                let (display, expressions) = extract_expressions(&raw, &emotions);
                let display = display.trim().to_owned();
                (!display.is_empty() || !expressions.is_empty())
                    .then(|| self.audio_message(display, &expressions, None).encode())
            })
            .collect()
    }

    /// The OLV form of `event`; `None` for events clients have no use for.
    pub async fn translate(&mut self, seq: u64, event: &Event) -> Option<WebEvent> {
        let mut out = WebEvent::new(seq);
        match event {
            Event::StateChanged { state } => {
                out.messages.push(
                    ServerMessage::State {
                        state: state.as_str(),
                    }
                    .encode(),
                );
            }
            Event::TurnStarted {
                turn_id,
                text,
                origin,
                ..
            } => {
                self.text_turn = (!(self.speech)()).then(|| TextTurn {
                    turn_id: *turn_id,
                    splitter: SentenceSplitter::new(self.splitter.clone()),
                });
                out.signal = Signal::Start(*turn_id);
                out.turn_messages
                    .push(ServerMessage::control(control::CHAIN_START).encode());
                out.turn_messages.push(
                    ServerMessage::FullText {
                        text: "Thinking...".into(),
                    }
                    .encode(),
                );
                // Voice turns show up as `user-input-transcription` (from the transcript
                // event) instead, so the page does not list them twice.
                if !is_voice_origin(origin) {
                    out.turn_messages.push(
                        ServerMessage::UserInput {
                            text: text.clone(),
                            origin: origin.clone(),
                        }
                        .encode(),
                    );
                }
            }
            Event::Delta { turn_id, text } => {
                let t = self.text_turn.as_mut().filter(|t| t.turn_id == *turn_id)?;
                let raws: Vec<String> = t.splitter.push(text).into_iter().map(|s| s.raw).collect();
                if raws.is_empty() {
                    return None;
                }
                out.turn_messages = self.text_sentences(raws);
                out.signal = Signal::Turn {
                    turn: *turn_id,
                    audio_ms: 0,
                    done: None,
                };
            }
            Event::TurnEnded {
                turn_id,
                outcome,
                cut,
                ..
            } => {
                if let TurnOutcome::Failed { error } = outcome {
                    out.messages
                        .push(ServerMessage::error(error.to_string()).encode());
                }
                // The page has no notice of its own; its error toast carries the note.
                if let Some(cut) = cut {
                    out.messages
                        .push(ServerMessage::error(cut.message.clone()).encode());
                }
                let interrupted = matches!(outcome, TurnOutcome::Interrupted);
                if let Some(mut t) = self.text_turn.take_if(|t| t.turn_id == *turn_id) {
                    // No speech will follow: this is the end of the turn's output.
                    if !interrupted && let Some(last) = t.splitter.finish() {
                        out.turn_messages = self.text_sentences(vec![last.raw]);
                    }
                    out.signal = Signal::Turn {
                        turn: *turn_id,
                        audio_ms: 0,
                        done: Some(interrupted),
                    };
                } else if out.messages.is_empty() {
                    return None;
                }
            }
            Event::Sentence {
                turn_id,
                text,
                expressions,
                audio,
                ..
            } => {
                out.turn_messages.push(
                    self.audio_message(text.clone(), expressions, audio.as_ref())
                        .encode(),
                );
                out.signal = Signal::Turn {
                    turn: *turn_id,
                    audio_ms: audio.as_ref().map_or(0, |a| a.duration_ms),
                    done: None,
                };
            }
            Event::SpeechFinished {
                turn_id,
                interrupted,
                ..
            } => {
                out.signal = Signal::Turn {
                    turn: *turn_id,
                    audio_ms: 0,
                    done: Some(*interrupted),
                };
            }
            Event::Transcript { text, .. } => {
                out.messages
                    .push(ServerMessage::UserInputTranscription { text: text.clone() }.encode());
            }
            Event::CharacterChanged { character, .. } => {
                self.character = character.clone();
                out.signal = Signal::Model(Arc::new(self.characters.model_conf(character)));
            }
            Event::CharactersReloaded { characters } => {
                self.characters.reload().await;
                if let Some(c) = characters.iter().find(|c| c.id == self.character.id) {
                    self.character = c.clone();
                }
                // Sessions skip it when the avatar did not change.
                out.signal = Signal::Model(Arc::new(self.characters.model_conf(&self.character)));
            }
            Event::ToolCallStarted {
                call_id,
                server,
                tool,
                arguments,
                ..
            } => {
                self.tools.insert(call_id.clone(), tool.clone());
                if self.tools.len() > 1000 {
                    self.tools.clear();
                }
                out.messages.push(
                    self.tool_status(call_id, tool, "running", format!("{server}: {arguments}"))
                        .encode(),
                );
            }
            Event::ToolCallProgress {
                call_id,
                progress,
                total,
                message,
            } => {
                let tool = self
                    .tools
                    .get(call_id)
                    .cloned()
                    .unwrap_or_else(|| "tool".into());
                let mut content = match total {
                    Some(t) => format!("{progress}/{t}"),
                    None => format!("{progress}"),
                };
                if let Some(m) = message {
                    content = format!("{content} {m}");
                }
                out.messages.push(
                    self.tool_status(call_id, &tool, "running", content)
                        .encode(),
                );
            }
            Event::ToolCallEnded {
                call_id,
                outcome,
                summary,
                ..
            } => {
                let tool = self.tools.remove(call_id).unwrap_or_else(|| "tool".into());
                let (status, content) = match outcome {
                    ToolOutcome::Ok => ("completed", summary.clone()),
                    ToolOutcome::Error => ("error", summary.clone()),
                    ToolOutcome::Denied => ("error", format!("denied: {summary}")),
                    ToolOutcome::TimedOut => ("error", format!("timed out: {summary}")),
                    ToolOutcome::Cancelled => ("error", format!("cancelled: {summary}")),
                };
                out.messages
                    .push(self.tool_status(call_id, &tool, status, content).encode());
            }
            Event::ApprovalRequested {
                request_id,
                server,
                tool,
                description,
                arguments,
                timeout_secs,
                ..
            } => {
                out.messages.push(
                    ServerMessage::ApprovalRequest {
                        request_id: *request_id,
                        tool: tool.clone(),
                        server: server.clone(),
                        description: description.clone(),
                        arguments: arguments.clone(),
                        timeout_secs: *timeout_secs,
                    }
                    .encode(),
                );
            }
            Event::ApprovalResolved {
                request_id,
                resolution,
            } => {
                out.messages.push(
                    ServerMessage::ApprovalResolved {
                        request_id: *request_id,
                        resolution: *resolution,
                    }
                    .encode(),
                );
            }
            Event::Error { error } => {
                out.messages
                    .push(ServerMessage::error(error.to_string()).encode());
            }
            Event::ShuttingDown => {
                out.messages.push(
                    ServerMessage::FullText {
                        text: "The daemon is shutting down".into(),
                    }
                    .encode(),
                );
            }
            _ => return None,
        }
        Some(out)
    }

    fn tool_status(
        &self,
        call_id: &str,
        tool: &str,
        status: &'static str,
        content: String,
    ) -> ServerMessage {
        ServerMessage::ToolCallStatus {
            tool_id: call_id.to_owned(),
            tool_name: tool.to_owned(),
            status,
            content,
            timestamp: now_iso(),
            name: self.character.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vtuber_shared::{DaemonState, ErrorBody, ErrorCode};

    #[test]
    fn client_messages_parse_and_errors_say_why() {
        assert_eq!(
            parse_client(r#"{"type":"text-input","text":"hi","images":[]}"#).unwrap(),
            ClientMessage::TextInput {
                text: "hi".into(),
                images: Some(json!([]))
            }
        );
        assert_eq!(
            parse_client(r#"{"type":"heartbeat","extra":1}"#).unwrap(),
            ClientMessage::Heartbeat
        );
        assert_eq!(
            parse_client(r#"{"type":"mic-audio-data","audio":[0.5,-0.25]}"#).unwrap(),
            ClientMessage::MicAudioData {
                audio: vec![0.5, -0.25]
            }
        );
        assert_eq!(
            parse_client(
                r#"{"type":"approval-response","request_id":3,"decision":"allow_for_session"}"#
            )
            .unwrap(),
            ClientMessage::ApprovalResponse {
                request_id: 3,
                decision: ApprovalDecision::AllowForSession
            }
        );
        assert!(
            parse_client("{nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(parse_client("[1]").unwrap_err().contains("`type`"));
        assert!(
            parse_client(r#"{"text":"x"}"#)
                .unwrap_err()
                .contains("no `type`")
        );
        assert!(
            parse_client(r#"{"type":"dance"}"#)
                .unwrap_err()
                .contains("unknown message type `dance`")
        );
        let e = parse_client(r#"{"type":"switch-config"}"#).unwrap_err();
        assert!(
            e.contains("bad `switch-config`") && e.contains("file"),
            "{e}"
        );
        assert!(!e.contains("line 1"), "{e}");
        for t in CLIENT_TYPES {
            // Every listed type is one the enum knows (fields aside).
            let e = parse_client(&format!(r#"{{"type":"{t}"}}"#));
            assert!(
                e.is_ok() || e.as_ref().unwrap_err().starts_with("bad"),
                "{t}: {e:?}"
            );
        }
    }

    #[test]
    fn server_messages_have_olv_shapes() {
        let v = |m: ServerMessage| serde_json::to_value(&m).unwrap();
        assert_eq!(
            v(ServerMessage::control(control::START_MIC)),
            json!({"type":"control","text":"start-mic"})
        );
        assert_eq!(
            v(ServerMessage::BackendSynthComplete),
            json!({"type":"backend-synth-complete"})
        );
        assert_eq!(
            v(ServerMessage::HeartbeatAck),
            json!({"type":"heartbeat-ack"})
        );
        assert_eq!(
            v(ServerMessage::GroupUpdate {
                members: vec![],
                is_owner: false,
                error: None
            }),
            json!({"type":"group-update","members":[],"is_owner":false})
        );
        let tool = v(ServerMessage::ToolCallStatus {
            tool_id: "c1".into(),
            tool_name: "read".into(),
            status: "running",
            content: "x".into(),
            timestamp: iso8601(0),
            name: "Mao".into(),
        });
        assert_eq!(tool["type"], "tool_call_status");
        assert_eq!(tool["timestamp"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_767_225_599_999), "2025-12-31T23:59:59Z");
        assert_eq!(iso8601(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn voice_origins() {
        assert!(is_voice_origin("voice"));
        assert!(is_voice_origin("voice:7"));
        assert!(is_voice_origin("web (voice)"));
        assert!(is_voice_origin("vtuber listen (audio)"));
        assert!(!is_voice_origin("web"));
        assert!(!is_voice_origin("vtuber chat"));
    }

    fn translator(speech: bool) -> Translator {
        let characters = Arc::new(Characters::load(None, PathBuf::from("/nonexistent")));
        let (roster, _) = Roster::load(None);
        Translator::new(
            characters,
            roster.get("mao").unwrap().info(),
            Box::new(move || speech),
            SplitterConfig::default(),
        )
    }

    fn texts(v: &[Utf8Bytes]) -> Vec<Value> {
        v.iter()
            .map(|b| serde_json::from_str(b.as_str()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn spoken_turn_maps_to_olv_messages() {
        let mut t = translator(true);
        let start = t
            .translate(
                1,
                &Event::TurnStarted {
                    turn_id: 4,
                    conversation_id: 1,
                    text: "hi".into(),
                    origin: "vtuber chat".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(start.signal, Signal::Start(4));
        let m = texts(&start.turn_messages);
        assert_eq!(
            m[0],
            json!({"type":"control","text":"conversation-chain-start"})
        );
        assert_eq!(m[1], json!({"type":"full-text","text":"Thinking..."}));
        assert_eq!(
            m[2],
            json!({"type":"user-input","text":"hi","origin":"vtuber chat"})
        );
        // Deltas are spoken as sentences, not sent themselves.
        assert!(
            t.translate(
                2,
                &Event::Delta {
                    turn_id: 4,
                    text: "Hi.".into()
                }
            )
            .await
            .is_none()
        );
        let s = t
            .translate(
                3,
                &Event::Sentence {
                    turn_id: 4,
                    index: 0,
                    text: "Hello!".into(),
                    expressions: vec!["joy".into(), "weird".into()],
                    audio: Some(SpeechAudio {
                        wav_base64: "UklG".into(),
                        sample_rate: 22050,
                        duration_ms: 640,
                        volumes: vec![0.5, 1.0],
                        slice_ms: 20,
                    }),
                    synth_ms: 5,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            s.signal,
            Signal::Turn {
                turn: 4,
                audio_ms: 640,
                done: None
            }
        );
        assert_eq!(
            texts(&s.turn_messages)[0],
            json!({"type":"audio","audio":"UklG","volumes":[0.5,1.0],"slice_length":20,
                   "display_text":{"text":"Hello!","name":"Mao","avatar":null},
                   "actions":{"expressions":[1,"weird"]},"forwarded":false})
        );
        // With speech, the end of the text is not the end of the turn.
        assert!(
            t.translate(
                4,
                &Event::TurnEnded {
                    turn_id: 4,
                    outcome: TurnOutcome::Finished,
                    text: "Hello!".into(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                }
            )
            .await
            .is_none()
        );
        let done = t
            .translate(
                5,
                &Event::SpeechFinished {
                    turn_id: 4,
                    sentences: 1,
                    interrupted: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            done.signal,
            Signal::Turn {
                turn: 4,
                audio_ms: 0,
                done: Some(false)
            }
        );
        let st = t
            .translate(
                6,
                &Event::StateChanged {
                    state: DaemonState::Speaking,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            texts(&st.messages)[0],
            json!({"type":"state","state":"speaking"})
        );
    }

    #[tokio::test]
    async fn text_only_turn_is_shown_sentence_by_sentence() {
        let mut t = translator(false);
        let start = t
            .translate(
                1,
                &Event::TurnStarted {
                    turn_id: 1,
                    conversation_id: 1,
                    text: "yo".into(),
                    origin: "voice".into(),
                },
            )
            .await
            .unwrap();
        // A voice turn: the transcript event shows the input.
        assert_eq!(start.turn_messages.len(), 2);
        let d = t
            .translate(
                2,
                &Event::Delta {
                    turn_id: 1,
                    text: "[joy] First one here. Second".into(),
                },
            )
            .await
            .unwrap();
        let m = texts(&d.turn_messages);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["display_text"]["text"], "First one here.");
        assert_eq!(m[0]["audio"], Value::Null);
        assert_eq!(m[0]["volumes"], json!([]));
        assert_eq!(m[0]["actions"], json!({"expressions":[1]}));
        let end = t
            .translate(
                3,
                &Event::TurnEnded {
                    turn_id: 1,
                    outcome: TurnOutcome::Finished,
                    text: String::new(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            end.signal,
            Signal::Turn {
                turn: 1,
                audio_ms: 0,
                done: Some(false)
            }
        );
        assert_eq!(
            texts(&end.turn_messages)[0]["display_text"]["text"],
            "Second"
        );
        let failed = t
            .translate(
                4,
                &Event::TurnEnded {
                    turn_id: 2,
                    outcome: TurnOutcome::Failed {
                        error: ErrorBody::new(ErrorCode::Llm, "boom").with_hint("fix it"),
                    },
                    text: String::new(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            texts(&failed.messages)[0],
            json!({"type":"error","message":"boom (fix it)"})
        );
    }

    #[test]
    fn model_urls() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            model_url(dir.path(), "shizuku"),
            "/live2d-models/shizuku/shizuku.model.json"
        );
        std::fs::create_dir_all(dir.path().join("live2d-models/mao_pro")).unwrap();
        std::fs::write(
            dir.path().join("live2d-models/mao_pro/mao_pro.model3.json"),
            "{}",
        )
        .unwrap();
        assert_eq!(
            model_url(dir.path(), "mao_pro"),
            "/live2d-models/mao_pro/mao_pro.model3.json"
        );
        assert_eq!(
            model_url(dir.path(), "x/y.model.json"),
            "/live2d-models/x/y.model.json"
        );
    }
}
