//! The one-shot commands: each connects, asks, prints, and exits.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::mpsc;
use vtuber_shared::{
    ApprovalDecision, ApprovalResolution, CharacterInfo, ConversationSummary, ErrorBody, ErrorCode,
    Event, ModelLoad, Reply, Request, Status, TurnOutcome,
};

use crate::cli::{
    CharactersCommand, DaemonCommand, ExportFormat, HistoryCommand, ListenArgs, ModelsCommand,
    SayArgs, SpeakArgs, WebCommand,
};
use crate::daemon::{self, Target};
use crate::exit;
use crate::export;
use crate::time::{format_duration, format_ms};
use crate::tools;
use vtuber_shared::client::{
    self, Client, Connection, EventFrame, Hello, REQUEST_TIMEOUT, reply_kind,
};

/// Sends `request`, turning a daemon error into an error that carries its hint.
async fn ask(client: &Client, request: Request) -> Result<Reply> {
    client
        .request_timeout(request, REQUEST_TIMEOUT)
        .await
        .map_err(|e| anyhow!("{e}"))
}

fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow!(
        "vtuberd sent an unexpected reply ({}); are vtuber and vtuberd the same version?",
        reply_kind(reply)
    )
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    println!("{text}");
    Ok(())
}

/// A query connection: no events, no autostart.
async fn query(target: &Target, code: u8) -> Result<Connection> {
    daemon::connect_existing(target, Hello::new("cli", false), code).await
}

// ---------------------------------------------------------------------------- say

/// What the text of `say` is: the words joined, or standard input for `-`.
fn say_text(words: &[String]) -> Result<String> {
    let text = if words.len() == 1 && words[0] == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the message from standard input")?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        words.join(" ")
    };
    if text.trim().is_empty() {
        bail!("nothing to say: the message is empty");
    }
    Ok(text)
}

pub async fn say(target: &Target, args: &SayArgs) -> Result<ExitCode> {
    let text = say_text(&args.text)?;
    let reads_stdin = args.text.len() == 1 && args.text[0] == "-";
    let approval = if args.approve {
        Approval::Auto
    } else if !reads_stdin && std::io::stdin().is_terminal() {
        Approval::Prompt(stdin_lines())
    } else {
        Approval::Leave
    };
    one_turn(
        target,
        "say",
        Request::SendText { text },
        args.json,
        approval,
    )
    .await
}

/// Sends `request` (which starts a turn), prints the turn as `say` does, and maps how it
/// ended to the exit code.
async fn one_turn(
    target: &Target,
    label: &str,
    request: Request,
    json: bool,
    approval: Approval,
) -> Result<ExitCode> {
    let mut conn = daemon::connect_or_start(target, Hello::new(label, true)).await?;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let end = stream_turn(
        &conn.client,
        &mut conn.events,
        request,
        &mut Outputs {
            out: &mut stdout,
            diag: &mut stderr,
        },
        json,
        approval,
    )
    .await?;
    drop(stdout);
    Ok(match end {
        TurnEnd::Finished => ExitCode::SUCCESS,
        TurnEnd::Failed(error) => {
            eprintln!("error: {error}");
            ExitCode::from(exit::TURN_FAILED)
        }
        TurnEnd::Interrupted => {
            eprintln!("note: the reply was interrupted before it finished");
            ExitCode::from(exit::TURN_INTERRUPTED)
        }
    })
}

/// `vtuber listen FILE.wav`: the file as if spoken, then the reply as `say` prints it.
pub async fn listen(target: &Target, args: &ListenArgs) -> Result<ExitCode> {
    use base64::Engine as _;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if bytes.len() > MAX_AUDIO_BYTES {
        bail!(
            "{} is {} bytes; the limit is {} (about 2 minutes of 16 kHz 16-bit mono): cut it shorter",
            args.file.display(),
            bytes.len(),
            MAX_AUDIO_BYTES
        );
    }
    let wav_base64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let approval = if args.approve {
        Approval::Auto
    } else {
        Approval::Leave
    };
    one_turn(
        target,
        "listen",
        Request::SendAudio { wav_base64 },
        args.json,
        approval,
    )
    .await
}

