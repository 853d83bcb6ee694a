//! The local-socket protocol between `vtuberd` and its clients.
//!
//! Client → daemon: [`ClientFrame`], one per line, each a request with an `id`.
//! Daemon → client: [`ServerFrame`], either the one [`ServerFrame::Response`] to a
//! request, or a broadcast [`ServerFrame::Event`] carrying a per-daemon sequence number.
//! The first request on a connection must be [`Request::Hello`]. See `docs/protocol.md`.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; `hello` carries it and the daemon refuses others.
pub const PROTOCOL_VERSION: u32 = 1;

/// One frame from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    pub request: Request,
}

/// What a client can ask for. Each gets exactly one [`Reply`] or [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Must come first. `client` is a free-form label shown in `status`.
    Hello {
        protocol: u32,
        client: String,
        /// `false` for one-shot commands that want no broadcast events.
        #[serde(default = "default_true")]
        subscribe: bool,
        /// Whether this client plays (or keeps) the audio in `sentence` events. With no
        /// such client and no local speaker, the daemon skips speech synthesis and
        /// replies are text only. Clients that only show text say `false`.
        #[serde(default = "default_true")]
        audio: bool,
        /// The daemon's cookie (see [`crate::cookie`]): proves the client may read the
        /// daemon's private runtime folder, which tool servers may not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cookie: Option<String>,
    },
    Ping,
    Status,
    /// User input. Interrupts a reply in progress (the partial reply is kept).
    SendText {
        text: String,
        /// Pictures sent with the text, for models that can see them. The daemon
        /// refuses an undecodable or oversized one (`bad_request`) and downscales the
        /// rest; a text-only model gets the text alone (with a notice).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<ImageInput>,
    },
    /// Stops the reply in progress, if any.
    Interrupt,
    ListCharacters,
    SwitchCharacter {
        name: String,
    },
    /// Conversations, newest first; all characters unless one is named.
    ListConversations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        character: Option<String>,
    },
    /// One conversation with its messages, a page at a time: the reply's `next` says
    /// where the following page starts; pass it back as `page` until it is absent.
    GetConversation {
        id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        page: Option<PageCursor>,
    },
    /// Starts a fresh conversation for the current character.
    NewConversation,
    /// Makes an earlier conversation the current one (switching character if needed).
    LoadConversation {
        id: i64,
    },
    DeleteConversation {
        id: i64,
    },
    /// Asks the daemon to exit after finishing writes.
    Shutdown,
    /// Re-reads the configuration files and the characters and applies what can change
    /// while running (as SIGHUP does). A file with a mistake changes nothing: the answer
    /// is that error.
    Reload,
    /// Answers an [`Event::ApprovalRequested`]. The first answer from any client wins.
    ApproveToolCall {
        request_id: u64,
        decision: ApprovalDecision,
    },
    /// Configured MCP servers and their state.
    ListMcpServers,
    /// Tools offered to the LLM, of one server or all.
    ListMcpTools {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
    /// Stops and starts one MCP server again (also re-enables one that gave up).
    RestartMcpServer {
        name: String,
    },
    /// Tool calls from the audit log, newest first.
    ToolAudit {
        /// Only calls at or after this time (Unix milliseconds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// An utterance as a WAV file (any rate, mono or stereo), treated as if spoken:
    /// transcribed, then answered like `send_text`. Answered with `heard`.
    SendAudio {
        wav_base64: String,
    },
    /// Audio in the current character's voice, without starting a turn. Answered with
    /// `speech`.
    Speak {
        text: String,
    },
    /// Live microphone audio from a client: 16 kHz mono little-endian `f32` samples,
    /// base64. It goes through the same voice detection as the daemon's own microphone
    /// (utterances are transcribed and answered; speech during a reply barges in).
    StreamAudio {
        samples_base64: String,
    },
    /// Hands-free listening on the daemon's microphone on or off.
    SetListening {
        on: bool,
    },
    /// Push-to-talk key down (`pressed: true`) or up: while held, everything heard is one
    /// utterance, sent when released.
    PushToTalk {
        pressed: bool,
    },
}

fn default_true() -> bool {
    true
}

/// One frame from the daemon.
// A frame lives only while it is encoded or decoded, one at a time: boxing the large
// status reply would cost an allocation per frame and buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The answer to request `id`; `id` is `null` when the request could not be parsed.
    Response {
        id: Option<u64>,
        #[serde(flatten)]
        outcome: Outcome,
    },
    /// A broadcast. `seq` rises by one per event the daemon emits.
    Event { seq: u64, event: Event },
}

