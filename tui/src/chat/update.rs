//! How the chat state changes: daemon events, replies and keys go in, requests for
//! the runner to make come out as [`Action`]s. No I/O here, so all of it is testable.

use std::collections::HashSet;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use vtuber_shared::{
    ApprovalDecision, CharacterInfo, ConversationSummary, DaemonState, ErrorBody, Event,
    McpServerInfo, McpServerState, Status, StoredMessage, ToolOutcome, TurnOutcome,
};

use crate::tool_text;

use super::commands::{Line, SlashCommand};
use super::state::{App, Conn, Ended, Kind, Message, PendingApproval, ToolCall, ToolState};
use super::wrap::sanitize;

/// How wide the arguments of a tool line may get before they are cut.
const TOOL_ARGS_CHARS: usize = 48;

/// Something the runner should do on the app's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Text, with the pictures `/image` attached.
    Send(String, Vec<vtuber_shared::ImageInput>),
    Interrupt,
    NewConversation,
    LoadConversation(i64),
    LoadCharacters,
    /// Ask for the MCP servers' state (for the status line).
    LoadMcpServers,
    /// Re-read status, then the current conversation (after missed events).
    Resync,
    Approve {
        request_id: u64,
        decision: ApprovalDecision,
    },
    /// Hands-free listening on the daemon's microphone on or off.
    SetListening(bool),
    /// Push-to-talk: start (`true`) or finish (`false`) an utterance.
    PushToTalk(bool),
    /// `/character NAME`.
    SwitchCharacter(String),
    /// `/character`: list them in the transcript.
    ShowCharacters,
    /// `/history`: list the conversations in the transcript.
    ShowConversations,
    /// `/export [FILE]`: the current conversation as Markdown.
    Export(Option<std::path::PathBuf>),
    Quit,
}

impl App {
    /// Drops approval requests whose time ran out (the daemon denies them).
    pub fn expire_approvals(&mut self) {
        let now = self.now;
        self.approvals.retain(|a| a.deadline > now);
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
        let mut actions = vec![Action::LoadCharacters, Action::LoadMcpServers];
        actions.extend(self.set_status(status));
        actions
    }

