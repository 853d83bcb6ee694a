//! One turn streamed to the terminal: the reply as it arrives (or its raw JSON lines),
//! tool calls on standard error, and the answers to approval requests.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use anyhow::{Result, anyhow, bail};
use tokio::sync::mpsc;
use vtuber_shared::client::{self, Client, EventFrame};
use vtuber_shared::{
    ApprovalDecision, ApprovalResolution, ErrorBody, ErrorCode, Event, Reply, Request, TurnOutcome,
};

use super::unexpected;
use crate::exit;
use crate::tool_text;

/// Lines typed on standard input, read by a thread (reading a terminal blocks).
pub fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// How `say` treats a tool call of its turn that asks for approval.
pub enum Approval {
    /// `--approve`: allow each one once.
    Auto,
    /// Ask on standard error and take the answers from these lines.
    Prompt(mpsc::UnboundedReceiver<String>),
    /// Leave it to another client or the timeout, with a note.
    Leave,
}

/// Where `say` writes: the reply (or JSON lines) to `out`, everything else to `diag`.
pub struct Outputs<'a, W: Write, E: Write> {
    pub out: &'a mut W,
    pub diag: &'a mut E,
}

/// How `say`'s turn ended.
#[derive(Debug, PartialEq)]
pub enum TurnEnd {
    Finished,
    Interrupted,
    Failed(ErrorBody),
}