/// Either a result or an error, never both.
// Responses live only as long as it takes to write them; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[serde(rename = "result")]
    Ok(Reply),
    #[serde(rename = "error")]
    Err(ErrorBody),
}

/// Successful answers, one variant per request family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Welcome {
        protocol: u32,
        daemon_version: String,
        status: Status,
        /// Sequence number of the last event sent before this connection subscribed.
        last_seq: u64,
    },
    Pong,
    Status(Status),
    /// Input accepted; the turn's events follow on the event stream.
    TurnAccepted {
        turn_id: u64,
        conversation_id: i64,
    },
    /// `turn_id` is the interrupted turn, or `None` when nothing was running.
    Interrupted {
        turn_id: Option<u64>,
    },
    Characters {
        current: String,
        characters: Vec<CharacterInfo>,
    },
    CharacterSwitched {
        character: CharacterInfo,
    },
    Conversations {
        conversations: Vec<ConversationSummary>,
    },
    /// One page of a conversation. `next` is set when more follows; a message too
    /// large for one page is split (see [`StoredMessage::text_offset`]).
    Conversation {
        conversation: ConversationSummary,
        messages: Vec<StoredMessage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<PageCursor>,
    },
    ConversationChanged {
        conversation_id: i64,
    },
    Deleted {
        id: i64,
    },
    ShuttingDown,
    /// The configuration was read again and applied.
    Reloaded {
        report: ReloadReport,
    },
    /// The approval answer was recorded (`accepted: false`: unknown or already settled).
    ApprovalRecorded {
        request_id: u64,
        accepted: bool,
    },
    McpServers {
        servers: Vec<McpServerInfo>,
    },
    McpTools {
        tools: Vec<McpToolInfo>,
    },
    McpRestarting {
        name: String,
    },
    ToolAudit {
        entries: Vec<AuditEntry>,
    },
    /// What `send_audio` heard. `turn_id` is `None` when nothing intelligible was said.
    Heard {
        transcript: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turn_id: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<i64>,
    },
    Speech {
        audio: SpeechAudio,
    },
    /// Voice settings after `set_listening` / `push_to_talk`.
    Voice {
        voice: Box<VoiceStatus>,
    },
    /// `stream_audio` taken in.
    AudioReceived,
}

/// An error as data: what went wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorBody {}

/// Stable, machine-readable error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line was not JSON or not a known request.
    BadRequest,
    /// The line exceeded the frame limit.
    FrameTooLarge,
    /// `hello` missing, repeated, or with an unsupported protocol version.
    Handshake,
    NotFound,
    InvalidArgument,
    /// The LLM backend failed (connection, HTTP status, bad stream).
    Llm,
    /// The model file is missing or failed to load.
    Model,
    Config,
    Storage,
    /// The client fell too far behind; events were dropped for it.
    Lagged,
    ShuttingDown,
    Internal,
}

/// What the daemon is doing, as shown in every client's status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    /// The default model is still loading; input is queued behind it.
    Loading,
    Idle,
    /// Hands-free listening, nobody speaking.
    Listening,
    /// Someone is speaking (voice detected); the utterance is being collected.
    Hearing,
    Thinking,
    Speaking,
    Error,
}

impl DaemonState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loading => "loading",
            Self::Idle => "idle",
            Self::Listening => "listening",
            Self::Hearing => "hearing",
            Self::Thinking => "thinking",
            Self::Speaking => "speaking",
            Self::Error => "error",
        }
    }
}

/// Load state of the LLM's weights (remote backends are `ready` at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelLoad {
    NotLoaded,
    Loading,
    Ready,
    Failed { reason: String },
}

/// Which LLM serves the current character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmInfo {
    /// `embedded` or `openai_compatible` (more providers later).
    pub backend: String,
    pub model: String,
}

