//! Chat state and how it changes: daemon events, replies and keys go in, requests
//! for the runner to make come out as [`Action`]s. No I/O here, so all of it is
//! testable and the view can be rendered from any state.

use std::collections::HashSet;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use vtuber_shared::{
    CharacterInfo, ConversationSummary, DaemonState, ErrorBody, Event, Role, Status, StoredMessage,
    TurnOutcome,
};

use super::input::Input;
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
        }
    }

    pub fn error(error: &ErrorBody) -> Self {
        Self {
            hint: error.hint.as_deref().map(sanitize),
            ..Self::new(Kind::Error, &error.message)
        }
    }

    fn from_stored(m: &StoredMessage) -> Self {
        let kind = match m.role {
            Role::User => Kind::User,
            Role::Assistant => Kind::Character,
            Role::System | Role::Tool => Kind::System,
        };
        Self {
            interrupted: m.interrupted,
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

/// Something the runner should do on the app's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(String),
    Interrupt,
    NewConversation,
    LoadConversation(i64),
    LoadCharacters,
    /// Re-read status, then the current conversation (after missed events).
    Resync,
    Quit,
}

/// What the last render measured, for scrolling by pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct Viewport {
    pub height: usize,
    pub total_lines: usize,
}

impl Viewport {
    pub fn max_top(&self) -> usize {
        self.total_lines.saturating_sub(self.height)
    }
}

pub struct App {
    pub messages: Vec<Message>,
    pub input: Input,
    pub status: Option<Status>,
    pub character: Option<CharacterInfo>,
    pub conn: Conn,
    pub show_help: bool,
    /// First visible line when scrolled back; `None` follows the newest message.
    pub scroll: Option<usize>,
    pub viewport: Viewport,
    /// Wrapped lines of settled messages, owned by the view.
    pub line_cache: super::view::LineCache,
    /// Animation frame for busy states.
    pub tick: usize,
    /// Turns this client sent (others' turns are labelled with their origin).
    my_turns: HashSet<u64>,
    /// The conversation most recently asked for; older answers are ignored.
    wanted_conversation: Option<i64>,
    /// Whether the shown messages are a loaded conversation (so a greeting may show).
    loaded: bool,
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
            scroll: None,
            viewport: Viewport::default(),
            line_cache: Default::default(),
            tick: 0,
            my_turns: HashSet::new(),
            wanted_conversation: None,
            loaded: false,
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

    pub fn busy(&self) -> bool {
        self.messages.iter().any(|m| m.streaming)
            || self.status.as_ref().is_some_and(|s| {
                matches!(
                    s.state,
                    DaemonState::Loading | DaemonState::Thinking | DaemonState::Speaking
                )
            })
    }

    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    pub fn push_error(&mut self, error: &ErrorBody) {
        self.push(Message::error(error));
    }

    pub fn push_system(&mut self, text: &str) {
        self.push(Message::new(Kind::System, text));
    }

    // ------------------------------------------------------------ connection

    /// A (re)connection succeeded: take its status and ask for the rest.
    pub fn connected(&mut self, status: Status) -> Vec<Action> {
        // The reload that follows replaces the view, connection notes included.
        self.conn = Conn::Connected;
        self.my_turns.clear();
        let mut actions = vec![Action::LoadCharacters];
        actions.extend(self.set_status(status));
        actions
    }

    pub fn disconnected(&mut self) {
        if self.conn == Conn::Connected {
            self.push(Message {
                hint: Some("retrying; start it with `vtuber daemon start` if it stopped".into()),
                ..Message::new(Kind::Error, "lost the connection to vtuberd")
            });
        }
        for m in &mut self.messages {
            if m.streaming {
                m.streaming = false;
                m.interrupted = true;
            }
        }
        if let Some(s) = &mut self.status {
            s.state = DaemonState::Idle;
        }
        self.conn = Conn::Reconnecting {
            attempt: match self.conn {
                Conn::Connected => 0,
                Conn::Reconnecting { attempt } => attempt,
            },
        };
    }