async fn next_line(lines: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends `text` and writes the reply to `out` as it streams: deltas as text, or with
/// `json` the response and each event of the turn as their raw lines. Tool calls of
/// the turn show on `diag` as short lines (not with `json`), and approval requests
/// are answered as `approval` says.
///
/// Events can arrive before the `turn_accepted` response tells us our turn id, so
/// they are held back until then; events of other clients' turns are skipped.
/// Ctrl+C asks the daemon to interrupt the reply rather than abandoning it.
pub async fn stream_turn<W: Write, E: Write>(
    client: &Client,
    events: &mut client::Events,
    request: Request,
    io: &mut Outputs<'_, W, E>,
    json: bool,
    approval: Approval,
) -> Result<TurnEnd> {
    let mut response = client.send(request).await.map_err(|e| anyhow!("{e}"))?;
    let (mode, mut answers) = match approval {
        Approval::Auto => (Mode::Auto, None),
        Approval::Prompt(rx) => (Mode::Prompt, Some(rx)),
        Approval::Leave => (Mode::Leave, None),
    };
    let mut state = TurnState::new(json, mode);
    let mut early: Vec<EventFrame> = Vec::new();
    let mut interrupt_sent = false;
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let mut ctrl_c_works = true;

    loop {
        tokio::select! {
            // The reader hands over a response before any event that followed it on
            // the wire, so polling the response first keeps wire order.
            biased;
            res = &mut response, if state.turn.is_none() => {
                let frame = res.map_err(|_| anyhow!(
                    "the connection to vtuberd closed before it accepted the message"
                ))?;
                if json {
                    writeln!(io.out, "{}", frame.raw)?;
                }
                match frame.into_result() {
                    Ok(Reply::TurnAccepted { turn_id, .. }) => state.turn = Some(turn_id),
                    Ok(Reply::Heard { transcript, turn_id: Some(turn_id), .. }) => {
                        if !json {
                            writeln!(io.diag, "heard: {transcript}")?;
                        }
                        state.turn = Some(turn_id);
                    }
                    Ok(Reply::Heard { turn_id: None, .. }) => {
                        return Ok(TurnEnd::Failed(ErrorBody::new(
                            ErrorCode::InvalidArgument,
                            "nothing intelligible was heard in the audio",
                        ).with_hint("check the recording: speech, not silence or noise")));
                    }
                    Ok(other) => return Err(unexpected(&other)),
                    Err(error) => return Ok(TurnEnd::Failed(error)),
                }
                for ev in std::mem::take(&mut early) {
                    if let Some(end) = state.event(ev, io)? {
                        return Ok(end);
                    }
                }
                state.send_answers(client).await;
            }
            ev = events.recv() => {
                let Some(ev) = ev else {
                    state.end_line(io)?;
                    bail!("the connection to vtuberd closed before the reply finished");
                };
                if matches!(ev.event, Event::ShuttingDown) {
                    state.end_line(io)?;
                    bail!("vtuberd is shutting down; the reply was cut off");
                }
                if state.turn.is_none() {
                    early.push(ev);
                } else if let Some(end) = state.event(ev, io)? {
                    return Ok(end);
                }
                state.send_answers(client).await;
            }
            line = next_line(&mut answers), if !state.prompts.is_empty() => {
                let decision = match line {
                    Some(line) => tool_text::parse_answer(&line),
                    None => {
                        // Standard input ended: no one can answer here any more.
                        answers = None;
                        state.mode = Mode::Leave;
                        ApprovalDecision::Deny
                    }
                };
                state.answer(decision, io)?;
                state.send_answers(client).await;
            }
            res = &mut ctrl_c, if ctrl_c_works => {
                if res.is_err() {
                    // No signal handling here: Ctrl+C keeps its default effect.
                    ctrl_c_works = false;
                    continue;
                }
                if interrupt_sent {
                    // A second Ctrl+C: the daemon is not reacting, stop waiting.
                    state.end_line(io)?;
                    return Err(exit::Exit::new(130, "vtuber: gave up waiting for the reply").into());
                }
                interrupt_sent = true;
                // The turn then ends as interrupted and we report that.
                let _ = client.send(Request::Interrupt).await;
                ctrl_c.set(tokio::signal::ctrl_c());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    Prompt,
    Leave,
}

/// What `say` knows about its turn while it streams.
struct TurnState {
    turn: Option<u64>,
    json: bool,
    mode: Mode,
    /// The reply text written so far (text mode), to complete it from the final text.
    printed: String,
    /// Our turn's tool calls, by call id, with their `server · tool` label.
    calls: HashMap<String, String>,
    /// Our turn's approval requests, by request id, with their label.
    requests: HashMap<u64, String>,
    /// Requests waiting for a typed answer; the first one is being asked.
    prompts: VecDeque<u64>,
    /// Requests this client answered, with the answer.
    answered: HashMap<u64, ApprovalDecision>,
    /// Answers to send.
    outbox: Vec<(u64, ApprovalDecision)>,
}

impl TurnState {
    fn new(json: bool, mode: Mode) -> Self {
        Self {
            turn: None,
            json,
            mode,
            printed: String::new(),
            calls: HashMap::new(),
            requests: HashMap::new(),
            prompts: VecDeque::new(),
            answered: HashMap::new(),
            outbox: Vec::new(),
        }
    }

    /// Ends a reply line cut short, so what follows starts on its own line.
    fn end_line<W: Write, E: Write>(&self, io: &mut Outputs<'_, W, E>) -> Result<()> {
        if !self.printed.is_empty() && !self.json {
            writeln!(io.out)?;
        }
        Ok(())
    }

    async fn send_answers(&mut self, client: &Client) {
        for (request_id, decision) in std::mem::take(&mut self.outbox) {
            // The first answer from any client wins; a late one is refused, which
            // changes nothing here, so the response is not awaited.
            let _ = client
                .send(Request::ApproveToolCall {
                    request_id,
                    decision,
                })
                .await;
        }
    }

    fn ask<E: Write>(&self, diag: &mut E) -> Result<()> {
        if let Some(label) = self.prompts.front().and_then(|id| self.requests.get(id)) {
            write!(diag, "allow tool {label}? [y]es/[s]ession/[N]o ")?;
            diag.flush()?;
        }
        Ok(())
    }

    /// The person answered the request being asked.
    fn answer<W: Write, E: Write>(
        &mut self,
        decision: ApprovalDecision,
        io: &mut Outputs<'_, W, E>,
    ) -> Result<()> {
        if let Some(id) = self.prompts.pop_front() {
            self.outbox.push((id, decision));
            self.answered.insert(id, decision);
            if self.mode == Mode::Leave {
                // Standard input ended mid-question.
                writeln!(io.diag)?;
                for id in std::mem::take(&mut self.prompts) {
                    self.outbox.push((id, ApprovalDecision::Deny));
                    self.answered.insert(id, ApprovalDecision::Deny);
                }
            }
        }
        self.ask(io.diag)
    }

    /// Handles one event once our turn id is known; `Some` when the turn is over.
    fn event<W: Write, E: Write>(
        &mut self,
        ev: EventFrame,
        io: &mut Outputs<'_, W, E>,
    ) -> Result<Option<TurnEnd>> {
        let ours = match &ev.event {
            Event::TurnStarted { turn_id, .. }
            | Event::Delta { turn_id, .. }
            | Event::TurnEnded { turn_id, .. }
            | Event::ToolCallStarted { turn_id, .. }
            | Event::ToolCallEnded { turn_id, .. }
            | Event::ApprovalRequested { turn_id, .. } => Some(*turn_id) == self.turn,
            Event::ToolCallProgress { call_id, .. } => self.calls.contains_key(call_id),
            Event::ApprovalResolved { request_id, .. } => self.requests.contains_key(request_id),
            // Not about one turn's text and tools, or (speech) not shown by `say`.
            Event::StateChanged { .. }
            | Event::ModelLoad { .. }
            | Event::CharacterChanged { .. }
            | Event::CharactersReloaded { .. }
            | Event::ConversationChanged { .. }
            | Event::ConversationDeleted { .. }
            | Event::ClientsChanged { .. }
            | Event::Error { .. }
            | Event::McpServerChanged { .. }
            | Event::Sentence { .. }
            | Event::SpeechFinished { .. }
            | Event::VoiceActivity { .. }
            | Event::InputLevel { .. }
            | Event::Transcript { .. }
            | Event::VoiceChanged { .. }
            | Event::Lagged { .. }
            | Event::ShuttingDown
            | Event::Unknown => false,
        };
        if !ours {
            return Ok(None);
        }
        let json = self.json;
        if json {
            writeln!(io.out, "{}", ev.raw)?;
            io.out.flush()?;
        }
        match ev.event {
            Event::Delta { text, .. } if !json => {
                io.out.write_all(text.as_bytes())?;
                io.out.flush()?;
                self.printed.push_str(&text);
            }
            Event::ToolCallStarted {
                call_id,
                server,
                tool,
                arguments,
                ..
            } => {
                let label = format!("{server} · {tool}");
                if !json {
                    let args = tool_text::args_inline(&arguments, 60);
                    writeln!(io.diag, "⚙ {label} {args}")?;
                }
                self.calls.insert(call_id, label);
            }
            Event::ToolCallProgress {
                call_id,
                progress,
                total,
                message,
            } if !json => {
                let label = self.calls.get(&call_id).map_or("tool", String::as_str);
                let progress = tool_text::progress_text(progress, total, message.as_deref());
                writeln!(io.diag, "⚙ {label} … {progress}")?;
            }
            Event::ToolCallEnded {
                call_id,
                outcome,
                duration_ms,
                summary,
                ..
            } if !json => {
                let label = self.calls.get(&call_id).map_or("tool", String::as_str);
                let glyph = tool_text::outcome_glyph(outcome);
                let text = tool_text::outcome_text(outcome, duration_ms, &summary);
                writeln!(io.diag, "{glyph} {label} {text}")?;
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
                let args = tool_text::args_inline(&arguments, 60);
                let label = format!("{server} · {tool} {args}").trim_end().to_owned();
                self.requests.insert(request_id, label.clone());
                match self.mode {
                    Mode::Auto => {
                        self.outbox.push((request_id, ApprovalDecision::AllowOnce));
                        self.answered
                            .insert(request_id, ApprovalDecision::AllowOnce);
                        if !json {
                            writeln!(io.diag, "allowing tool {label} once (--approve)")?;
                        }
                    }
                    Mode::Prompt => {
                        if !description.trim().is_empty() {
                            writeln!(
                                io.diag,
                                "{server} · {tool}: {}",
                                tool_text::truncate(description.trim(), 200)
                            )?;
                        }
                        self.prompts.push_back(request_id);
                        if self.prompts.len() == 1 {
                            self.ask(io.diag)?;
                        }
                    }
                    Mode::Leave => writeln!(
                        io.diag,
                        "note: tool {label} needs approval; answer it in `vtuber chat` \
                         (denied after {timeout_secs} s), or pass --approve"
                    )?,
                }
            }
            Event::ApprovalResolved {
                request_id,
                resolution,
            } => {
                let asked_now = self.prompts.front() == Some(&request_id);
                let waiting = self.prompts.contains(&request_id);
                self.prompts.retain(|id| *id != request_id);
                // Our own answer needs no echo, unless another one won.
                let as_answered = self.answered.get(&request_id).is_some_and(|d| {
                    matches!(
                        (d, resolution),
                        (ApprovalDecision::AllowOnce, ApprovalResolution::Approved)
                            | (
                                ApprovalDecision::AllowForSession,
                                ApprovalResolution::ApprovedForSession
                            )
                            | (ApprovalDecision::Deny, ApprovalResolution::Denied)
                    )
                });
                if !as_answered {
                    let label = self.requests.get(&request_id).map_or("", String::as_str);
                    let how = tool_text::resolution_text(resolution);
                    if asked_now {
                        writeln!(io.diag)?;
                    }
                    if waiting
                        || self.mode == Mode::Leave
                        || self.answered.contains_key(&request_id)
                    {
                        writeln!(io.diag, "tool {label}: {how}")?;
                    }
                    if asked_now {
                        self.ask(io.diag)?;
                    }
                }
            }
            Event::TurnEnded {
                outcome,
                text: final_text,
                cut,
                ..
            } => {
                if !json {
                    self.finish_text(&final_text, io)?;
                    if let Some(cut) = &cut {
                        writeln!(io.diag, "note: {}", cut.message)?;
                    }
                }
                return Ok(Some(match outcome {
                    TurnOutcome::Finished => TurnEnd::Finished,
                    TurnOutcome::Interrupted => TurnEnd::Interrupted,
                    TurnOutcome::Failed { error } => TurnEnd::Failed(error),
                }));
            }
            // With `json` the raw line above is the whole output; the turn's start shows
            // nothing, and the other events never count as ours (see above).
            Event::Delta { .. }
            | Event::ToolCallProgress { .. }
            | Event::ToolCallEnded { .. }
            | Event::TurnStarted { .. }
            | Event::StateChanged { .. }
            | Event::ModelLoad { .. }
            | Event::CharacterChanged { .. }
            | Event::CharactersReloaded { .. }
            | Event::ConversationChanged { .. }
            | Event::ConversationDeleted { .. }
            | Event::ClientsChanged { .. }
            | Event::Error { .. }
            | Event::McpServerChanged { .. }
            | Event::Sentence { .. }
            | Event::SpeechFinished { .. }
            | Event::VoiceActivity { .. }
            | Event::InputLevel { .. }
            | Event::Transcript { .. }
            | Event::VoiceChanged { .. }
            | Event::Lagged { .. }
            | Event::ShuttingDown
            | Event::Unknown => {}
        }
        Ok(None)
    }

    /// The stored text is authoritative: it covers a backend that sent no deltas
    /// and deltas lost to lag. Completes what was printed from it.
    fn finish_text<W: Write, E: Write>(
        &mut self,
        final_text: &str,
        io: &mut Outputs<'_, W, E>,
    ) -> Result<()> {
        let out = &mut *io.out;
        let printed = &mut self.printed;
        let settled = final_text.is_empty() || printed.starts_with(final_text.trim_end());
        match final_text.strip_prefix(printed.as_str()) {
            _ if settled => {}
            Some(rest) => {
                out.write_all(rest.as_bytes())?;
                printed.push_str(rest);
            }
            None => {
                writeln!(out)?;
                writeln!(
                    io.diag,
                    "note: part of the stream was missed; the whole reply follows"
                )?;
                out.write_all(final_text.as_bytes())?;
                final_text.clone_into(printed);
            }
        }
        if !printed.is_empty() {
            writeln!(out)?;
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtuber_shared::client::Hello;
    use vtuber_shared::client::fake_daemon::{self as fake, Peer};
    use vtuber_shared::{PROTOCOL_VERSION, Usage};

    /// Runs `say`'s streaming against `conn`, returning how it ended, stdout, stderr.
    async fn run_say(
        conn: &mut client::Connection,
        text: &str,
        json: bool,
        approval: Approval,
    ) -> (Result<TurnEnd>, String, String) {
        let (mut out, mut diag) = (Vec::new(), Vec::new());
        let end = stream_turn(
            &conn.client,
            &mut conn.events,
            Request::SendText {
                text: text.into(),
                images: Vec::new(),
            },
            &mut Outputs {
                out: &mut out,
                diag: &mut diag,
            },
            json,
            approval,
        )
        .await;
        (
            end,
            String::from_utf8(out).unwrap(),
            String::from_utf8(diag).unwrap(),
        )
    }

    /// The daemon streams two deltas of our turn *before* accepting it, interleaves
    /// another client's turn, and then finishes: only our text may come out.
    #[tokio::test]
    async fn say_buffers_early_events_and_prints_only_its_turn() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            assert_eq!(
                req.request,
                Request::SendText {
                    text: "hello".into(),
                    images: Vec::new(),
                }
            );
            peer.event(
                1,
                Event::TurnStarted {
                    turn_id: 5,
                    conversation_id: 7,
                    text: "hello".into(),
                    origin: "vtuber-say".into(),
                },
            )
            .await;
            peer.event(
                2,
                Event::Delta {
                    turn_id: 5,
                    text: "Hi".into(),
                },
            )
            .await;
            peer.event(
                3,
                Event::Delta {
                    turn_id: 4,
                    text: "OTHER".into(),
                },
            )
            .await;
            peer.respond(
                req.id,
                Reply::TurnAccepted {
                    turn_id: 5,
                    conversation_id: 7,
                },
            )
            .await;
            peer.event(
                4,
                Event::Delta {
                    turn_id: 5,
                    text: " 世界".into(),
                },
            )
            .await;
            peer.event(
                5,
                Event::Delta {
                    turn_id: 4,
                    text: "MORE".into(),
                },
            )
            .await;
            peer.event(
                6,
                Event::TurnEnded {
                    turn_id: 5,
                    outcome: TurnOutcome::Finished,
                    text: "Hi 世界".into(),
                    usage: Some(Usage::default()),
                    cut: None,
                    text_omitted: false,
                },
            )
            .await;
        });
        let mut conn = client::connect(&path, Hello::new("say", true))
            .await
            .unwrap();
        let (end, out, _) = run_say(&mut conn, "hello", false, Approval::Leave).await;
        let end = end.unwrap();
        assert_eq!(end, TurnEnd::Finished);
        assert_eq!(out, "Hi 世界\n");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn say_json_prints_raw_frames_of_its_turn_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            peer.respond(
                req.id,
                Reply::TurnAccepted {
                    turn_id: 9,
                    conversation_id: 1,
                },
            )
            .await;
            peer.event(1, Event::ClientsChanged { clients: 3 }).await;
            peer.event(
                2,
                Event::Delta {
                    turn_id: 9,
                    text: "par".into(),
                },
            )
            .await;
            peer.event(
                3,
                Event::TurnEnded {
                    turn_id: 9,
                    outcome: TurnOutcome::Failed {
                        error: ErrorBody::new(vtuber_shared::ErrorCode::Llm, "backend down")
                            .with_hint("is the server up?"),
                    },
                    text: "par".into(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await;
        });
        let mut conn = client::connect(&path, Hello::new("say", true))
            .await
            .unwrap();
        let (end, out, _) = run_say(&mut conn, "x", true, Approval::Leave).await;
        let end = end.unwrap();
        match end {
            TurnEnd::Failed(e) => assert_eq!(e.to_string(), "backend down (is the server up?)"),
            other => panic!("{other:?}"),
        }
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0]["kind"], "response");
        assert_eq!(lines[0]["result"]["type"], "turn_accepted");
        assert_eq!(lines[1]["event"]["type"], "delta");
        assert_eq!(lines[2]["event"]["outcome"], "failed");
    }

    #[tokio::test]
    async fn say_reports_a_connection_lost_mid_reply() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            peer.respond(
                req.id,
                Reply::TurnAccepted {
                    turn_id: 1,
                    conversation_id: 1,
                },
            )
            .await;
            peer.event(
                1,
                Event::Delta {
                    turn_id: 1,
                    text: "half".into(),
                },
            )
            .await;
            // Dropping the peer closes the socket.
        });
        let mut conn = client::connect(&path, Hello::new("say", true))
            .await
            .unwrap();
        let (end, out, _) = run_say(&mut conn, "x", false, Approval::Leave).await;
        let err = end.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        assert_eq!(out, "half\n");
    }

    fn approval_requested(request_id: u64, turn_id: u64, tool: &str) -> Event {
        Event::ApprovalRequested {
            request_id,
            turn_id,
            call_id: format!("c{request_id}"),
            server: "fs".into(),
            tool: tool.into(),
            description: String::new(),
            arguments: serde_json::json!({"path": "/tmp/x"}),
            timeout_secs: 30,
        }
    }

    /// With `--approve`, our turn's request is allowed once, another turn's is not
    /// touched, and the tool's progress shows on stderr while stdout keeps the reply.
    #[tokio::test]
    async fn say_approve_allows_its_own_requests_and_reports_tools_on_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            peer.respond(
                req.id,
                Reply::TurnAccepted {
                    turn_id: 3,
                    conversation_id: 1,
                },
            )
            .await;
            peer.event(1, approval_requested(10, 2, "other_turn")).await;
            peer.event(2, approval_requested(11, 3, "write_file")).await;
            let answer = peer.read().await;
            assert_eq!(
                answer.request,
                Request::ApproveToolCall {
                    request_id: 11,
                    decision: ApprovalDecision::AllowOnce
                }
            );
            peer.event(
                3,
                Event::ApprovalResolved {
                    request_id: 11,
                    resolution: vtuber_shared::ApprovalResolution::Approved,
                },
            )
            .await;
            peer.event(
                4,
                Event::ToolCallStarted {
                    turn_id: 3,
                    call_id: "c11".into(),
                    server: "fs".into(),
                    tool: "write_file".into(),
                    arguments: serde_json::json!({"path": "/tmp/x"}),
                },
            )
            .await;
            peer.event(
                5,
                Event::ToolCallProgress {
                    call_id: "c11".into(),
                    progress: 1.0,
                    total: Some(4.0),
                    message: Some("writing".into()),
                },
            )
            .await;
            peer.event(
                6,
                Event::ToolCallEnded {
                    turn_id: 3,
                    call_id: "c11".into(),
                    outcome: vtuber_shared::ToolOutcome::Ok,
                    duration_ms: 42,
                    summary: "wrote 3 bytes".into(),
                },
            )
            .await;
            peer.event(
                7,
                Event::TurnEnded {
                    turn_id: 3,
                    outcome: TurnOutcome::Finished,
                    text: "Done.".into(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await;
        });
        let mut conn = client::connect(&path, Hello::new("say", true))
            .await
            .unwrap();
        let (end, out, diag) = run_say(&mut conn, "save it", false, Approval::Auto).await;
        assert_eq!(end.unwrap(), TurnEnd::Finished);
        assert_eq!(out, "Done.\n");
        assert_eq!(
            diag,
            "allowing tool fs · write_file {\"path\":\"/tmp/x\"} once (--approve)\n\
             ⚙ fs · write_file {\"path\":\"/tmp/x\"}\n\
             ⚙ fs · write_file … 25% writing\n\
             ✓ fs · write_file 42 ms · wrote 3 bytes\n"
        );
        server.await.unwrap();
    }

    /// On a terminal, requests queue behind one prompt: the typed answer is sent,
    /// and one answered elsewhere is dropped from the queue with a note.
    #[tokio::test]
    async fn say_prompts_for_each_request_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let (lines_tx, lines_rx) = mpsc::unbounded_channel();
        let (path, server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            peer.respond(
                req.id,
                Reply::TurnAccepted {
                    turn_id: 3,
                    conversation_id: 1,
                },
            )
            .await;
            peer.event(1, approval_requested(11, 3, "read_file")).await;
            peer.event(2, approval_requested(12, 3, "delete_file"))
                .await;
            peer.event(3, approval_requested(13, 3, "list_dir")).await;
            // Someone else denies the second while the first is being asked.
            peer.event(
                4,
                Event::ApprovalResolved {
                    request_id: 12,
                    resolution: vtuber_shared::ApprovalResolution::Denied,
                },
            )
            .await;
            lines_tx.send("s".to_owned()).unwrap();
            let answer = peer.read().await;
            assert_eq!(
                answer.request,
                Request::ApproveToolCall {
                    request_id: 11,
                    decision: ApprovalDecision::AllowForSession
                }
            );
            lines_tx.send(String::new()).unwrap();
            let answer = peer.read().await;
            assert_eq!(
                answer.request,
                Request::ApproveToolCall {
                    request_id: 13,
                    decision: ApprovalDecision::Deny
                }
            );
            peer.event(
                5,
                Event::TurnEnded {
                    turn_id: 3,
                    outcome: TurnOutcome::Finished,
                    text: "ok".into(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await;
        });
        let mut conn = client::connect(&path, Hello::new("say", true))
            .await
            .unwrap();
        let (end, out, diag) = run_say(&mut conn, "go", true, Approval::Prompt(lines_rx)).await;
        assert_eq!(end.unwrap(), TurnEnd::Finished);
        let args = "{\"path\":\"/tmp/x\"}";
        assert_eq!(
            diag,
            format!(
                "allow tool fs · read_file {args}? [y]es/[s]ession/[N]o \
                 tool fs · delete_file {args}: denied\n\
                 allow tool fs · list_dir {args}? [y]es/[s]ession/[N]o "
            )
        );
        // --json: every event of the turn is printed as it comes.
        assert_eq!(out.lines().count(), 6, "{out}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn say_without_a_terminal_leaves_approval_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            peer.respond(
                req.id,
                Reply::TurnAccepted {
                    turn_id: 3,
                    conversation_id: 1,
                },
            )
            .await;
            peer.event(1, approval_requested(11, 3, "read_file")).await;
            peer.event(
                2,
                Event::ApprovalResolved {
                    request_id: 11,
                    resolution: vtuber_shared::ApprovalResolution::TimedOut,
                },
            )
            .await;
            peer.event(
                3,
                Event::ToolCallEnded {
                    turn_id: 3,
                    call_id: "c11".into(),
                    outcome: vtuber_shared::ToolOutcome::TimedOut,
                    duration_ms: 0,
                    summary: String::new(),
                },
            )
            .await;
            peer.event(
                4,
                Event::TurnEnded {
                    turn_id: 3,
                    outcome: TurnOutcome::Finished,
                    text: "no".into(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await;
            // Nothing else may arrive from the client: it must not answer.
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(200), peer.read())
                    .await
                    .is_err()
            );
        });
        let mut conn = client::connect(&path, Hello::new("say", true))
            .await
            .unwrap();
        let (end, out, diag) = run_say(&mut conn, "go", false, Approval::Leave).await;
        assert_eq!(end.unwrap(), TurnEnd::Finished);
        assert_eq!(out, "no\n");
        assert!(diag.contains("needs approval"), "{diag}");
        assert!(
            diag.contains("read_file {\"path\":\"/tmp/x\"}: timed out (denied)\n"),
            "{diag}"
        );
        assert!(diag.ends_with("⏱ tool timed out\n"), "{diag}");
    }
}