/// A snapshot of the daemon, as `vtuber status --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: DaemonState,
    pub character: String,
    pub llm: LlmInfo,
    pub model_load: ModelLoad,
    pub clients: usize,
    pub daemon_version: String,
    pub uptime_secs: f64,
    pub pid: u32,
    pub conversation_id: Option<i64>,
    pub socket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// Set when the state is `error`: the last failure, for the status line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorBody>,
    /// Speech engines and audio devices; `None` when voice is disabled in the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Box<VoiceStatus>>,
    /// The browser page's address when the web server runs, with `?token=` when the
    /// page needs its access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    /// `token` or `none` (`web.auth`) when the web server runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_auth: Option<String>,
    /// Why the web server is not running, and what to do, when it failed to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_error: Option<String>,
    /// Why the avatar page could not show the character's model (e.g. a Cubism 5 model
    /// and a Cubism Core that cannot read it), as the page last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_error: Option<String>,
    /// Every configuration file read (`config_file`, overlays, the profile's), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<String>,
    /// Why the last reload changed nothing; cleared by the next good one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_error: Option<ErrorBody>,
    /// Settings changed by reloads that wait for a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
    /// How the engines that run here share the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuPlan>,
}

/// Threads each local engine runs, planned together from the cores so that none
/// starves another (config values override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuPlan {
    pub cores: u32,
    /// The embedded model's decode.
    pub llm_threads: u32,
    /// Whisper.
    pub asr_threads: u32,
    /// One Piper synthesis.
    pub tts_threads: u32,
    /// Voice detection.
    pub vad_threads: u32,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The files read, in the order applied.
    pub files: Vec<String>,
    /// What changed and now applies, such as `llm.model` or `mcp server \`time\` added`.
    pub applied: Vec<String>,
    /// Keys that changed but take effect only when the daemon restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

/// Voice input and output, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceStatus {
    /// `"ready"`, or why there is no local audio (e.g. `"no audio device"`).
    pub audio: String,
    /// Microphone in use, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_device: Option<String>,
    /// Speaker in use, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_device: Option<String>,
    /// Hands-free listening on the daemon's microphone.
    pub listening: bool,
    /// The push-to-talk key is held.
    #[serde(default)]
    pub push_to_talk: bool,
    /// `off`, `voice` or `push_to_talk`: what may interrupt the character.
    pub barge_in: String,
    /// `local`, `clients` or `both`: where replies are played.
    pub playback: String,
    /// Echo cancellation on the daemon's microphone: `webrtc`, `off`, or why unavailable.
    pub echo_cancellation: String,
    pub vad: EngineStatus,
    pub asr: EngineStatus,
    pub tts: EngineStatus,
}

/// One speech engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// e.g. `silero`, `whisper`, `piper`, `espeak`, `openai`.
    pub backend: String,
    /// Model or voice in use.
    pub model: String,
    pub load: ModelLoad,
}

/// One stretch of speech: 16-bit mono WAV plus what lip sync needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechAudio {
    pub wav_base64: String,
    pub sample_rate: u32,
    pub duration_ms: u32,
    /// RMS of each `slice_ms` slice divided by the loudest slice's (loudest = 1.0).
    pub volumes: Vec<f32>,
    pub slice_ms: u32,
}

/// A character as listed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharacterInfo {
    /// File stem, the name used to switch.
    pub id: String,
    /// Display name.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub greeting: Option<String>,
    /// Where it came from: a file path, or `built-in`.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A picture attached to a message: the encoded file (PNG, JPEG, WebP or GIF) in
/// standard base64, and its MIME type (`image/png`, ...). The daemon decodes the data
/// to tell the format, so a wrong or empty `mime_type` is tolerated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInput {
    #[serde(default)]
    pub mime_type: String,
    pub data_base64: String,
}

impl ImageInput {
    pub fn new(mime_type: impl Into<String>, data_base64: impl Into<String>) -> Self {
        Self {
            mime_type: mime_type.into(),
            data_base64: data_base64.into(),
        }
    }
}

/// A stored picture of a user message: the SHA-256 (hex) of the file the daemon
/// keeps as `images/<sha256>.<ext>` in its data folder, and its MIME type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    pub sha256: String,
    pub mime_type: String,
}