/// Largest audio file `listen` sends (the socket's frame limit, after base64).
const MAX_AUDIO_BYTES: usize = 3 * 1024 * 1024 - 64 * 1024;

/// `vtuber speak TEXT -o FILE`: the current character's voice, to a WAV file.
pub async fn speak(target: &Target, args: &SpeakArgs) -> Result<ExitCode> {
    use base64::Engine as _;
    let text = say_text(&args.text)?;
    let conn = daemon::connect_or_start(target, Hello::new("speak", false)).await?;
    let audio = match conn.client.request(Request::Speak { text }).await {
        Ok(Reply::Speech { audio }) => audio,
        Ok(other) => return Err(unexpected(&other)),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let wav = base64::engine::general_purpose::STANDARD
        .decode(audio.wav_base64.as_bytes())
        .context("the daemon sent audio that is not base64")?;
    if args.output.as_os_str() == "-" {
        std::io::stdout().write_all(&wav)?;
    } else {
        std::fs::write(&args.output, &wav)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        eprintln!(
            "wrote {} ({:.2} s, {} Hz)",
            args.output.display(),
            f64::from(audio.duration_ms) / 1000.0,
            audio.sample_rate
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vtuber models ...`: the daemon binary reports, with the same config rules it runs by.
pub fn models(target: &Target, cmd: &ModelsCommand) -> Result<ExitCode> {
    let program = daemon::find_vtuberd()?;
    let mut command = std::process::Command::new(&program);
    let (action, json) = match cmd {
        ModelsCommand::List(f) => ("list", f.json),
        ModelsCommand::Verify(f) => ("verify", f.json),
        ModelsCommand::Path(f) => ("path", f.json),
    };
    command.arg("--models").arg(action);
    if json {
        command.arg("--json");
    }
    if let Some(config) = &target.config {
        command.arg("--config").arg(config);
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// Lines typed on standard input, read by a thread (reading a terminal blocks).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
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
                    Some(line) => tools::parse_answer(&line),
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
            _ => false,
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
                    let args = tools::args_inline(&arguments, 60);
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
                let progress = tools::progress_text(progress, total, message.as_deref());
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
                let glyph = tools::outcome_glyph(outcome);
                let text = tools::outcome_text(outcome, duration_ms, &summary);
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
                let args = tools::args_inline(&arguments, 60);
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
                                tools::truncate(description.trim(), 200)
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
                    let how = tools::resolution_text(resolution);
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
            _ => {}
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

// ------------------------------------------------------------------------- status

fn model_load_text(load: &ModelLoad) -> String {
    match load {
        ModelLoad::NotLoaded => "not loaded".into(),
        ModelLoad::Loading => "loading".into(),
        ModelLoad::Ready => "ready".into(),
        ModelLoad::Failed { reason } => format!("failed: {reason}"),
    }
}

/// The human form of `status`: one aligned `key  value` row per fact.
pub fn status_table(status: &Status) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("state", status.state.as_str().to_owned()),
        ("character", status.character.clone()),
        (
            "llm",
            format!("{} · {}", status.llm.backend, status.llm.model),
        ),
        ("model", model_load_text(&status.model_load)),
        (
            "conversation",
            status
                .conversation_id
                .map_or_else(|| "none".to_owned(), |id| id.to_string()),
        ),
        ("clients", status.clients.to_string()),
        (
            "daemon",
            format!(
                "vtuberd {} (pid {}, up {})",
                status.daemon_version,
                status.pid,
                format_duration(status.uptime_secs)
            ),
        ),
        ("socket", status.socket.clone()),
    ];
    if let Some(url) = &status.web_url {
        rows.push(("web", url.clone()));
    }
    if status.web_auth.as_deref() == Some("none") {
        rows.push((
            "web auth",
            "none: anyone who can reach the page drives the character and its tools (set web.auth: token)".to_owned(),
        ));
    }
    if let Some(err) = &status.web_error {
        rows.push(("web", format!("unavailable: {err}")));
    }
    if let Some(v) = &status.voice {
        let engine = |e: &vtuber_shared::EngineStatus| {
            format!("{} · {} ({})", e.backend, e.model, model_load_text(&e.load))
        };
        rows.push(("audio", v.audio.clone()));
        rows.push((
            "listening",
            match (&v.input_device, v.listening) {
                (None, _) => "no microphone".to_owned(),
                (Some(d), true) => format!("on ({d})"),
                (Some(d), false) => format!("off ({d})"),
            },
        ));
        rows.push((
            "voice io",
            format!(
                "playback {} · barge-in {} · echo cancellation {}",
                v.playback, v.barge_in, v.echo_cancellation
            ),
        ));
        rows.push(("vad", engine(&v.vad)));
        rows.push(("asr", engine(&v.asr)));
        rows.push(("tts", engine(&v.tts)));
    }
    if let Some(config) = &status.config_file {
        rows.push(("config", config.clone()));
    }
    if let Some(err) = &status.last_error {
        rows.push(("last error", err.to_string()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

pub async fn status(target: &Target, json: bool) -> Result<ExitCode> {
    let conn = query(target, exit::NOT_RUNNING_STATUS).await?;
    let status = match ask(&conn.client, Request::Status).await? {
        Reply::Status(status) => status,
        other => return Err(unexpected(&other)),
    };
    if json {
        print_json(&status)?;
    } else {
        print!("{}", status_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------- web

pub async fn web(target: &Target, cmd: WebCommand) -> Result<ExitCode> {
    match cmd {
        WebCommand::Url { json } => web_url(target, json).await,
    }
}

/// The page's address as the daemon reports it (it alone knows the token).
async fn web_url(target: &Target, json: bool) -> Result<ExitCode> {
    let conn = query(target, 1).await?;
    let status = match ask(&conn.client, Request::Status).await? {
        Reply::Status(status) => status,
        other => return Err(unexpected(&other)),
    };
    let url = web_url_of(&status)?;
    if json {
        print_json(&serde_json::json!({
            "web_url": url,
            "web_auth": status.web_auth,
        }))?;
    } else {
        println!("{url}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The address from a status, or why there is none and what to do.
pub fn web_url_of(status: &Status) -> Result<&str> {
    match (&status.web_url, &status.web_error) {
        (Some(url), _) => Ok(url),
        (None, Some(err)) => bail!("the web page is unavailable: {err}"),
        (None, None) => bail!(
            "vtuberd serves no web page: web.enabled is false in its config (set web.enabled: true and run `vtuber daemon restart`), or it is still starting (try again)"
        ),
    }
}

// --------------------------------------------------------------------- characters

pub fn characters_table(current: &str, characters: &[CharacterInfo]) -> String {
    let id_w = characters
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let name_w = characters
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("  {:<id_w$}  {:<name_w$}  DESCRIPTION\n", "ID", "NAME");
    for c in characters {
        let mark = if c.id == current || c.name == current {
            '*'
        } else {
            ' '
        };
        let description = c.description.lines().next().unwrap_or("");
        out.push_str(&format!(
            "{mark} {:<id_w$}  {:<name_w$}  {description}\n",
            c.id, c.name
        ));
    }
    out
}

pub async fn characters(target: &Target, cmd: CharactersCommand) -> Result<ExitCode> {
    let conn = query(target, 1).await?;
    match cmd {
        CharactersCommand::List(flag) => match ask(&conn.client, Request::ListCharacters).await? {
            Reply::Characters {
                current,
                characters,
            } => {
                if flag.json {
                    print_json(&serde_json::json!({
                        "current": current,
                        "characters": characters,
                    }))?;
                } else {
                    print!("{}", characters_table(&current, &characters));
                }
            }
            other => return Err(unexpected(&other)),
        },
        CharactersCommand::Switch { name } => {
            match ask(&conn.client, Request::SwitchCharacter { name }).await? {
                Reply::CharacterSwitched { character } => {
                    println!("switched to {} ({})", character.name, character.id);
                }
                other => return Err(unexpected(&other)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------ history

pub fn conversations_table(conversations: &[ConversationSummary]) -> String {
    if conversations.is_empty() {
        return "no conversations yet\n".to_owned();
    }
    let id_w = conversations
        .iter()
        .map(|c| c.id.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let ch_w = conversations
        .iter()
        .map(|c| c.character.len())
        .max()
        .unwrap_or(0)
        .max(9);
    let mut out = format!(
        "{:>id_w$}  {:<ch_w$}  {:<23}  {:>8}  TITLE\n",
        "ID", "CHARACTER", "UPDATED", "MESSAGES"
    );
    for c in conversations {
        out.push_str(&format!(
            "{:>id_w$}  {:<ch_w$}  {:<23}  {:>8}  {}\n",
            c.id,
            c.character,
            format_ms(c.updated_ms),
            c.message_count,
            export::display_title(c)
        ));
    }
    out
}

/// The whole conversation, however many pages it takes.
async fn get_conversation(
    client: &Client,
    id: i64,
) -> Result<(ConversationSummary, Vec<vtuber_shared::StoredMessage>)> {
    client
        .conversation(id, REQUEST_TIMEOUT)
        .await
        .map_err(|e| anyhow!("{e}"))
}

pub async fn history(target: &Target, cmd: HistoryCommand) -> Result<ExitCode> {
    let conn = query(target, 1).await?;
    let client = &conn.client;
    match cmd {
        HistoryCommand::List { character, json } => {
            match ask(client, Request::ListConversations { character }).await? {
                Reply::Conversations { conversations } if json => print_json(&conversations)?,
                Reply::Conversations { conversations } => {
                    print!("{}", conversations_table(&conversations));
                }
                other => return Err(unexpected(&other)),
            }
        }
        HistoryCommand::Show { id, json } => {
            let (conversation, messages) = get_conversation(client, id).await?;
            if json {
                println!(
                    "{}",
                    export::json(&conversation, &messages).context("cannot encode JSON")?
                );
            } else {
                print!("{}", export::markdown(&conversation, &messages));
            }
        }
        HistoryCommand::New => match ask(client, Request::NewConversation).await? {
            Reply::ConversationChanged { conversation_id } => {
                println!("started conversation {conversation_id}");
            }
            other => return Err(unexpected(&other)),
        },
        HistoryCommand::Load { id } => match ask(client, Request::LoadConversation { id }).await? {
            Reply::ConversationChanged { conversation_id } => {
                println!("conversation {conversation_id} is now the current one");
            }
            other => return Err(unexpected(&other)),
        },
        HistoryCommand::Delete { id } => {
            match ask(client, Request::DeleteConversation { id }).await? {
                Reply::Deleted { id } => println!("deleted conversation {id}"),
                other => return Err(unexpected(&other)),
            }
        }
        HistoryCommand::Export { id, format, output } => {
            let (conversation, messages) = get_conversation(client, id).await?;
            let mut text = match format {
                ExportFormat::Md => export::markdown(&conversation, &messages),
                ExportFormat::Json => {
                    export::json(&conversation, &messages).context("cannot encode JSON")?
                }
            };
            if !text.ends_with('\n') {
                text.push('\n');
            }
            match output {
                Some(path) => {
                    write_private(&path, text.as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote conversation {id} to {}", path.display());
                }
                None => std::io::stdout()
                    .write_all(text.as_bytes())
                    .context("cannot write to standard output")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------- config

/// Runs the daemon's own validator: the rules live in one place, the daemon.
pub fn config_check(target: &Target, file: Option<std::path::PathBuf>) -> Result<ExitCode> {
    let program = daemon::find_vtuberd()?;
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("--check-config");
    if let Some(config) = file.or_else(|| target.config.clone()) {
        cmd.arg("--config").arg(config);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("error: {} was killed ({status})", program.display());
            ExitCode::FAILURE
        }
    })
}

// ------------------------------------------------------------------------- daemon

pub async fn daemon(target: &Target, cmd: DaemonCommand) -> Result<ExitCode> {
    match cmd {
        DaemonCommand::Start => start(target).await,
        DaemonCommand::Stop => stop(target).await,
        DaemonCommand::Restart => {
            stop(target).await?;
            start(target).await
        }
        DaemonCommand::Status => {
            let conn = query(target, exit::NOT_RUNNING_STATUS).await?;
            let s = &conn.welcome.status;
            println!(
                "vtuberd {} is running (pid {}, up {}, state {}) on {}",
                s.daemon_version,
                s.pid,
                format_duration(s.uptime_secs),
                s.state.as_str(),
                target.socket.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn start(target: &Target) -> Result<ExitCode> {
    match client::connect(&target.socket, Hello::new("cli", false)).await {
        Ok(conn) => {
            return Err(anyhow!(
                "vtuberd is already running (pid {})",
                conn.welcome.status.pid
            ));
        }
        Err(client::ConnectError::NotRunning { .. }) => {}
        Err(e) => return Err(daemon::connect_failure(e)),
    }
    let conn = daemon::start(target, Hello::new("cli", false)).await?;
    println!(
        "vtuberd {} started (pid {}) on {}; log: {}",
        conn.welcome.daemon_version,
        conn.welcome.status.pid,
        target.socket.display(),
        daemon::log_path().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to exit, then polls until the socket stops answering. Stopping a
/// daemon that is not running succeeds (with a note), so `restart` and scripts can
/// use it unconditionally.
async fn stop(target: &Target) -> Result<ExitCode> {
    let conn = match client::connect(&target.socket, Hello::new("cli", false)).await {
        Ok(conn) => conn,
        Err(client::ConnectError::NotRunning { .. }) => {
            eprintln!("vtuberd is not running");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(daemon::connect_failure(e)),
    };
    let pid = conn.welcome.status.pid;
    match ask(&conn.client, Request::Shutdown).await? {
        Reply::ShuttingDown => {}
        other => return Err(unexpected(&other)),
    }
    drop(conn);
    if !daemon::wait_until_stopped(&target.socket, daemon::STOP_TIMEOUT).await {
        bail!(
            "vtuberd (pid {pid}) is still answering {} s after being asked to stop; \
             see {} or end it with `kill {pid}`",
            daemon::STOP_TIMEOUT.as_secs(),
            daemon::log_path().display()
        );
    }
    println!("vtuberd (pid {pid}) stopped");
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only its owner can read (conversations are private); an existing file
/// is truncated and narrowed to 0600.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
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
            Request::SendText { text: text.into() },
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

    #[test]
    fn status_table_is_aligned_and_complete() {
        let table = status_table(&fake::status());
        assert_eq!(
            table,
            "\
state         idle
character     aria
llm           embedded · tiny
model         ready
conversation  7
clients       1
daemon        vtuberd 0.1.0 (pid 4242, up 12s)
socket        /tmp/x.sock
"
        );
    }

    #[test]
    fn status_table_shows_the_web_page_and_its_problems() {
        let mut s = fake::status();
        s.web_url = Some("http://127.0.0.1:1/?token=abc".into());
        s.web_auth = Some("token".into());
        let table = status_table(&s);
        assert!(
            table.contains("web           http://127.0.0.1:1/?token=abc\n"),
            "{table}"
        );
        assert!(!table.contains("web auth"), "{table}");
        assert_eq!(web_url_of(&s).unwrap(), "http://127.0.0.1:1/?token=abc");
        s.web_auth = Some("none".into());
        let table = status_table(&s);
        assert!(
            table.contains("web auth") && table.contains("set web.auth: token"),
            "{table}"
        );
        s.web_url = None;
        s.web_auth = None;
        s.web_error = Some("port 1 is already in use; set web.port".into());
        let table = status_table(&s);
        assert!(
            table.contains("web           unavailable: port 1 is already in use; set web.port"),
            "{table}"
        );
        let e = web_url_of(&s).unwrap_err().to_string();
        assert!(e.contains("already in use"), "{e}");
        s.web_error = None;
        let e = web_url_of(&s).unwrap_err().to_string();
        assert!(e.contains("web.enabled"), "{e}");
    }

    #[test]
    fn characters_table_marks_the_current_one() {
        let c = |id: &str, name: &str| CharacterInfo {
            id: id.into(),
            name: name.into(),
            description: "line one\nline two".into(),
            greeting: None,
            source: "built-in".into(),
        };
        let table = characters_table("bo", &[c("aria", "Aria"), c("bo", "Bo")]);
        assert_eq!(
            table,
            "  ID    NAME  DESCRIPTION\n  aria  Aria  line one\n* bo    Bo    line one\n"
        );
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
                    text: "hello".into()
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