    pub fn reconnect_failed(&mut self) {
        if let Conn::Reconnecting { attempt } = &mut self.conn {
            *attempt += 1;
        }
    }

    // ----------------------------------------------------------------- replies

    /// New status (from hello or a resync): loads the conversation it names.
    pub fn set_status(&mut self, status: Status) -> Vec<Action> {
        let conversation = status.conversation_id;
        self.status = Some(status);
        match conversation {
            Some(id) => {
                self.wanted_conversation = Some(id);
                vec![Action::LoadConversation(id)]
            }
            None => {
                // No conversation yet: an empty one, where the greeting belongs.
                self.wanted_conversation = None;
                self.messages = self.live_messages();
                self.loaded = true;
                self.add_greeting_if_empty();
                vec![]
            }
        }
    }

    pub fn set_characters(&mut self, current: &str, characters: &[CharacterInfo]) {
        self.character = characters
            .iter()
            .find(|c| c.id == current || c.name == current)
            .cloned();
        self.add_greeting_if_empty();
    }

    /// The prompt and partial reply of turns still streaming, which a reload keeps.
    fn live_messages(&self) -> Vec<Message> {
        let live: HashSet<u64> = self
            .messages
            .iter()
            .filter(|m| m.streaming)
            .filter_map(|m| m.turn_id)
            .collect();
        self.messages
            .iter()
            .filter(|m| m.turn_id.is_some_and(|t| live.contains(&t)))
            .cloned()
            .collect()
    }

    /// Remembers which conversation a load is for, so a stale answer is dropped.
    pub fn loading_conversation(&mut self, id: i64) {
        self.wanted_conversation = Some(id);
    }

    /// A loaded conversation replaces the view, keeping replies still streaming in.
    pub fn set_conversation(
        &mut self,
        conversation: &ConversationSummary,
        stored: &[StoredMessage],
    ) {
        if self
            .wanted_conversation
            .is_some_and(|id| id != conversation.id)
        {
            return;
        }
        if let Some(s) = &mut self.status {
            s.conversation_id = Some(conversation.id);
        }
        let live = self.live_messages();
        self.messages = stored.iter().map(Message::from_stored).collect();
        for m in live {
            // The daemon may already have stored the prompt of the running turn.
            let duplicate = m.kind == Kind::User
                && self
                    .messages
                    .last()
                    .is_some_and(|last| last.kind == Kind::User && last.text == m.text);
            if !duplicate {
                self.messages.push(m);
            }
        }
        self.loaded = true;
        self.scroll = None;
        self.add_greeting_if_empty();
    }

    fn add_greeting_if_empty(&mut self) {
        if !self.loaded || !self.messages.is_empty() {
            return;
        }
        if let Some(greeting) = self.character.as_ref().and_then(|c| c.greeting.as_deref())
            && !greeting.trim().is_empty()
        {
            self.messages.push(Message::new(Kind::Character, greeting));
        }
    }

    pub fn turn_accepted(&mut self, turn_id: u64) {
        self.my_turns.insert(turn_id);
    }

    /// `send_text` was refused: say why and give the text back to edit.
    pub fn send_failed(&mut self, text: &str, error: &ErrorBody) {
        self.push_error(error);
        if self.input.is_empty() {
            self.input.set(text);
        }
    }

    // ------------------------------------------------------------------ events

    fn reply_index(&self, turn_id: u64) -> Option<usize> {
        self.messages
            .iter()
            .rposition(|m| m.turn_id == Some(turn_id) && m.kind == Kind::Character)
    }