/// One row of stored history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: i64,
    pub role: Role,
    pub text: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// The reply was cut short (barge-in, new input, shutdown, failure) and is partial.
    #[serde(default)]
    pub interrupted: bool,
    /// The daemon stopped the reply at a per-turn limit; `text` is the part received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<CutReason>,
    /// In a paged read: this entry carries the message's text from this byte offset on
    /// (the earlier bytes came in the previous page, under the same `id`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub text_offset: u64,
    /// In a paged read: more of this message's text follows in the next page.
    #[serde(default, skip_serializing_if = "is_false")]
    pub text_continues: bool,
    /// Pictures sent with a user message (in a paged read, on the first part only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<StoredImage>,
}

impl StoredMessage {
    /// A whole message, as stored.
    pub fn new(id: i64, role: Role, text: impl Into<String>, created_ms: i64) -> Self {
        Self {
            id,
            role,
            text: text.into(),
            created_ms,
            interrupted: false,
            cut: None,
            text_offset: 0,
            text_continues: false,
            images: Vec::new(),
        }
    }
}

/// Where a page of `get_conversation` starts: a message id and a byte offset into that
/// message's text (non-zero only when the previous page ended inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCursor {
    pub message_id: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub text_offset: u64,
}

/// Appends one page of `get_conversation` to the messages read so far, joining a
/// message that was split across pages back into one.
pub fn append_page(messages: &mut Vec<StoredMessage>, page: Vec<StoredMessage>) {
    for m in page {
        match messages.last_mut() {
            Some(last) if m.text_offset > 0 && last.id == m.id => {
                last.text.push_str(&m.text);
                last.text_continues = m.text_continues;
            }
            _ => messages.push(m),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Which per-turn limit stopped a reply (`llm.max_reply_*` in the daemon's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutReason {
    /// The reply reached `llm.max_reply_tokens` or `llm.max_reply_bytes`.
    Length,
    /// The reply took longer than `llm.max_reply_secs`.
    Time,
}

impl CutReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Time => "time",
        }
    }
}

/// Why and where the daemon stopped a reply, for clients to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyCut {
    pub reason: CutReason,
    /// A sentence for people, naming the limit and the setting that raises it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: i64,
    pub character: String,
    pub title: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub message_count: u64,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TurnOutcome {
    Finished,
    Interrupted,
    Failed { error: ErrorBody },
}

