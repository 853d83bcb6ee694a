//! The interactive chat: wires the terminal, the daemon connection and [`state::App`].
//!
//! One loop waits on terminal input, daemon events, request answers and a timer.
//! Requests are written in order from the loop and their answers come back as
//! messages from small tasks, so a slow answer never freezes typing.

pub mod commands;
pub mod input;
pub mod markup;
pub mod scrollback;
pub mod state;
pub mod terminal;
pub mod update;
pub mod view;
pub mod wrap;

#[cfg(test)]
mod render_tests;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{Event as TermEvent, EventStream, MouseEventKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use vtuber_shared::{ErrorBody, Reply, Request};

use crate::launcher::{self, Target};
use state::App;
use update::Action;
use vtuber_shared::client::{
    self, Client, Connection, Events, Hello, REQUEST_TIMEOUT, ResponseFrame,
};

/// What an answer is for, so the loop knows what to do with it.
#[derive(Debug)]
enum Purpose {
    Send(String),
    Interrupt,
    NewConversation,
    LoadConversation,
    Characters,
    Status,
    McpServers,
    Approve,
    Voice,
    /// `/character`: the list goes in the transcript.
    ShowCharacters,
    ShowConversations,
    SwitchCharacter,
}

enum Msg {
    Answer {
        generation: u64,
        purpose: Purpose,
        result: Box<Result<Reply, ErrorBody>>,
    },
    Connected(Box<Connection>),
    ConnectFailed,
    McpServers {
        generation: u64,
        servers: Vec<vtuber_shared::McpServerInfo>,
    },
    /// A line for the transcript from work done in the background (`/export`).
    Note(Result<String, ErrorBody>),
}

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// Spinner speed while the daemon is busy.
const TICK: Duration = Duration::from_millis(120);

struct Runner {
    app: App,
    target: Target,
    client: Option<Client>,
    events: Option<Events>,
    /// Bumped per connection; answers from an older one are ignored.
    generation: u64,
    tx: mpsc::UnboundedSender<Msg>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    connecting: bool,
    quit: bool,
}

pub async fn run(target: Target) -> Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("the chat needs an interactive terminal; for scripts use `vtuber say TEXT`");
    }
    // Connect before taking over the screen, so start-up errors print normally.
    let conn = launcher::connect_or_start(&target, Hello::new("chat", true).text_only()).await?;
    let mut guard = terminal::enter()?;
    let result = event_loop(&mut guard, target, conn).await;
    drop(guard);
    result.map(|()| ExitCode::SUCCESS)
}

async fn event_loop(guard: &mut terminal::Guard, target: Target, conn: Connection) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut runner = Runner {
        app: App::new(),
        target,
        client: None,
        events: None,
        generation: 0,
        tx,
        retry_at: None,
        retry_delay: FIRST_RETRY,
        connecting: false,
        quit: false,
    };
    runner.attach(conn).await;
    let mut keys = EventStream::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut next_tick = Instant::now() + TICK;
    let mut redraw = true;

    loop {
        if runner.quit {
            return Ok(());
        }
        runner.app.now = std::time::Instant::now();
        runner.app.expire_approvals();
        if redraw {
            guard
                .terminal
                .draw(|frame| view::render(frame, &mut runner.app))
                .context("cannot draw to the terminal")?;
        }
        // Everything but plain mouse movement changes what is shown.
        redraw = true;
        let wake = match (runner.app.busy(), runner.retry_at) {
            (true, Some(at)) => at.min(next_tick),
            (true, None) => next_tick,
            (false, Some(at)) => at,
            (false, None) => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            key = keys.next() => {
                match key {
                    Some(Ok(TermEvent::Mouse(m)))
                        if !matches!(m.kind, MouseEventKind::ScrollUp | MouseEventKind::ScrollDown) =>
                    {
                        redraw = false;
                    }
                    Some(Ok(ev)) => runner.terminal_event(ev).await,
                    Some(Err(e)) => return Err(e).context("cannot read from the terminal"),
                    None => return Ok(()),
                }
            }
            ev = next_event(&mut runner.events) => {
                match ev {
                    Some(frame) => {
                        runner.daemon_event(frame.event).await;
                        // Take whatever else already arrived before redrawing once.
                        for _ in 0..256 {
                            let Some(frame) = runner.events.as_mut().and_then(Events::try_recv)
                            else {
                                break;
                            };
                            runner.daemon_event(frame.event).await;
                        }
                    }
                    None => runner.lost(),
                }
            }
            Some(msg) = rx.recv() => {
                runner.message(msg).await;
            }
            _ = sigterm.recv() => return Ok(()),
            _ = tokio::time::sleep_until(wake) => {
                if runner.retry_at.is_some_and(|at| at <= Instant::now()) {
                    runner.reconnect();
                }
                if Instant::now() >= next_tick {
                    runner.app.tick = runner.app.tick.wrapping_add(1);
                    next_tick = Instant::now() + TICK;
                }
            }
        }
    }
}

