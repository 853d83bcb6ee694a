//! The chat's model: messages with their tool calls, pending approvals, the link to
//! the daemon and what the status line shows. Plain data and read-only queries: the
//! update changes it, the view draws it; it depends on neither.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use vtuber_shared::{
    CharacterInfo, CutReason, DaemonState, ErrorBody, McpServerInfo, McpServerState, Role, Status,
    StoredMessage, ToolOutcome,
};

use super::input::Input;
use super::scrollback::{LineCache, Viewport};
use super::wrap::sanitize;

/// Who a message is from, which decides how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Character,
    Error,
    System,
}

#[derive(Debug, Clone, PartialEq, Hash)]
pub struct Message {
    pub kind: Kind,
    /// Sanitised for drawing (no control characters).
    pub text: String,
    /// For errors: what to do about it.
    pub hint: Option<String>,
    /// The turn this message belongs to, while that is known.
    pub turn_id: Option<u64>,
    /// For user messages of live turns: the client label it was sent from.
    pub origin: Option<String>,
    /// A reply still streaming in.
    pub streaming: bool,
    pub interrupted: bool,
    /// For replies: the daemon stopped it at a per-turn limit.
    pub cut: Option<CutReason>,
    /// For replies: the tool calls made for it, in order.
    pub tools: Vec<ToolCall>,
}

/// One tool call, shown as a status line under the reply's header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolCall {
    pub call_id: String,
    pub server: String,
    pub tool: String,
    /// Arguments on one line, shortened.
    pub args: String,
    pub state: ToolState,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ToolState {
    /// Waiting for a person's answer.
    Approval,
    /// Running; `progress` is what the server last reported (may be empty).
    Running {
        progress: String,
    },
    Ended {
        outcome: Ended,
        text: String,
    },
}

/// [`ToolOutcome`], hashable for the line cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ended {
    Ok,
    Error,
    Denied,
    TimedOut,
    Cancelled,
}

impl Ended {
    pub fn outcome(self) -> ToolOutcome {
        match self {
            Self::Ok => ToolOutcome::Ok,
            Self::Error => ToolOutcome::Error,
            Self::Denied => ToolOutcome::Denied,
            Self::TimedOut => ToolOutcome::TimedOut,
            Self::Cancelled => ToolOutcome::Cancelled,
        }
    }

    pub(super) fn from_outcome(outcome: ToolOutcome) -> Self {
        match outcome {
            ToolOutcome::Ok => Self::Ok,
            ToolOutcome::Error => Self::Error,
            ToolOutcome::Denied => Self::Denied,
            ToolOutcome::TimedOut => Self::TimedOut,
            ToolOutcome::Cancelled => Self::Cancelled,
        }
    }
}

/// An approval request waiting in the dialog.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingApproval {
    pub request_id: u64,
    pub server: String,
    pub tool: String,
    pub description: String,
    /// Arguments as pretty JSON, sanitised.
    pub arguments: String,
    /// When the daemon denies it for lack of an answer.
    pub deadline: Instant,
}

impl Message {
    pub fn new(kind: Kind, text: &str) -> Self {
        Self {
            kind,
            text: sanitize(text),
            hint: None,
            turn_id: None,
            origin: None,
            streaming: false,
            interrupted: false,
            cut: None,
            tools: Vec::new(),
        }
    }

    pub fn error(error: &ErrorBody) -> Self {
        Self {
            hint: error.hint.as_deref().map(sanitize),
            ..Self::new(Kind::Error, &error.message)
        }
    }

    pub(super) fn from_stored(m: &StoredMessage) -> Self {
        let kind = match m.role {
            Role::User => Kind::User,
            Role::Assistant => Kind::Character,
            Role::System | Role::Tool => Kind::System,
        };
        Self {
            interrupted: m.interrupted,
            cut: m.cut,
            ..Self::new(kind, &m.text)
        }
    }
}

/// The link to the daemon, as shown in the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    Connected,
    /// Lost; `attempt` reconnects have failed so far.
    Reconnecting {
        attempt: u32,
    },
}