/// Token counts, when the backend reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Broadcast to every subscribed client, in one order for all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    StateChanged {
        state: DaemonState,
    },
    ModelLoad {
        load: ModelLoad,
    },
    /// A turn began: `text` is the user's input, `origin` the client label it came from.
    TurnStarted {
        turn_id: u64,
        conversation_id: i64,
        text: String,
        origin: String,
    },
    /// A piece of the reply, in order. Concatenating deltas gives the reply text.
    Delta {
        turn_id: u64,
        text: String,
    },
    TurnEnded {
        turn_id: u64,
        #[serde(flatten)]
        outcome: TurnOutcome,
        /// The reply as stored (partial when interrupted or cut). Empty when
        /// `text_omitted`: a reply too large to repeat in one frame.
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// Set when a daemon limit stopped the reply (the outcome is still `finished`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cut: Option<ReplyCut>,
        /// The reply was too large to repeat here: the turn's `delta` events carry it,
        /// and `get_conversation` reads it back.
        #[serde(default, skip_serializing_if = "is_false")]
        text_omitted: bool,
    },
    CharacterChanged {
        character: CharacterInfo,
        llm: LlmInfo,
    },
    /// A character file was added, edited or removed on disk.
    CharactersReloaded {
        characters: Vec<CharacterInfo>,
    },
    ConversationChanged {
        conversation_id: i64,
    },
    /// A conversation was deleted; `was_current` means the stage now has none until the
    /// next input starts one.
    ConversationDeleted {
        id: i64,
        was_current: bool,
    },
    ClientsChanged {
        clients: usize,
    },
    /// Something went wrong outside any request (e.g. a model failed to load).
    Error {
        error: ErrorBody,
    },
    /// An MCP server changed state (starting, ready, failed, restarting) or its tools.
    McpServerChanged {
        server: McpServerInfo,
    },
    /// The LLM asked for a tool; it runs now (after any approval).
    ToolCallStarted {
        turn_id: u64,
        call_id: String,
        server: String,
        tool: String,
        /// Arguments with secrets redacted.
        arguments: serde_json::Value,
    },
    /// `notifications/progress` from the server for a running call.
    ToolCallProgress {
        call_id: String,
        progress: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    ToolCallEnded {
        turn_id: u64,
        call_id: String,
        outcome: ToolOutcome,
        duration_ms: u64,
        /// A short, single-line summary of the result or error.
        summary: String,
    },
    /// A tool call needs a person's yes or no. Any client may answer with
    /// `approve_tool_call`; no answer within `timeout_secs` means deny.
    ApprovalRequested {
        request_id: u64,
        turn_id: u64,
        call_id: String,
        server: String,
        tool: String,
        #[serde(default)]
        description: String,
        arguments: serde_json::Value,
        timeout_secs: u64,
    },
    ApprovalResolved {
        request_id: u64,
        resolution: ApprovalResolution,
    },
    /// One sentence of the reply is ready to be spoken, in sentence order. `text` is the
    /// sentence as shown (expression tags removed); `audio` is `None` when there is
    /// nothing to say aloud (e.g. only code) or synthesis failed (an `error` event says why).
    Sentence {
        turn_id: u64,
        index: u32,
        text: String,
        /// Expression tags found in the sentence, in order (e.g. `joy`).
        #[serde(default)]
        expressions: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio: Option<SpeechAudio>,
        /// Time spent synthesizing it, in milliseconds (for latency breakdowns).
        #[serde(default)]
        synth_ms: u32,
    },
    /// Every sentence of the turn has been delivered (`interrupted`: speech was cut short).
    SpeechFinished {
        turn_id: u64,
        sentences: u32,
        interrupted: bool,
    },
    /// Voice detection saw speech start (`speaking: true`) or the utterance end.
    VoiceActivity {
        speaking: bool,
    },
    /// Microphone level while listening (0..1, about ten per second).
    InputLevel {
        level: f32,
    },
    /// An utterance was transcribed; `turn_id` is the turn it started, if any.
    Transcript {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turn_id: Option<u64>,
        /// Time speech recognition took, in milliseconds.
        #[serde(default)]
        asr_ms: u32,
    },
    /// Voice settings or devices changed.
    VoiceChanged {
        voice: Box<VoiceStatus>,
    },
    /// Sent to one client only, when it fell behind: `missed` events were dropped.
    /// It should re-read state (`status`, `get_conversation`) to resync.
    Lagged {
        missed: u64,
    },
    ShuttingDown,
    /// An event type this build does not know (from a newer daemon). Never sent;
    /// lets older clients skip new events instead of failing to decode them.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_wire_shape() {
        let f = ClientFrame {
            id: 7,
            request: Request::SendText {
                text: "hi".into(),
                images: Vec::new(),
            },
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"id": 7, "request": {"type": "send_text", "text": "hi"}})
        );
        let hello: ClientFrame = serde_json::from_value(
            json!({"id": 1, "request": {"type": "hello", "protocol": 1, "client": "x"}}),
        )
        .unwrap();
        assert!(matches!(
            hello.request,
            Request::Hello {
                subscribe: true,
                ..
            }
        ));
    }

    #[test]
    fn response_wire_shape() {
        let ok = ServerFrame::Response {
            id: Some(3),
            outcome: Outcome::Ok(Reply::Pong),
        };
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(
            v,
            json!({"kind": "response", "id": 3, "result": {"type": "pong"}})
        );
        assert_eq!(serde_json::from_value::<ServerFrame>(v).unwrap(), ok);

        let err = ServerFrame::Response {
            id: None,
            outcome: Outcome::Err(
                ErrorBody::new(ErrorCode::BadRequest, "bad").with_hint("send JSON"),
            ),
        };
        let v = serde_json::to_value(&err).unwrap();
        assert_eq!(
            v,
            json!({"kind": "response", "id": null,
                   "error": {"code": "bad_request", "message": "bad", "hint": "send JSON"}})
        );
        assert_eq!(serde_json::from_value::<ServerFrame>(v).unwrap(), err);
    }

    #[test]
    fn event_wire_shape() {
        let ev = ServerFrame::Event {
            seq: 9,
            event: Event::TurnEnded {
                turn_id: 2,
                outcome: TurnOutcome::Failed {
                    error: ErrorBody::new(ErrorCode::Llm, "boom"),
                },
                text: "par".into(),
                usage: None,
                cut: None,
                text_omitted: false,
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({"kind": "event", "seq": 9, "event": {"type": "turn_ended", "turn_id": 2,
                   "outcome": "failed", "error": {"code": "llm", "message": "boom"}, "text": "par"}})
        );
        assert_eq!(serde_json::from_value::<ServerFrame>(v).unwrap(), ev);
    }

    #[test]
    fn cut_and_omitted_turn_end_wire_shape() {
        let ev = Event::TurnEnded {
            turn_id: 4,
            outcome: TurnOutcome::Finished,
            text: String::new(),
            usage: None,
            cut: Some(ReplyCut {
                reason: CutReason::Time,
                message: "stopped".into(),
            }),
            text_omitted: true,
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({"type": "turn_ended", "turn_id": 4, "outcome": "finished", "text": "",
                   "cut": {"reason": "time", "message": "stopped"}, "text_omitted": true})
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), ev);
    }

    #[test]
    fn pages_join_split_messages() {
        let mut all = Vec::new();
        let mut a = StoredMessage::new(1, Role::User, "hi", 0);
        a.text_continues = false;
        let mut b = StoredMessage::new(2, Role::Assistant, "abc", 0);
        b.text_continues = true;
        append_page(&mut all, vec![a, b]);
        let mut c = StoredMessage::new(2, Role::Assistant, "def", 0);
        c.text_offset = 3;
        append_page(&mut all, vec![c, StoredMessage::new(3, Role::User, "x", 0)]);
        let texts: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["hi", "abcdef", "x"]);
        assert!(!all[1].text_continues);
        // An old daemon's reply (no paging fields) still decodes.
        let old: StoredMessage = serde_json::from_value(
            json!({"id": 1, "role": "user", "text": "t", "created_ms": 0, "interrupted": false}),
        )
        .unwrap();
        assert_eq!(old, StoredMessage::new(1, Role::User, "t", 0));
    }

    #[test]
    fn unknown_request_type_is_an_error() {
        assert!(
            serde_json::from_value::<ClientFrame>(json!({"id": 1, "request": {"type": "nope"}}))
                .is_err()
        );
    }
}