async fn next_event(events: &mut Option<Events>) -> Option<client::EventFrame> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

impl Runner {
    async fn attach(&mut self, conn: Connection) {
        self.generation += 1;
        self.client = Some(conn.client);
        self.events = Some(conn.events);
        self.retry_at = None;
        self.retry_delay = FIRST_RETRY;
        let actions = self.app.connected(conn.welcome.status);
        for action in actions {
            self.perform(action).await;
        }
    }

    fn lost(&mut self) {
        self.client = None;
        self.events = None;
        self.app.disconnected();
        self.retry_at = Some(Instant::now() + self.retry_delay);
    }

    /// Tries to connect again in the background (never starting a daemon: if the
    /// user stopped it, the chat should not bring it back behind their back).
    fn reconnect(&mut self) {
        self.retry_at = None;
        if self.connecting {
            return;
        }
        self.connecting = true;
        let socket = self.target.socket.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let msg = match client::connect(&socket, Hello::new("chat", true).text_only()).await {
                Ok(conn) => Msg::Connected(Box::new(conn)),
                Err(_) => Msg::ConnectFailed,
            };
            let _ = tx.send(msg);
        });
    }

    async fn terminal_event(&mut self, ev: TermEvent) {
        let action = match ev {
            TermEvent::Key(key) => self.app.handle_key(key),
            TermEvent::Mouse(mouse) => {
                self.app.handle_mouse(mouse);
                None
            }
            TermEvent::Paste(text) => {
                self.app.handle_paste(&text);
                None
            }
            _ => None,
        };
        if let Some(action) = action {
            self.perform(action).await;
        }
    }

    async fn daemon_event(&mut self, event: vtuber_shared::Event) {
        self.app.now = std::time::Instant::now();
        for action in self.app.apply_event(event) {
            self.perform(action).await;
        }
    }

    async fn message(&mut self, msg: Msg) {
        match msg {
            Msg::Connected(conn) => {
                self.connecting = false;
                self.attach(*conn).await;
            }
            Msg::ConnectFailed => {
                self.connecting = false;
                self.app.reconnect_failed();
                self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
                self.retry_at = Some(Instant::now() + self.retry_delay);
            }
            Msg::McpServers {
                generation,
                servers,
            } => {
                if generation == self.generation {
                    self.app.set_mcp_servers(servers);
                }
            }
            Msg::Answer {
                generation,
                purpose,
                result,
            } => {
                if generation == self.generation {
                    self.answer(purpose, *result).await;
                }
            }
            Msg::Note(Ok(text)) => self.app.push_system(&text),
            Msg::Note(Err(e)) => self.app.push_error(&e),
        }
    }

    async fn answer(&mut self, purpose: Purpose, result: Result<Reply, ErrorBody>) {
        let reply = match (&purpose, result) {
            (Purpose::Send(text), Err(e)) => return self.app.send_failed(text, &e),
            // An older daemon without tool servers: nothing to show.
            (Purpose::McpServers, Err(_)) => return,
            (_, Err(e)) => return self.app.push_error(&e),
            (_, Ok(reply)) => reply,
        };
        match (purpose, reply) {
            (
                Purpose::ShowCharacters,
                Reply::Characters {
                    current,
                    characters,
                },
            ) => {
                self.app.set_characters(&current, &characters);
                self.app
                    .push_system(&characters_text(&current, &characters));
            }
            (Purpose::ShowConversations, Reply::Conversations { conversations }) => {
                let current = self.app.status.as_ref().and_then(|s| s.conversation_id);
                self.app
                    .push_system(&conversations_text(&conversations, current));
            }
            (_, reply) => self.reply(reply).await,
        }
    }

    async fn reply(&mut self, reply: Reply) {
        match reply {
            Reply::TurnAccepted { turn_id, .. } => self.app.turn_accepted(turn_id),
            Reply::ApprovalRecorded {
                accepted: false, ..
            } => self.app.push_system(
                "too late: that tool call was already decided (by another client or the timeout)",
            ),
            Reply::ConversationChanged { conversation_id } => {
                self.perform(Action::LoadConversation(conversation_id))
                    .await;
            }
            Reply::Conversation {
                conversation,
                messages,
                ..
            } => self.app.set_conversation(&conversation, &messages),
            Reply::Characters {
                current,
                characters,
            } => self.app.set_characters(&current, &characters),
            Reply::Status(status) => {
                for action in self.app.set_status(status) {
                    self.perform(action).await;
                }
            }
            Reply::Voice { voice } => {
                if let Some(s) = &mut self.app.status {
                    s.voice = Some(voice);
                }
            }
            // Interrupted, etc.: the events that follow tell the story.
            _ => {}
        }
    }

    /// Reads a conversation page by page in the background; the whole of it arrives as
    /// one answer, as a single `get_conversation` reply used to.
    fn load_conversation(&mut self, id: i64) {
        self.app.loading_conversation(id);
        let Some(client) = self.client.clone() else {
            return;
        };
        let generation = self.generation;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result =
                client
                    .conversation(id, REQUEST_TIMEOUT)
                    .await
                    .map(|(conversation, messages)| Reply::Conversation {
                        conversation,
                        messages,
                        next: None,
                    });
            let _ = tx.send(Msg::Answer {
                generation,
                purpose: Purpose::LoadConversation,
                result: Box::new(result),
            });
        });
    }

    /// `/export`: reads the current conversation whole and writes it as Markdown.
    fn export(&mut self, path: Option<std::path::PathBuf>) {
        let (Some(client), Some(id)) = (
            self.client.clone(),
            self.app.status.as_ref().and_then(|s| s.conversation_id),
        ) else {
            self.app
                .push_system("nothing to export yet: this conversation is empty");
            return;
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let note = async {
                let (conversation, messages) = client.conversation(id, REQUEST_TIMEOUT).await?;
                let path = path.unwrap_or_else(|| format!("conversation-{id}.md").into());
                let text = crate::export::markdown(&conversation, &messages);
                let shown = path.display().to_string();
                tokio::task::spawn_blocking(move || std::fs::write(&path, text))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map_err(|e| {
                        ErrorBody::new(
                            vtuber_shared::ErrorCode::Internal,
                            format!("cannot write {shown}: {e}"),
                        )
                        .with_hint("give another file: /export PATH")
                    })?;
                Ok(format!(
                    "exported conversation {id} ({} messages) to {shown}",
                    messages.len()
                ))
            };
            let _ = tx.send(Msg::Note(note.await));
        });
    }

    /// Carries out an action; requests are written now (keeping their order) and
    /// answered later through the message channel.
    async fn perform(&mut self, action: Action) {
        if let Action::LoadConversation(id) = action {
            self.load_conversation(id);
            return;
        }
        if let Action::Export(path) = action {
            self.export(path);
            return;
        }
        let (purpose, request) = match action {
            Action::Quit => {
                self.quit = true;
                return;
            }
            Action::Send(text, images) => (
                Purpose::Send(text.clone()),
                Request::SendText { text, images },
            ),
            Action::Interrupt => (Purpose::Interrupt, Request::Interrupt),
            Action::NewConversation => (Purpose::NewConversation, Request::NewConversation),
            Action::LoadConversation(_) => return,
            Action::LoadCharacters => (Purpose::Characters, Request::ListCharacters),
            Action::LoadMcpServers => (Purpose::McpServers, Request::ListMcpServers),
            Action::Approve {
                request_id,
                decision,
            } => (
                Purpose::Approve,
                Request::ApproveToolCall {
                    request_id,
                    decision,
                },
            ),
            Action::Resync => (Purpose::Status, Request::Status),
            Action::SetListening(on) => (Purpose::Voice, Request::SetListening { on }),
            Action::PushToTalk(pressed) => (Purpose::Voice, Request::PushToTalk { pressed }),
            Action::SwitchCharacter(name) => {
                (Purpose::SwitchCharacter, Request::SwitchCharacter { name })
            }
            Action::ShowCharacters => (Purpose::ShowCharacters, Request::ListCharacters),
            Action::ShowConversations => (
                Purpose::ShowConversations,
                Request::ListConversations { character: None },
            ),
            Action::Export(_) => return,
        };
        let Some(client) = &self.client else {
            if let Purpose::Send(text) = &purpose {
                self.app.send_failed(
                    text,
                    &ErrorBody::new(
                        vtuber_shared::ErrorCode::Internal,
                        "not connected to vtuberd",
                    ),
                );
            }
            return;
        };
        let generation = self.generation;
        let tx = self.tx.clone();
        let pending = client.send(request).await;
        tokio::spawn(async move {
            let result = match pending {
                Ok(rx) => match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
                    Ok(Ok(frame)) if matches!(purpose, Purpose::McpServers) => {
                        if let Ok(Reply::McpServers { servers }) = frame.into_result() {
                            let _ = tx.send(Msg::McpServers {
                                generation,
                                servers,
                            });
                        }
                        return;
                    }
                    Ok(Ok(frame)) => ResponseFrame::into_result(frame),
                    Ok(Err(_)) => Err(ErrorBody::new(
                        vtuber_shared::ErrorCode::Internal,
                        "the connection closed before vtuberd answered",
                    )),
                    Err(_) => Err(ErrorBody::new(
                        vtuber_shared::ErrorCode::Internal,
                        format!(
                            "vtuberd did not answer within {} s",
                            REQUEST_TIMEOUT.as_secs()
                        ),
                    )),
                },
                Err(e) => Err(e),
            };
            let _ = tx.send(Msg::Answer {
                generation,
                purpose,
                result: Box::new(result),
            });
        });
    }
}