/// Everything the chat shows and remembers between events.
pub struct App {
    pub messages: Vec<Message>,
    pub input: Input,
    pub status: Option<Status>,
    pub character: Option<CharacterInfo>,
    /// Every character's id, for `/character` completion.
    pub character_ids: Vec<String>,
    pub conn: Conn,
    pub show_help: bool,
    /// First visible line when scrolled back; `None` follows the newest message.
    pub scroll: Option<usize>,
    pub viewport: Viewport,
    /// Wrapped lines of settled messages; the view fills and reads it.
    pub line_cache: LineCache,
    /// Animation frame for busy states.
    pub tick: usize,
    /// Turns this client sent (others' turns are labelled with their origin).
    pub(super) my_turns: HashSet<u64>,
    /// The conversation most recently asked for; older answers are ignored.
    pub(super) wanted_conversation: Option<i64>,
    /// Turns heard of since the last conversation load was asked for: the answer is
    /// a snapshot from before them, so their messages survive it.
    pub(super) turns_since_load: HashSet<u64>,
    /// Whether the shown messages are a loaded conversation (so a greeting may show).
    pub(super) loaded: bool,
    /// Approval requests, the first one shown in the dialog.
    pub approvals: VecDeque<PendingApproval>,
    /// The time the countdowns are measured against; the runner keeps it current.
    pub now: Instant,
    /// MCP servers by name, as last reported.
    pub mcp: BTreeMap<String, McpServerInfo>,
    /// Server and tool of calls announced by an approval request.
    pub(super) call_names: HashMap<String, (String, String)>,
    /// Microphone level (0..1) while listening.
    pub input_level: f32,
    /// Pictures `/image` attached to the next message.
    pub pending_images: Vec<vtuber_shared::ImageInput>,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    pub fn new() -> Self {
        Self {
            messages: Vec::new(),
            input: Input::default(),
            status: None,
            character: None,
            conn: Conn::Connected,
            show_help: false,
            character_ids: Vec::new(),
            scroll: None,
            viewport: Viewport::default(),
            line_cache: Default::default(),
            tick: 0,
            my_turns: HashSet::new(),
            wanted_conversation: None,
            turns_since_load: HashSet::new(),
            loaded: false,
            approvals: VecDeque::new(),
            now: Instant::now(),
            mcp: BTreeMap::new(),
            call_names: HashMap::new(),
            input_level: 0.0,
            pending_images: Vec::new(),
        }
    }

    /// The character's display name, falling back to the id from status.
    pub fn character_name(&self) -> &str {
        match (&self.character, &self.status) {
            (Some(c), _) => &c.name,
            (None, Some(s)) => &s.character,
            (None, None) => "Character",
        }
    }

    pub fn is_mine(&self, turn_id: Option<u64>) -> bool {
        turn_id.is_none_or(|t| self.my_turns.contains(&t))
    }

    /// Whether a tool call is running (or waiting for approval) somewhere.
    pub fn tool_running(&self) -> bool {
        self.messages.iter().any(|m| {
            m.tools
                .iter()
                .any(|t| !matches!(t.state, ToolState::Ended { .. }))
        })
    }

    /// Tools offered by ready MCP servers, when any server is configured.
    pub fn tools_ready(&self) -> Option<usize> {
        (!self.mcp.is_empty()).then(|| {
            self.mcp
                .values()
                .filter(|s| s.state == McpServerState::Ready)
                .map(|s| s.tools)
                .sum()
        })
    }

    /// Seconds left to answer `approval`, rounded up.
    pub fn seconds_left(&self, approval: &PendingApproval) -> u64 {
        let left = approval.deadline.saturating_duration_since(self.now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }

    /// Drops approval requests whose time ran out (the daemon denies them).
    pub fn busy(&self) -> bool {
        self.messages.iter().any(|m| m.streaming)
            || !self.approvals.is_empty()
            || self.tool_running()
            || self.status.as_ref().is_some_and(|s| {
                matches!(
                    s.state,
                    DaemonState::Loading | DaemonState::Thinking | DaemonState::Speaking
                )
            })
    }
}