    pub fn apply_event(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::StateChanged { state } => {
                if let Some(s) = &mut self.status {
                    s.state = state;
                }
            }
            Event::ModelLoad { load } => {
                if let Some(s) = &mut self.status {
                    s.model_load = load;
                }
            }
            Event::TurnStarted {
                turn_id,
                conversation_id,
                text,
                origin,
            } => {
                if let Some(s) = &mut self.status {
                    s.conversation_id = Some(conversation_id);
                }
                self.wanted_conversation = Some(conversation_id);
                // The greeting is not part of the stored conversation; keep it anyway.
                self.push(Message {
                    turn_id: Some(turn_id),
                    origin: Some(origin),
                    ..Message::new(Kind::User, &text)
                });
                self.push(Message {
                    turn_id: Some(turn_id),
                    streaming: true,
                    ..Message::new(Kind::Character, "")
                });
            }
            Event::Delta { turn_id, text } => {
                let text = sanitize(&text);
                match self.reply_index(turn_id) {
                    Some(i) => self.messages[i].text.push_str(&text),
                    // We joined mid-turn: show the rest of the reply anyway.
                    None => self.push(Message {
                        turn_id: Some(turn_id),
                        streaming: true,
                        ..Message::new(Kind::Character, &text)
                    }),
                }
            }
            Event::TurnEnded {
                turn_id,
                outcome,
                text,
                ..
            } => {
                let i = match self.reply_index(turn_id) {
                    Some(i) => i,
                    None => {
                        self.push(Message {
                            turn_id: Some(turn_id),
                            ..Message::new(Kind::Character, "")
                        });
                        self.messages.len() - 1
                    }
                };
                let reply = &mut self.messages[i];
                reply.streaming = false;
                // The stored text is authoritative (deltas may have been missed).
                if !text.is_empty() {
                    reply.text = sanitize(&text);
                }
                let error = match outcome {
                    TurnOutcome::Finished => None,
                    TurnOutcome::Interrupted => {
                        reply.interrupted = true;
                        None
                    }
                    TurnOutcome::Failed { error } => {
                        // A partial reply stays, marked as cut short.
                        reply.interrupted = !reply.text.is_empty();
                        Some(error)
                    }
                };
                // An empty reply with nothing to mark says nothing: drop it.
                if reply.text.is_empty() && !reply.interrupted {
                    self.messages.remove(i);
                }
                if let Some(error) = error {
                    self.push_error(&error);
                }
            }
            Event::CharacterChanged { character, llm } => {
                self.push_system(&format!("now talking to {}", character.name));
                if let Some(s) = &mut self.status {
                    s.llm = llm;
                    s.character = character.id.clone();
                }
                self.character = Some(character);
                return vec![Action::Resync];
            }
            Event::CharactersReloaded { characters } => {
                if let Some(current) = &self.character
                    && let Some(updated) = characters.iter().find(|c| c.id == current.id)
                {
                    self.character = Some(updated.clone());
                }
            }
            Event::ConversationChanged { conversation_id } => {
                if let Some(s) = &mut self.status {
                    s.conversation_id = Some(conversation_id);
                }
                self.wanted_conversation = Some(conversation_id);
                return vec![Action::LoadConversation(conversation_id)];
            }
            Event::ConversationDeleted { id, was_current } => {
                let current = self.status.as_ref().and_then(|s| s.conversation_id);
                if was_current || current == Some(id) {
                    if let Some(s) = &mut self.status {
                        s.conversation_id = None;
                    }
                    self.wanted_conversation = None;
                    self.messages = self.live_messages();
                    self.loaded = true;
                    self.add_greeting_if_empty();
                    self.push_system(&format!(
                        "conversation {id} was deleted; your next message starts a new one"
                    ));
                }
            }
            // Tool-call events are shown once the chat view supports them.
            Event::McpServerChanged { .. }
            | Event::ToolCallStarted { .. }
            | Event::ToolCallProgress { .. }
            | Event::ToolCallEnded { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalResolved { .. }
            | Event::Unknown => {}
            Event::ClientsChanged { clients } => {
                if let Some(s) = &mut self.status {
                    s.clients = clients;
                }
            }
            Event::Error { error } => self.push_error(&error),
            Event::Lagged { .. } => return vec![Action::Resync],
            Event::ShuttingDown => self.push_system("vtuberd is shutting down"),
        }
        vec![]
    }