/// `/character`: one line per character, the current one marked.
fn characters_text(current: &str, characters: &[vtuber_shared::CharacterInfo]) -> String {
    let mut out = String::from("characters (/character NAME switches):");
    for c in characters {
        let mark = if c.id == current { "*" } else { " " };
        let about = if c.description.is_empty() {
            String::new()
        } else {
            format!(" — {}", c.description)
        };
        out.push_str(&format!("\n {mark} {} ({}){about}", c.id, c.name));
    }
    out
}

/// `/history`: newest first, the current one marked, with what `/history ID` needs.
fn conversations_text(
    conversations: &[vtuber_shared::ConversationSummary],
    current: Option<i64>,
) -> String {
    if conversations.is_empty() {
        return "no conversations yet".to_owned();
    }
    let mut out = String::from("conversations (/history ID opens one):");
    for c in conversations.iter().take(30) {
        let mark = if Some(c.id) == current { "*" } else { " " };
        out.push_str(&format!(
            "\n {mark} #{:<4} {}  {}  {} messages  {}",
            c.id,
            crate::time::format_ms(c.updated_ms),
            c.character,
            c.message_count,
            crate::export::display_title(c)
        ));
    }
    if conversations.len() > 30 {
        out.push_str(&format!(
            "\n   … {} older (`vtuber history` lists them all)",
            conversations.len() - 30
        ));
    }
    out
}