    pub fn set_mcp_servers(&mut self, servers: Vec<McpServerInfo>) {
        self.mcp = servers.into_iter().map(|s| (s.name.clone(), s)).collect();
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
            settle_tools(m);
        }
        // A new connection hears of requests still open only if they are asked again.
        self.approvals.clear();
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
                self.turns_since_load.clear();
                self.messages = self.live_messages();
                self.loaded = true;
                self.add_greeting_if_empty();
                vec![]
            }
        }
    }

    pub fn set_characters(&mut self, current: &str, characters: &[CharacterInfo]) {
        self.character_ids = characters.iter().map(|c| c.id.clone()).collect();
        self.character = characters
            .iter()
            .find(|c| c.id == current || c.name == current)
            .cloned();
        self.add_greeting_if_empty();
    }

    /// The messages of turns a reload must keep: those still streaming, and those
    /// that began or ended after the load was asked for (the answer predates them).
    fn live_messages(&self) -> Vec<Message> {
        let live: HashSet<u64> = self
            .messages
            .iter()
            .filter(|m| m.streaming)
            .filter_map(|m| m.turn_id)
            .chain(self.turns_since_load.iter().copied())
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
        self.turns_since_load.clear();
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
        // The daemon may already have stored the first of them (the prompt of the
        // running turn, or a whole turn that ended meanwhile): skip what overlaps.
        let overlap = (1..=live.len().min(self.messages.len()))
            .rev()
            .find(|&n| {
                let tail = &self.messages[self.messages.len() - n..];
                tail.iter()
                    .zip(&live[..n])
                    .all(|(stored, kept)| stored.kind == kept.kind && stored.text == kept.text)
            })
            .unwrap_or(0);
        self.messages.extend(live.into_iter().skip(overlap));
        self.turns_since_load.clear();
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

    /// The reply of `turn_id`, created (as streaming) when we joined mid-turn.
    fn reply_for(&mut self, turn_id: u64) -> usize {
        match self.reply_index(turn_id) {
            Some(i) => i,
            None => {
                self.push(Message {
                    turn_id: Some(turn_id),
                    streaming: true,
                    ..Message::new(Kind::Character, "")
                });
                self.messages.len() - 1
            }
        }
    }

    fn tool_call_mut(&mut self, call_id: &str) -> Option<&mut ToolCall> {
        self.messages
            .iter_mut()
            .rev()
            .flat_map(|m| m.tools.iter_mut())
            .find(|t| t.call_id == call_id)
    }

    /// The line for `call_id` under the reply of `turn_id`, added if new.
    fn tool_line(&mut self, turn_id: u64, call_id: &str) -> &mut ToolCall {
        let i = self.reply_for(turn_id);
        let known = self.messages[i]
            .tools
            .iter()
            .position(|t| t.call_id == call_id);
        let (server, tool) = self
            .call_names
            .get(call_id)
            .cloned()
            .unwrap_or_else(|| (String::new(), "tool".to_owned()));
        let tools = &mut self.messages[i].tools;
        let j = known.unwrap_or_else(|| {
            tools.push(ToolCall {
                call_id: call_id.to_owned(),
                server,
                tool,
                args: String::new(),
                state: ToolState::Running {
                    progress: String::new(),
                },
            });
            tools.len() - 1
        });
        &mut tools[j]
    }

    fn mcp_changed(&mut self, server: McpServerInfo) {
        let previous = self.mcp.insert(server.name.clone(), server.clone());
        let was = previous.map(|p| p.state);
        let name = &server.name;
        let note = match (&server.state, &was) {
            (state, Some(old)) if state == old => None,
            (McpServerState::Failed { reason }, _) => {
                Some(format!("MCP server {name} failed: {reason}"))
            }
            (
                McpServerState::Restarting {
                    attempt,
                    in_ms,
                    reason,
                },
                _,
            ) => Some(format!(
                "MCP server {name} stopped ({reason}); restarting in {} s (attempt {attempt})",
                in_ms.div_ceil(1000)
            )),
            (
                McpServerState::Ready,
                Some(McpServerState::Failed { .. } | McpServerState::Restarting { .. }),
            ) => Some(format!(
                "MCP server {name} is back with {} tool(s)",
                server.tools
            )),
            (McpServerState::Disabled, Some(_)) => Some(format!("MCP server {name} is disabled")),
            _ => None,
        };
        if let Some(note) = note {
            self.push_system(&note);
        }
    }

    pub fn apply_event(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::VoiceChanged { voice } => {
                if let Some(s) = &mut self.status {
                    s.voice = Some(voice);
                }
            }
            Event::InputLevel { level } => self.input_level = level.clamp(0.0, 1.0),
            Event::VoiceActivity { .. }
            | Event::Sentence { .. }
            | Event::SpeechFinished { .. }
            | Event::Transcript { .. } => {}
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
                self.turns_since_load.insert(turn_id);
                // The greeting is not part of the stored conversation; keep it anyway.
                // A turn the character starts itself (proactive speech) has no prompt.
                if !text.is_empty() {
                    self.push(Message {
                        turn_id: Some(turn_id),
                        origin: Some(origin),
                        ..Message::new(Kind::User, &text)
                    });
                }
                self.push(Message {
                    turn_id: Some(turn_id),
                    streaming: true,
                    ..Message::new(Kind::Character, "")
                });
            }
            Event::Delta { turn_id, text } => {
                self.turns_since_load.insert(turn_id);
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
                cut,
                ..
            } => {
                self.turns_since_load.insert(turn_id);
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
                settle_tools(reply);
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
                reply.cut = cut.as_ref().map(|c| c.reason);
                // An empty reply with nothing to mark says nothing: drop it.
                if reply.text.is_empty()
                    && !reply.interrupted
                    && reply.cut.is_none()
                    && reply.tools.is_empty()
                {
                    self.messages.remove(i);
                }
                if let Some(cut) = cut {
                    self.push_system(&cut.message);
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
                    self.turns_since_load.clear();
                    self.messages = self.live_messages();
                    self.loaded = true;
                    self.add_greeting_if_empty();
                    self.push_system(&format!(
                        "conversation {id} was deleted; your next message starts a new one"
                    ));
                }
            }
            Event::McpServerChanged { server } => self.mcp_changed(server),
            Event::ToolCallStarted {
                turn_id,
                call_id,
                server,
                tool,
                arguments,
            } => {
                let line = self.tool_line(turn_id, &call_id);
                line.server = sanitize(&server);
                line.tool = sanitize(&tool);
                line.args = sanitize(&tool_text::args_inline(&arguments, TOOL_ARGS_CHARS));
                line.state = ToolState::Running {
                    progress: String::new(),
                };
            }
            Event::ToolCallProgress {
                call_id,
                progress,
                total,
                message,
            } => {
                if let Some(line) = self.tool_call_mut(&call_id) {
                    line.state = ToolState::Running {
                        progress: sanitize(&tool_text::progress_text(
                            progress,
                            total,
                            message.as_deref(),
                        )),
                    };
                }
            }
            Event::ToolCallEnded {
                turn_id,
                call_id,
                outcome,
                duration_ms,
                summary,
            } => {
                let line = self.tool_line(turn_id, &call_id);
                line.state = ToolState::Ended {
                    outcome: Ended::from_outcome(outcome),
                    text: sanitize(&tool_text::outcome_text(outcome, duration_ms, &summary)),
                };
                self.call_names.remove(&call_id);
            }
            Event::ApprovalRequested {
                request_id,
                turn_id,
                call_id,
                server,
                tool,
                description,
                arguments,
                timeout_secs,
            } => {
                self.call_names
                    .insert(call_id.clone(), (sanitize(&server), sanitize(&tool)));
                let line = self.tool_line(turn_id, &call_id);
                line.args = sanitize(&tool_text::args_inline(&arguments, TOOL_ARGS_CHARS));
                line.state = ToolState::Approval;
                if !self.approvals.iter().any(|a| a.request_id == request_id) {
                    let arguments = approval_arguments(&arguments);
                    self.approvals.push_back(PendingApproval {
                        request_id,
                        server: sanitize(&server),
                        tool: sanitize(&tool),
                        description: sanitize(description.trim()),
                        arguments: arguments
                            .lines()
                            .map(sanitize)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        deadline: self.now + Duration::from_secs(timeout_secs),
                    });
                }
            }
            Event::ApprovalResolved { request_id, .. } => {
                self.approvals.retain(|a| a.request_id != request_id);
            }
            Event::Unknown => {}
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

    /// F2: hands-free listening on/off, when the daemon has a microphone.
    fn toggle_listening(&mut self) -> Option<Action> {
        let voice = self.status.as_ref().and_then(|s| s.voice.as_ref());
        match voice {
            Some(v) if v.input_device.is_some() => Some(Action::SetListening(!v.listening)),
            Some(v) => {
                let note = format!(
                    "cannot listen: {} (send audio with `vtuber listen FILE.wav` or the browser page)",
                    v.audio
                );
                self.push_system(&note);
                None
            }
            None => {
                self.push_system("voice is disabled on the daemon (speech.enabled in conf.yaml)");
                None
            }
        }
    }

    /// F3: push-to-talk. Terminals do not report key releases, so it toggles: press to
    /// talk, press again to send.
    fn toggle_push_to_talk(&mut self) -> Option<Action> {
        let voice = self.status.as_ref().and_then(|s| s.voice.as_ref());
        match voice {
            Some(v) if v.input_device.is_some() => Some(Action::PushToTalk(!v.push_to_talk)),
            Some(v) => {
                let note = format!("cannot talk: {}", v.audio);
                self.push_system(&note);
                None
            }
            None => {
                self.push_system("voice is disabled on the daemon (speech.enabled in conf.yaml)");
                None
            }
        }
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
        if !self.approvals.is_empty() {
            return self.approval_key(key);
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
            KeyCode::Tab => {
                if let Some(done) =
                    super::commands::complete(self.input.text(), &self.character_ids)
                {
                    self.input.set(&done);
                }
            }
            KeyCode::Esc => return Some(Action::Interrupt),
            KeyCode::F(2) => return self.toggle_listening(),
            KeyCode::F(3) => return self.toggle_push_to_talk(),
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

    /// While the approval dialog is open it takes every key: an answer closes it
    /// (showing the next request, if any); other keys do nothing.
    fn approval_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return None;
        }
        let decision = match key.code {
            KeyCode::Char('a' | 'A' | 'y' | 'Y') => ApprovalDecision::AllowOnce,
            KeyCode::Char('s' | 'S') => ApprovalDecision::AllowForSession,
            KeyCode::Char('d' | 'D' | 'n' | 'N') | KeyCode::Esc => ApprovalDecision::Deny,
            _ => return None,
        };
        let approval = self.approvals.pop_front()?;
        Some(Action::Approve {
            request_id: approval.request_id,
            decision,
        })
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
        let command = match super::commands::parse(self.input.text()) {
            Line::Text(text) => {
                if text != self.input.text() {
                    self.input.set(&text);
                }
                None
            }
            Line::Invalid(why) => {
                self.push(Message::new(Kind::Error, &why));
                return None;
            }
            Line::Command(c) => Some(c),
        };
        if let Some(command) = command {
            return self.run_command(command);
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
        let images = std::mem::take(&mut self.pending_images);
        Some(Action::Send(self.input.take(), images))
    }
}

impl App {
    /// A `/` command: done here, or the action that does it.
    fn run_command(&mut self, command: SlashCommand) -> Option<Action> {
        let local = matches!(
            command,
            SlashCommand::Help | SlashCommand::Quit | SlashCommand::Image(_)
        );
        if !local && self.conn != Conn::Connected {
            self.push(Message {
                hint: Some(
                    "the command is still in the input; press Enter again once reconnected".into(),
                ),
                ..Message::new(Kind::Error, "not connected to vtuberd")
            });
            return None;
        }
        self.input.take();
        match command {
            SlashCommand::Help => {
                self.push_system(&super::commands::help());
                None
            }
            SlashCommand::Quit => Some(Action::Quit),
            SlashCommand::New => Some(Action::NewConversation),
            SlashCommand::Character(Some(name)) => Some(Action::SwitchCharacter(name)),
            SlashCommand::Character(None) => Some(Action::ShowCharacters),
            SlashCommand::History(None) => Some(Action::ShowConversations),
            SlashCommand::History(Some(id)) => {
                self.scroll = None;
                Some(Action::LoadConversation(id))
            }
            SlashCommand::Export(path) => Some(Action::Export(path)),
            SlashCommand::Listen(on) => Some(Action::SetListening(on)),
            SlashCommand::Image(path) => {
                match crate::images::read_image(&path) {
                    Ok(image) => {
                        self.pending_images.push(image);
                        let name = path.file_name().map_or_else(
                            || path.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                        self.push_system(&format!(
                            "📎 {name} (goes with your next message; {} attached)",
                            self.pending_images.len()
                        ));
                    }
                    Err(e) => self.push(Message::new(Kind::Error, &format!("{e:#}"))),
                }
                None
            }
        }
    }
}

/// Arguments for the dialog: one `name: value` line per top-level field (values
/// as compact JSON, strings unquoted), or pretty JSON for anything else.
fn approval_arguments(args: &serde_json::Value) -> String {
    match args {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                v => format!("{k}: {v}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        v => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// Calls still open when their reply ends (or the connection goes) will not report
/// any more: show them as cancelled rather than running forever.
fn settle_tools(m: &mut Message) {
    for t in &mut m.tools {
        if !matches!(t.state, ToolState::Ended { .. }) {
            t.state = ToolState::Ended {
                outcome: Ended::Cancelled,
                text: tool_text::outcome_text(ToolOutcome::Cancelled, 0, ""),
            };
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::scrollback::Viewport;
    use crossterm::event::KeyEventState;
    use vtuber_shared::{ErrorCode, Role};

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
            Some(Action::Send("hi\n\nthere".into(), Vec::new()))
        );
        assert!(app.input.is_empty());
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
    }

    #[test]
    fn slash_commands_become_actions_and_tab_completes_them() {
        let mut app = App::new();
        app.set_characters(
            "mao",
            &[vtuber_shared::CharacterInfo {
                id: "kitsune".into(),
                name: "Kitsune".into(),
                description: String::new(),
                greeting: None,
                source: "built-in".into(),
            }],
        );
        type_text(&mut app, "/cha");
        app.handle_key(key(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(app.input.text(), "/character ");
        type_text(&mut app, "ki");
        app.handle_key(key(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            Some(Action::SwitchCharacter("kitsune".into()))
        );
        assert!(app.input.is_empty());
        for (line, want) in [
            ("/history", Action::ShowConversations),
            ("/history 3", Action::LoadConversation(3)),
            ("/new", Action::NewConversation),
            ("/export a.md", Action::Export(Some("a.md".into()))),
            ("/listen off", Action::SetListening(false)),
            ("//etc", Action::Send("/etc".into(), Vec::new())),
        ] {
            type_text(&mut app, line);
            assert_eq!(
                app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
                Some(want),
                "{line}"
            );
        }
        let before = app.messages.len();
        type_text(&mut app, "/help");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
        assert!(app.messages[before].text.contains("/character [NAME]"));
        type_text(&mut app, "/nope");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
        let last = app.messages.last().unwrap();
        assert_eq!(last.kind, Kind::Error);
        assert!(last.text.contains("no command `/nope`"), "{}", last.text);
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
            cut: None,
            text_omitted: false,
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
            cut: None,
            text_omitted: false,
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
            cut: None,
            text_omitted: false,
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
        app.connected(vtuber_shared::client::fake_daemon::status());
        app.apply_event(started(1, "hello"));
        app.apply_event(Event::TurnEnded {
            turn_id: 1,
            outcome: TurnOutcome::Finished,
            text: "hi".into(),
            usage: None,
            cut: None,
            text_omitted: false,
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
            StoredMessage::new(1, Role::User, "old", 0),
            StoredMessage::new(2, Role::User, "live", 0),
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

    /// The first message of a fresh conversation: its load is asked for when the
    /// conversation appears, and the answer (a snapshot from then) may come after the
    /// whole turn ended. The reply must survive it, once, whatever the snapshot held.
    #[test]
    fn a_turn_that_ends_while_its_conversation_loads_survives_the_answer() {
        for stored_then in [0, 1, 2] {
            let mut app = App::new();
            app.loading_conversation(7);
            app.apply_event(started(3, "hello there"));
            app.apply_event(Event::TurnEnded {
                turn_id: 3,
                outcome: TurnOutcome::Finished,
                text: "Nice to meet you".into(),
                usage: None,
                cut: None,
                text_omitted: false,
            });
            let stored = [
                StoredMessage::new(1, Role::User, "hello there", 0),
                StoredMessage::new(2, Role::Assistant, "Nice to meet you", 0),
            ];
            app.set_conversation(&summary(7), &stored[..stored_then]);
            let texts: Vec<&str> = app.messages.iter().map(|m| m.text.as_str()).collect();
            assert_eq!(
                texts,
                ["hello there", "Nice to meet you"],
                "{stored_then} stored"
            );
            // A later load (nothing new since) is the stored conversation alone.
            app.loading_conversation(7);
            app.set_conversation(&summary(7), &stored);
            assert_eq!(app.messages.len(), 2);
        }
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

    fn approval(request_id: u64, timeout_secs: u64) -> Event {
        Event::ApprovalRequested {
            request_id,
            turn_id: 1,
            call_id: format!("c{request_id}"),
            server: "fs".into(),
            tool: "write_file".into(),
            description: "Writes a file".into(),
            arguments: serde_json::json!({"path": "/tmp/a", "n": 1}),
            timeout_secs,
        }
    }

    #[test]
    fn approvals_queue_answer_and_close() {
        let mut app = App::new();
        app.apply_event(started(1, "save"));
        app.apply_event(approval(5, 30));
        app.apply_event(approval(6, 30));
        app.apply_event(approval(5, 30));
        assert_eq!(app.approvals.len(), 2, "a repeated request is queued once");
        assert_eq!(app.approvals[0].arguments, "n: 1\npath: /tmp/a");
        assert_eq!(app.seconds_left(&app.approvals[0]), 30);
        // The dialog takes the keys: others do nothing, not even typing.
        assert_eq!(
            app.handle_key(key(KeyCode::Char('x'), KeyModifiers::NONE)),
            None
        );
        assert!(app.input.is_empty());
        assert_eq!(
            app.handle_key(key(KeyCode::Char('s'), KeyModifiers::NONE)),
            Some(Action::Approve {
                request_id: 5,
                decision: ApprovalDecision::AllowForSession
            })
        );
        assert_eq!(
            app.handle_key(key(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Action::Approve {
                request_id: 6,
                decision: ApprovalDecision::Deny
            })
        );
        assert!(app.approvals.is_empty());
        // Keys go back to the input.
        assert_eq!(
            app.handle_key(key(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Action::Interrupt)
        );

        // Another client answers first, or time runs out: the dialog closes.
        app.apply_event(approval(7, 30));
        app.apply_event(approval(8, 10));
        app.apply_event(Event::ApprovalResolved {
            request_id: 7,
            resolution: vtuber_shared::ApprovalResolution::Approved,
        });
        assert_eq!(app.approvals.len(), 1);
        app.now += Duration::from_millis(9_500);
        app.expire_approvals();
        assert_eq!(app.seconds_left(&app.approvals[0]), 1);
        app.now += Duration::from_millis(500);
        app.expire_approvals();
        assert!(app.approvals.is_empty());
        assert_eq!(
            app.handle_key(key(KeyCode::Char('a'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(app.input.text(), "a");
    }

    #[test]
    fn tool_calls_attach_to_their_reply_and_keep_it() {
        let mut app = App::new();
        app.apply_event(started(1, "time?"));
        app.apply_event(Event::ToolCallStarted {
            turn_id: 1,
            call_id: "c1".into(),
            server: "time".into(),
            tool: "now".into(),
            arguments: serde_json::json!({}),
        });
        assert!(app.busy() && app.tool_running());
        app.apply_event(Event::ToolCallEnded {
            turn_id: 1,
            call_id: "c1".into(),
            outcome: ToolOutcome::Ok,
            duration_ms: 3,
            summary: "noon".into(),
        });
        app.apply_event(Event::TurnEnded {
            turn_id: 1,
            outcome: TurnOutcome::Finished,
            text: String::new(),
            usage: None,
            cut: None,
            text_omitted: false,
        });
        // A reply with no text but a tool call stays, so the call is not lost.
        assert_eq!(app.messages.len(), 2);
        assert_eq!(
            app.messages[1].tools[0].state,
            ToolState::Ended {
                outcome: Ended::Ok,
                text: "3 ms · noon".into()
            }
        );
        assert!(!app.busy());
        // A call of a turn we joined late still finds a home.
        app.apply_event(Event::ToolCallEnded {
            turn_id: 9,
            call_id: "c9".into(),
            outcome: ToolOutcome::Denied,
            duration_ms: 0,
            summary: String::new(),
        });
        assert_eq!(app.messages.last().unwrap().tools[0].tool, "tool");
    }

    fn server(state: McpServerState, tools: usize) -> Event {
        Event::McpServerChanged {
            server: McpServerInfo {
                name: "time".into(),
                transport: "stdio".into(),
                state,
                tools,
                sandbox: vtuber_shared::SandboxLevel::Off,
                sandbox_detail: String::new(),
            },
        }
    }

    #[test]
    fn mcp_server_notes_only_for_trouble() {
        let mut app = App::new();
        app.apply_event(server(McpServerState::Starting, 0));
        app.apply_event(server(McpServerState::Ready, 3));
        assert!(app.messages.is_empty(), "a normal start is not news");
        assert_eq!(app.tools_ready(), Some(3));
        app.apply_event(server(
            McpServerState::Restarting {
                attempt: 1,
                in_ms: 1500,
                reason: "exit status 1".into(),
            },
            0,
        ));
        app.apply_event(server(McpServerState::Ready, 3));
        app.apply_event(server(McpServerState::Ready, 3));
        app.apply_event(server(
            McpServerState::Failed {
                reason: "gave up".into(),
            },
            0,
        ));
        let texts: Vec<&str> = app.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "MCP server time stopped (exit status 1); restarting in 2 s (attempt 1)",
                "MCP server time is back with 3 tool(s)",
                "MCP server time failed: gave up",
            ]
        );
        assert_eq!(app.tools_ready(), Some(0));
    }

    #[test]
    fn an_image_command_attaches_a_picture_to_the_next_message() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("cat.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nxx").unwrap();
        let mut app = App::new();
        type_text(&mut app, &format!("/image {}", png.display()));
        assert_eq!(
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
        assert!(app.messages.last().unwrap().text.contains("📎 cat.png"));
        type_text(&mut app, "what is this?");
        let Some(Action::Send(text, images)) =
            app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE))
        else {
            panic!("no send");
        };
        assert_eq!(text, "what is this?");
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].mime_type, "image/png");
        assert!(app.pending_images.is_empty());
        // A file that is no picture: an error, nothing attached.
        type_text(&mut app, &format!("/image {}", dir.path().display()));
        app.handle_key(key(KeyCode::Enter, KeyModifiers::NONE));
        assert!(app.pending_images.is_empty());
    }
}