    // -------------------------------------------------------------------- keys

    pub fn scroll_up(&mut self, lines: usize) {
        let top = self.scroll.unwrap_or(self.viewport.max_top());
        self.scroll = Some(top.saturating_sub(lines));
    }

    pub fn scroll_down(&mut self, lines: usize) {
        if let Some(top) = self.scroll {
            let top = top + lines;
            self.scroll = (top < self.viewport.max_top()).then_some(top);
        }
    }

    fn page(&self) -> usize {
        self.viewport.height.saturating_sub(1).max(1)
    }

    pub fn handle_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_up(3),
            MouseEventKind::ScrollDown => self.scroll_down(3),
            _ => {}
        }
    }

    pub fn handle_paste(&mut self, text: &str) {
        self.show_help = false;
        self.input.insert(text);
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Some(Action::Quit);
        }
        if self.show_help {
            // Any key closes the help; only `?` and Esc are swallowed by it.
            self.show_help = false;
            if matches!(key.code, KeyCode::Char('?') | KeyCode::Esc) {
                return None;
            }
        }
        match key.code {
            KeyCode::Enter if alt || shift => self.input.insert("\n"),
            KeyCode::Char('j') if ctrl => self.input.insert("\n"),
            KeyCode::Enter => return self.submit(),
            KeyCode::Esc => return Some(Action::Interrupt),
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return Some(Action::Quit),
            KeyCode::Char('n') if ctrl => return Some(Action::NewConversation),
            KeyCode::Char('u') if ctrl => self.input.kill_line_before(),
            KeyCode::Char('w') if ctrl => self.input.kill_word_before(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('?') if self.input.is_empty() => self.show_help = true,
            KeyCode::Char(c) if !ctrl && !alt => {
                let mut buf = [0u8; 4];
                self.input.insert(c.encode_utf8(&mut buf));
            }
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home if ctrl => self.scroll = Some(0),
            KeyCode::End if ctrl => self.scroll = None,
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up if ctrl || shift => self.scroll_up(1),
            KeyCode::Down if ctrl || shift => self.scroll_down(1),
            // Up/Down move within a multi-line input, and scroll otherwise.
            KeyCode::Up => self.line_up_or_scroll(true),
            KeyCode::Down => self.line_up_or_scroll(false),
            KeyCode::PageUp => self.scroll_up(self.page()),
            KeyCode::PageDown => self.scroll_down(self.page()),
            _ => {}
        }
        None
    }

    fn line_up_or_scroll(&mut self, up: bool) {
        let moved = self.input.vertical(up);
        match (moved, up) {
            (true, _) => {}
            (false, true) => self.scroll_up(1),
            (false, false) => self.scroll_down(1),
        }
    }

    fn submit(&mut self) -> Option<Action> {
        if self.input.text().trim().is_empty() {
            return None;
        }
        if self.conn != Conn::Connected {
            self.push(Message {
                hint: Some(
                    "your message is still in the input; press Enter again once reconnected".into(),
                ),
                ..Message::new(Kind::Error, "not connected to vtuberd")
            });
            return None;
        }
        self.scroll = None;
        Some(Action::Send(self.input.take()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crossterm::event::KeyEventState;
    use vtuber_shared::ErrorCode;

    pub fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    fn type_text(app: &mut App, text: &str) {
        for c in text.chars() {
            app.handle_key(key(KeyCode::Char(c), KeyModifiers::NONE));
        }
    }

    fn started(turn_id: u64, text: &str) -> Event {
        Event::TurnStarted {
            turn_id,
            conversation_id: 7,
            text: text.into(),
            origin: "vtuber-chat/0.1.0".into(),
        }
    }

    #[test]
    fn enter_sends_and_modified_enter_adds_a_line() {
        let mut app = App::new();
        type_text(&mut app, "hi");
        assert_eq!(app.handle_key(key(KeyCode::Enter, KeyModifiers::ALT)), None);
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::SHIFT)),
            None
        );
        type_text(&mut app, "there");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            Some(Action::Send("hi\n\nthere".into()))
        );
        assert!(app.input.is_empty());
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
    }

    #[test]
    fn question_mark_toggles_help_only_on_an_empty_input() {
        let mut app = App::new();
        app.handle_key(key(KeyCode::Char('?'), KeyModifiers::NONE));
        assert!(app.show_help);
        app.handle_key(key(KeyCode::Char('?'), KeyModifiers::NONE));
        assert!(!app.show_help);
        type_text(&mut app, "why?");
        assert!(!app.show_help);
        assert_eq!(app.input.text(), "why?");
    }

    #[test]
    fn control_keys() {
        let mut app = App::new();
        let ctrl = KeyModifiers::CONTROL;
        assert_eq!(
            app.handle_key(key(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Action::Interrupt)
        );
        assert_eq!(
            app.handle_key(key(KeyCode::Char('n'), ctrl)),
            Some(Action::NewConversation)
        );
        assert_eq!(
            app.handle_key(key(KeyCode::Char('c'), ctrl)),
            Some(Action::Quit)
        );
        type_text(&mut app, "x");
        // Ctrl+D quits only from an empty input, so it cannot lose a draft.
        assert_eq!(app.handle_key(key(KeyCode::Char('d'), ctrl)), None);
    }

    #[test]
    fn a_streamed_turn_builds_up_and_finishes() {
        let mut app = App::new();
        app.apply_event(started(1, "hello"));
        app.apply_event(Event::Delta {
            turn_id: 1,
            text: "Hi ".into(),
        });
        app.apply_event(Event::Delta {
            turn_id: 1,
            text: "there\x1b[2J".into(),
        });
        assert_eq!(app.messages.len(), 2);
        assert_eq!(app.messages[1].text, "Hi there[2J");
        assert!(app.messages[1].streaming);
        app.apply_event(Event::TurnEnded {
            turn_id: 1,
            outcome: TurnOutcome::Finished,
            text: "Hi there!".into(),
            usage: None,
        });
        assert_eq!(app.messages[1].text, "Hi there!");
        assert!(!app.messages[1].streaming);
        assert!(!app.busy());
    }

    #[test]
    fn interrupted_and_failed_turns_are_marked() {
        let mut app = App::new();
        app.apply_event(started(1, "a"));
        app.apply_event(Event::Delta {
            turn_id: 1,
            text: "par".into(),
        });
        app.apply_event(Event::TurnEnded {
            turn_id: 1,
            outcome: TurnOutcome::Interrupted,
            text: "par".into(),
            usage: None,
        });
        assert!(app.messages[1].interrupted);

        app.apply_event(started(2, "b"));
        app.apply_event(Event::TurnEnded {
            turn_id: 2,
            outcome: TurnOutcome::Failed {
                error: ErrorBody::new(ErrorCode::Llm, "backend down").with_hint("start it"),
            },
            text: String::new(),
            usage: None,
        });
        // The empty reply placeholder is replaced by the error.
        let last = app.messages.last().unwrap();
        assert_eq!(last.kind, Kind::Error);
        assert_eq!(last.hint.as_deref(), Some("start it"));
        assert_eq!(app.messages.len(), 4);
    }

    #[test]
    fn other_clients_turns_are_told_apart_from_ours() {
        let mut app = App::new();
        app.apply_event(started(1, "mine"));
        app.turn_accepted(1);
        app.apply_event(started(2, "theirs"));
        assert!(app.is_mine(app.messages[0].turn_id));
        assert!(!app.is_mine(app.messages[2].turn_id));
    }

    #[test]
    fn deleting_the_current_conversation_clears_the_view() {
        let mut app = App::new();
        app.connected(crate::client::fake::status());
        app.apply_event(started(1, "hello"));
        app.apply_event(Event::TurnEnded {
            turn_id: 1,
            outcome: TurnOutcome::Finished,
            text: "hi".into(),
            usage: None,
        });
        // Another conversation going away changes nothing here.
        app.apply_event(Event::ConversationDeleted {
            id: 3,
            was_current: false,
        });
        assert_eq!(app.messages.len(), 2);
        app.apply_event(Event::ConversationDeleted {
            id: 7,
            was_current: true,
        });
        assert_eq!(app.messages.len(), 1);
        assert_eq!(app.messages[0].kind, Kind::System);
        assert_eq!(app.status.as_ref().unwrap().conversation_id, None);
    }

    #[test]
    fn events_that_need_a_reload_ask_for_one() {
        let mut app = App::new();
        assert_eq!(
            app.apply_event(Event::Lagged { missed: 3 }),
            [Action::Resync]
        );
        assert_eq!(
            app.apply_event(Event::ConversationChanged { conversation_id: 9 }),
            [Action::LoadConversation(9)]
        );
    }

    fn summary(id: i64) -> ConversationSummary {
        ConversationSummary {
            id,
            character: "aria".into(),
            title: String::new(),
            created_ms: 0,
            updated_ms: 0,
            message_count: 0,
        }
    }

    #[test]
    fn loading_keeps_live_turns_and_drops_stale_answers() {
        let mut app = App::new();
        app.loading_conversation(7);
        app.apply_event(started(3, "live"));
        app.apply_event(Event::Delta {
            turn_id: 3,
            text: "part".into(),
        });
        let stored = vec![
            StoredMessage {
                id: 1,
                role: Role::User,
                text: "old".into(),
                created_ms: 0,
                interrupted: false,
            },
            StoredMessage {
                id: 2,
                role: Role::User,
                text: "live".into(),
                created_ms: 0,
                interrupted: false,
            },
        ];
        app.set_conversation(&summary(7), &stored);
        let texts: Vec<&str> = app.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["old", "live", "part"]);
        app.set_conversation(&summary(5), &[]);
        assert_eq!(
            app.messages.len(),
            3,
            "an answer for another conversation is ignored"
        );
    }

    #[test]
    fn an_empty_conversation_shows_the_greeting() {
        let mut app = App::new();
        app.loading_conversation(7);
        app.set_conversation(&summary(7), &[]);
        assert!(app.messages.is_empty());
        app.set_characters(
            "aria",
            &[CharacterInfo {
                id: "aria".into(),
                name: "Aria".into(),
                description: String::new(),
                greeting: Some("Hello, I'm Aria!".into()),
                source: "built-in".into(),
            }],
        );
        assert_eq!(app.messages.len(), 1);
        assert_eq!(app.messages[0].text, "Hello, I'm Aria!");
        assert_eq!(app.character_name(), "Aria");
    }

    #[test]
    fn scrolling_is_bounded_and_returns_to_following() {
        let mut app = App::new();
        app.viewport = Viewport {
            height: 10,
            total_lines: 35,
        };
        app.handle_key(key(KeyCode::PageUp, KeyModifiers::NONE));
        assert_eq!(app.scroll, Some(16));
        app.handle_key(key(KeyCode::PageUp, KeyModifiers::NONE));
        app.handle_key(key(KeyCode::PageUp, KeyModifiers::NONE));
        assert_eq!(app.scroll, Some(0));
        app.handle_key(key(KeyCode::PageDown, KeyModifiers::NONE));
        assert_eq!(app.scroll, Some(9));
        app.handle_key(key(KeyCode::PageDown, KeyModifiers::NONE));
        app.handle_key(key(KeyCode::PageDown, KeyModifiers::NONE));
        assert_eq!(app.scroll, None);
    }

    #[test]
    fn sending_while_disconnected_keeps_the_draft() {
        let mut app = App::new();
        app.disconnected();
        type_text(&mut app, "draft");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
        assert_eq!(app.input.text(), "draft");
        assert_eq!(app.messages.last().unwrap().kind, Kind::Error);
    }
}