/// A person's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    AllowOnce,
    /// Allow this tool without asking again until the daemon restarts.
    AllowForSession,
    Deny,
}

/// How an approval request was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalResolution {
    Approved,
    ApprovedForSession,
    Denied,
    TimedOut,
    /// The turn was interrupted before anyone answered.
    Cancelled,
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    Ok,
    /// The tool ran and reported an error (`isError`), or the server failed.
    Error,
    /// Policy or a person said no.
    Denied,
    TimedOut,
    /// Barge-in or interruption cancelled it.
    Cancelled,
}

/// How a policy treats a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolPolicy {
    Allow,
    Ask,
    Deny,
}

/// Life cycle of an MCP server connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum McpServerState {
    Starting,
    Ready,
    Failed {
        reason: String,
    },
    /// Waiting to restart after a crash.
    Restarting {
        attempt: u32,
        in_ms: u64,
        reason: String,
    },
    Disabled,
}

/// Whether the operating system confines a stdio server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxLevel {
    /// Every requested restriction is enforced by the kernel.
    Enforced,
    /// Some restrictions are enforced; `sandbox_detail` says which are not.
    Partial,
    /// The kernel offers no Landlock: the server runs unconfined.
    Unsupported,
    /// Not applicable (HTTP server) or switched off in the config.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerInfo {
    pub name: String,
    /// `stdio` or `http`.
    pub transport: String,
    #[serde(flatten)]
    pub state: McpServerState,
    pub tools: usize,
    pub sandbox: SandboxLevel,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox_detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolInfo {
    pub server: String,
    /// The tool's own name.
    pub name: String,
    /// The name the LLM sees (`server__tool`).
    pub exposed_name: String,
    #[serde(default)]
    pub description: String,
    pub input_schema: serde_json::Value,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub destructive: bool,
    /// What the policy decides for this tool.
    pub policy: ToolPolicy,
}

/// One row of the tool-call audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub time_ms: i64,
    pub character: String,
    pub server: String,
    pub tool: String,
    /// Arguments as JSON text, secrets redacted.
    pub arguments: String,
    /// `auto`, `approved`, `approved_for_session`, `denied`, `timed_out`, `cancelled`.
    pub decision: String,
    pub duration_ms: u64,
    pub outcome: ToolOutcome,
    /// Short result or error text.
    #[serde(default)]
    pub detail: String,
}
