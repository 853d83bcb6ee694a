//! One WebSocket connection speaking the Open-LLM-VTuber protocol, and the hub that
//! translates the daemon's events once for all of them.
//!
//! A connection is three tasks: the reader (limits, parsing, quick answers), a worker
//! that runs requests needing the stage or the history store one at a time (so a slow
//! one never holds up `frontend-playback-complete`), and the writer, which merges
//! answers with the shared event stream and runs this client's side of each turn: the
//! one `backend-synth-complete`, then waiting (bounded) for the client's
//! `frontend-playback-complete` before `force-new-message` and the chain's end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use vtuber_shared::{ErrorBody, Event};

use super::WebState;
use super::olv::{
    ClientMessage, ConfigFile, HistoryEntry, HistoryMessage, LatestMessage, ModelConf,
    ServerMessage, Signal, Translator, WebEvent, control, iso8601, olv_role, parse_client,
};
use super::socket::{FRAGMENT_BYTES, Socket, text_frames};
use crate::pcm::Pcm;
use crate::speech::INPUT_RATE;
use crate::stage::Stage;

/// A write that makes no progress for this long means the client is gone or stuck.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);
/// Extra time a client gets beyond the audio's length to report playback complete.
const PLAYBACK_GRACE: Duration = Duration::from_secs(5);
/// The longest wait for `frontend-playback-complete`.
const PLAYBACK_WAIT_MAX: Duration = Duration::from_secs(60);
/// Longest utterance buffered from `mic-audio-data` (16 kHz samples).
const MAX_UTTERANCE_SAMPLES: usize = INPUT_RATE as usize * 120;
/// Requests queued for the worker before new ones are refused.
const WORK_QUEUE: usize = 32;
/// Origin label of turns typed in the browser.
pub const ORIGIN_TEXT: &str = "web";
/// Origin label of turns spoken into the browser.
pub const ORIGIN_VOICE: &str = "web (voice)";

/// Starts the task that turns bus events into shared [`WebEvent`]s.
pub(super) fn start_hub(
    stage: &Stage,
    mut translator: Translator,
    capacity: usize,
    shutdown: CancellationToken,
) -> broadcast::Sender<Arc<WebEvent>> {
    let (tx, _) = broadcast::channel(capacity.max(16));
    let (mut rx, _) = stage.bus.subscribe();
    let out = tx.clone();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                biased;
                ev = rx.recv() => ev,
                _ = shutdown.cancelled() => {
                    // What the stage said last ("shutting down") goes out before the
                    // connections are closed.
                    while let Ok(ev) = rx.try_recv() {
                        if let Some(web) = translator.translate(ev.seq, &ev.event).await {
                            let _ = out.send(Arc::new(web));
                        }
                    }
                    let _ = out.send(Arc::new(WebEvent {
                        seq: 0,
                        signal: Signal::Closing,
                        turn_messages: Vec::new(),
                        messages: Vec::new(),
                    }));
                    break;
                }
            };
            match ev {
                Ok(ev) => {
                    if let Some(web) = translator.translate(ev.seq, &ev.event).await {
                        // No connection is fine: nobody is watching.
                        let _ = out.send(Arc::new(web));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "web event translator fell behind; events dropped"
                    );
                    let mut web = WebEvent {
                        seq: 0,
                        signal: Signal::None,
                        turn_messages: Vec::new(),
                        messages: Vec::new(),
                    };
                    web.messages.push(
                        ServerMessage::error(format!(
                            "lagged: the web server missed {n} daemon events; the page may be out of date (reload it)"
                        ))
                        .encode(),
                    );
                    let _ = out.send(Arc::new(web));
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    tx
}

/// What the reader and worker hand the writer.
enum Out {
    Msg(Utf8Bytes),
    /// `set-model-and-conf`; skipped when `force` is false and this client already has it.
    Model {
        conf: Arc<ModelConf>,
        force: bool,
    },
    /// The client finished playing the turn's audio.
    PlaybackComplete,
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

impl Out {
    fn msg(m: ServerMessage) -> Self {
        Self::Msg(m.encode())
    }
}

/// Runs one connection until either side closes it.
pub(super) async fn run(socket: Socket, web: Arc<WebState>, peer: String) {
    let conn = crate::ipc::NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let client_uid = format!("web-{conn}");
    // Subscribe before anything else, so no event between now and the greeting is lost.
    let events = web.hub.subscribe();
    let stage = web.stage.clone();
    let n = stage.info.clients.fetch_add(1, Ordering::Relaxed) + 1;
    stage.bus.emit(Event::ClientsChanged { clients: n });
    tracing::info!(conn, %peer, clients = n, "web client connected");

    let (sink, stream) = socket.split();
    let closed = CancellationToken::new();
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let conf = Arc::new(web.characters.model_conf(&stage.view().character));
    let writer = tokio::spawn(
        Writer {
            sink,
            client_uid,
            last_conf: None,
            turn: None,
            highest_turn: 0,
            conn,
        }
        .run(out_rx, events, conf, web.shutdown.clone(), closed.clone()),
    );
    let (work_tx, work_rx) = mpsc::channel::<ClientMessage>(WORK_QUEUE);
    let worker = tokio::spawn(worker(web.clone(), work_rx, out_tx.clone()));

    let mut reader = Reader {
        web: web.clone(),
        conn,
        out: out_tx,
        work: work_tx,
        bucket: Bucket::new(web.max_messages_per_sec),
        last_throttle_notice: None,
        last_stream_error: None,
        utterance: Vec::new(),
        utterance_overflow: false,
        streamed_raw: false,
    };
    reader.run(stream, &closed).await;
    let Reader { out, work, .. } = reader;
    drop(work);
    drop(out);
    closed.cancel();
    let _ = worker.await;
    let _ = writer.await;

    if let Some(voice) = stage.info.voice.get() {
        voice.client_gone(conn);
    }
    let n = stage.info.clients.fetch_sub(1, Ordering::Relaxed) - 1;
    stage.bus.emit(Event::ClientsChanged { clients: n });
    tracing::info!(conn, clients = n, "web client disconnected");
}

/// Token bucket: `rate` messages a second, bursts up to twice that.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_sec: u32) -> Self {
        let rate = f64::from(per_sec);
        Self {
            rate,
            burst: rate * 2.0,
            tokens: rate * 2.0,
            last: Instant::now(),
        }
    }

    /// Takes one token; `false` when the client is over its rate. A rate of 0 is no limit.
    fn take(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Reader {
    web: Arc<WebState>,
    conn: u64,
    out: mpsc::Sender<Out>,
    work: mpsc::Sender<ClientMessage>,
    bucket: Bucket,
    last_throttle_notice: Option<Instant>,
    last_stream_error: Option<Instant>,
    /// `mic-audio-data` of the utterance in progress.
    utterance: Vec<f32>,
    utterance_overflow: bool,
    /// This client sent `raw-audio-data` (server-side voice detection).
    streamed_raw: bool,
}

impl Reader {
    async fn send(&self, out: Out) {
        let _ = self.out.send(out).await;
    }

    async fn error(&self, message: impl Into<String>) {
        self.send(Out::msg(ServerMessage::error(message))).await;
    }

    /// Reads until the client leaves or the writer closes the connection (which it does
    /// on shutdown, after the last notices).
    async fn run(&mut self, mut stream: SplitStream<Socket>, closed: &CancellationToken) {
        loop {
            let msg = tokio::select! {
                _ = closed.cancelled() => break,
                m = stream.next() => m,
            };
            let text = match msg {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(WsError::Capacity(e))) => {
                    tracing::warn!(
                        conn = self.conn,
                        "web client sent a message over the hard size limit; closing: {e}"
                    );
                    self.send(Out::Close(
                        1009,
                        "message too big (see web.max_message_bytes)",
                    ))
                    .await;
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(conn = self.conn, "web client read failed: {e}");
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(b))) => {
                    if self.admit(b.len()).await {
                        self.error("binary messages are not part of the protocol: send JSON text")
                            .await;
                    }
                    continue;
                }
                Some(Ok(Message::Text(t))) => t,
            };
            if !self.admit(text.len()).await {
                continue;
            }
            match parse_client(text.as_str()) {
                Ok(m) => self.handle(m).await,
                Err(e) => self.error(e).await,
            }
        }
    }

    /// The size and rate checks; `false` (after telling the client) drops the message.
    async fn admit(&mut self, len: usize) -> bool {
        if !self.bucket.take() {
            // One notice a second at most, or the notices become the flood.
            let now = Instant::now();
            if self
                .last_throttle_notice
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                self.last_throttle_notice = Some(now);
                tracing::debug!(conn = self.conn, "web client over its message rate");
                self.error(format!(
                    "rate limit: more than {} messages a second; messages are being dropped (web.max_messages_per_sec)",
                    self.web.max_messages_per_sec
                ))
                .await;
            }
            return false;
        }
        if len > self.web.max_message_bytes {
            tracing::debug!(
                conn = self.conn,
                len,
                "web client message over the size limit"
            );
            self.error(format!(
                "message of {len} bytes exceeds the {}-byte limit (web.max_message_bytes); it was dropped",
                self.web.max_message_bytes
            ))
            .await;
            return false;
        }
        true
    }

    async fn handle(&mut self, msg: ClientMessage) {
        match msg {
            ClientMessage::Heartbeat => self.send(Out::msg(ServerMessage::HeartbeatAck)).await,
            ClientMessage::FrontendPlaybackComplete => self.send(Out::PlaybackComplete).await,
            // Subtitles for group members; with one shared stage there is nobody to mirror to.
            ClientMessage::AudioPlayStart { .. } => {}
            ClientMessage::AiSpeakSignal => {
                self.error("proactive speaking is not supported yet: the character only answers input")
                    .await
            }
            ClientMessage::AddClientToGroup { .. }
            | ClientMessage::RemoveClientFromGroup { .. }
            | ClientMessage::RequestGroupInfo => {
                self.send(Out::msg(ServerMessage::GroupUpdate {
                    members: Vec::new(),
                    is_owner: false,
                    error: Some(
                        "groups are not supported: every client already shares one stage (the same character and conversation)"
                            .into(),
                    ),
                }))
                .await
            }
            ClientMessage::RequestInitConfig => {
                let conf = self.web.characters.model_conf(&self.web.stage.view().character);
                self.send(Out::Model {
                    conf: Arc::new(conf),
                    force: true,
                })
                .await
            }
            ClientMessage::InterruptSignal { .. } => {
                // The text the user heard is not used: the stored reply is what was
                // generated before the interruption, marked interrupted.
                match self.web.stage.info.voice.get() {
                    Some(v) => v.barge_in(),
                    None => {
                        let stage = self.web.stage.clone();
                        tokio::spawn(async move {
                            let _ = stage.interrupt().await;
                        });
                    }
                }
            }
            ClientMessage::MicAudioData { audio } => {
                if self.utterance.len() + audio.len() > MAX_UTTERANCE_SAMPLES {
                    if !self.utterance_overflow {
                        self.utterance_overflow = true;
                        self.error(format!(
                            "the utterance is longer than {} s; the rest was dropped",
                            MAX_UTTERANCE_SAMPLES / INPUT_RATE as usize
                        ))
                        .await;
                    }
                    return;
                }
                self.utterance
                    .extend(audio.into_iter().map(|s| if s.is_finite() { s.clamp(-1.0, 1.0) } else { 0.0 }));
            }
            ClientMessage::MicAudioEnd { .. } => self.utterance_end().await,
            ClientMessage::RawAudioData { audio } => {
                let Some(voice) = self.voice_or_error().await else {
                    return;
                };
                self.streamed_raw = true;
                let samples = audio.into_iter().map(|s| if s.is_finite() { s.clamp(-1.0, 1.0) } else { 0.0 }).collect();
                if let Err(e) = voice.stream(self.conn, samples) {
                    let now = Instant::now();
                    if self.last_stream_error.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(5)) {
                        self.last_stream_error = Some(now);
                        self.error(e.to_string()).await;
                    }
                }
            }
            other => {
                if self.work.try_send(other).is_err() {
                    self.error("too many requests at once: wait for the answers before sending more").await;
                }
            }
        }
    }

    async fn voice_or_error(&self) -> Option<crate::voice::Voice> {
        match self.web.stage.info.voice.get() {
            Some(v) => Some(v.clone()),
            None => {
                self.error("voice input is disabled on this daemon (set speech.enabled: true in conf.yaml and restart it)")
                    .await;
                None
            }
        }
    }

    /// `mic-audio-end`: transcribe the buffered utterance and answer it, off the socket.
    async fn utterance_end(&mut self) {
        let samples = std::mem::take(&mut self.utterance);
        self.utterance_overflow = false;
        let Some(voice) = self.voice_or_error().await else {
            return;
        };
        if samples.is_empty() {
            if self.streamed_raw {
                // Server-side detection: the client says the utterance is over.
                voice.stream_end(self.conn);
            } else {
                self.error("mic-audio-end without audio: send mic-audio-data first")
                    .await;
            }
            return;
        }
        let out = self.out.clone();
        tokio::spawn(async move {
            match voice
                .utterance(Pcm::new(samples, INPUT_RATE), ORIGIN_VOICE)
                .await
            {
                // The transcript event shows it to every client, this one included.
                Ok((_, Some(_))) => {}
                Ok((_, None)) => {
                    let _ = out
                        .send(Out::msg(ServerMessage::FullText {
                            text: "Nothing was heard".into(),
                        }))
                        .await;
                }
                Err(e) => {
                    let _ = out
                        .send(Out::msg(ServerMessage::error(e.to_string())))
                        .await;
                }
            }
        });
    }
}

/// Runs requests that wait on the stage or the store, in order.
async fn worker(web: Arc<WebState>, mut rx: mpsc::Receiver<ClientMessage>, out: mpsc::Sender<Out>) {
    while let Some(msg) = rx.recv().await {
        for o in request(&web, msg).await {
            if out.send(o).await.is_err() {
                return;
            }
        }
    }
}

fn err(e: ErrorBody) -> Vec<Out> {
    vec![Out::msg(ServerMessage::error(e.to_string()))]
}

fn parse_uid(uid: &str) -> Result<i64, Vec<Out>> {
    uid.trim().parse::<i64>().map_err(|_| {
        vec![Out::msg(ServerMessage::error(format!(
            "no conversation `{uid}`: history ids are numbers (see fetch-history-list)"
        )))]
    })
}

async fn request(web: &WebState, msg: ClientMessage) -> Vec<Out> {
    let stage = &web.stage;
    match msg {
        ClientMessage::TextInput { text, .. } => {
            match stage.send_text(text, ORIGIN_TEXT.into()).await {
                // The turn's events answer it.
                Ok(_) => Vec::new(),
                Err(e) => err(e),
            }
        }
        ClientMessage::FetchHistoryList => {
            let character = stage.view().character.id;
            let list = match stage.store.list_conversations(Some(character)).await {
                Ok(l) => l,
                Err(e) => return err(e.to_body()),
            };
            let mut histories = Vec::with_capacity(list.len());
            for c in list {
                let latest = stage
                    .store
                    .recent_messages(c.id, 8)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .find_map(|m| {
                        olv_role(m.role).map(|role| LatestMessage {
                            role,
                            timestamp: iso8601(m.created_ms),
                            content: m.text,
                        })
                    });
                histories.push(HistoryEntry {
                    uid: c.id.to_string(),
                    latest_message: latest,
                    timestamp: iso8601(c.updated_ms),
                    title: c.title,
                    message_count: c.message_count,
                });
            }
            vec![Out::msg(ServerMessage::HistoryList { histories })]
        }
        ClientMessage::FetchAndSetHistory { history_uid } => {
            let id = match parse_uid(&history_uid) {
                Ok(id) => id,
                Err(o) => return o,
            };
            let id = match stage.load_conversation(id).await {
                Ok(id) => id,
                Err(e) => return err(e),
            };
            match stage.store.conversation(id).await {
                Ok((summary, messages)) => {
                    let ai_name = web.characters.name(&summary.character);
                    let messages = messages
                        .into_iter()
                        .filter_map(|m| {
                            let role = olv_role(m.role)?;
                            Some(HistoryMessage {
                                role,
                                timestamp: iso8601(m.created_ms),
                                content: m.text,
                                name: if role == "ai" {
                                    ai_name.clone()
                                } else {
                                    "You".into()
                                },
                                avatar: None,
                                interrupted: m.interrupted,
                            })
                        })
                        .collect();
                    vec![Out::msg(ServerMessage::HistoryData { messages })]
                }
                Err(e) => err(e.to_body()),
            }
        }
        ClientMessage::CreateNewHistory => match stage.new_conversation().await {
            Ok(id) => vec![Out::msg(ServerMessage::NewHistoryCreated {
                history_uid: id.to_string(),
            })],
            Err(e) => err(e),
        },
        ClientMessage::DeleteHistory { history_uid } => {
            let id = match parse_uid(&history_uid) {
                Ok(id) => id,
                Err(o) => return o,
            };
            let result = stage.delete_conversation(id).await;
            vec![Out::msg(ServerMessage::HistoryDeleted {
                success: result.is_ok(),
                history_uid,
                error: result.err().map(|e| e.to_string()),
            })]
        }
        ClientMessage::FetchConfigs => match stage.characters().await {
            Ok((_, characters)) => vec![Out::msg(ServerMessage::ConfigFiles {
                configs: characters
                    .into_iter()
                    .map(|c| ConfigFile {
                        filename: c.id,
                        name: c.name,
                    })
                    .collect(),
            })],
            Err(e) => err(e),
        },
        ClientMessage::SwitchConfig { file } => {
            // OLV clients name config files; ours are character ids (a `.yaml` or `.toml`
            // suffix is forgiven).
            let name = file
                .trim()
                .trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .trim_end_matches(".toml")
                .to_owned();
            match stage.switch_character(name).await {
                Ok(info) => vec![
                    Out::msg(ServerMessage::ConfigSwitched {
                        message: format!("Switched to {}", info.name),
                    }),
                    Out::Model {
                        conf: Arc::new(web.characters.model_conf(&info)),
                        force: false,
                    },
                ],
                Err(e) => err(e),
            }
        }
        ClientMessage::FetchBackgrounds => {
            let dir = web.assets_dir.join("bg");
            let files = tokio::task::spawn_blocking(move || super::list_files(&dir))
                .await
                .unwrap_or_default();
            vec![Out::msg(ServerMessage::BackgroundFiles { files })]
        }
        ClientMessage::ApprovalResponse {
            request_id,
            decision,
        } => match &stage.info.mcp {
            Some(m) => {
                if m.answer_approval(request_id, decision) {
                    Vec::new()
                } else {
                    vec![Out::msg(ServerMessage::error(format!(
                        "approval request {request_id} is unknown or already settled"
                    )))]
                }
            }
            None => vec![Out::msg(ServerMessage::error(
                "no MCP servers are configured, so there is nothing to approve",
            ))],
        },
        // The reader handles the rest itself.
        _ => Vec::new(),
    }
}

/// Where this client is in the current turn.
#[derive(Debug)]
struct TurnTrack {
    id: u64,
    audio_ms: u64,
    /// `backend-synth-complete` was sent; waiting for the client until this instant.
    waiting_until: Option<tokio::time::Instant>,
}

/// Sends one text message, in fragments when it is long (see `socket`).
async fn write_text(sink: &mut SplitSink<Socket, Message>, m: Utf8Bytes) -> Result<(), WsError> {
    for frame in text_frames(m, FRAGMENT_BYTES) {
        sink.send(frame).await?;
    }
    Ok(())
}

struct Writer {
    sink: SplitSink<Socket, Message>,
    client_uid: String,
    last_conf: Option<Arc<ModelConf>>,
    /// The open turn, if any.
    turn: Option<TurnTrack>,
    /// Highest turn id this client followed, so stale events of older turns are dropped.
    highest_turn: u64,
    conn: u64,
}

/// Why the writer stopped.
enum Stop {
    Gone,
}

impl Writer {
    async fn run(
        mut self,
        mut out: mpsc::Receiver<Out>,
        mut events: broadcast::Receiver<Arc<WebEvent>>,
        conf: Arc<ModelConf>,
        shutdown: CancellationToken,
        closed: CancellationToken,
    ) {
        let _close_on_exit = closed.clone().drop_guard();
        let greeting = [
            ServerMessage::FullText {
                text: "Connection established".into(),
            }
            .encode(),
            conf.message(&self.client_uid).encode(),
            ServerMessage::GroupUpdate {
                members: Vec::new(),
                is_owner: false,
                error: None,
            }
            .encode(),
            ServerMessage::control(control::START_MIC).encode(),
        ];
        self.last_conf = Some(conf);
        for m in greeting {
            if self.send(m).await.is_err() {
                return;
            }
        }
        // Set once shutdown begins: the hub's closing notice is awaited until then.
        let mut stop_by: Option<tokio::time::Instant> = None;
        loop {
            let deadline = self.turn.as_ref().and_then(|t| t.waiting_until);
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if stop_by.is_none() => {
                    stop_by = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    Ok(())
                }
                _ = sleep_until(stop_by) => {
                    self.flush(&mut out).await;
                    self.flush_events(&mut events).await;
                    let _ = self.close(1001, "the daemon is shutting down").await;
                    break;
                }
                o = out.recv() => match o {
                    Some(o) => self.on_out(o).await,
                    None => break,
                },
                ev = events.recv() => match ev {
                    Ok(ev) if ev.signal == Signal::Closing => {
                        self.flush(&mut out).await;
                        let _ = self.close(1001, "the daemon is shutting down").await;
                        break;
                    }
                    Ok(ev) => self.on_event(&ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(conn = self.conn, missed = n, "web client fell behind; events dropped for it");
                        self.send(
                            ServerMessage::error(format!(
                                "lagged: this client fell behind and missed {n} messages; reload the page to resync"
                            ))
                            .encode(),
                        )
                        .await
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    tracing::debug!(conn = self.conn, "no frontend-playback-complete in time; ending the turn anyway");
                    self.end_turn().await
                }
                _ = closed.cancelled() => {
                    self.flush(&mut out).await;
                    let _ = self.close(1000, "").await;
                    break;
                }
            };
            if step.is_err() {
                break;
            }
        }
    }

    /// Sends what is already queued, briefly (the connection is closing).
    async fn flush(&mut self, out: &mut mpsc::Receiver<Out>) {
        while let Ok(o) = out.try_recv() {
            if let Out::Msg(m) = o {
                let send = write_text(&mut self.sink, m);
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(1), send).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
        }
    }

    /// Sends the broadcast notices already queued (e.g. "shutting down"), briefly.
    async fn flush_events(&mut self, events: &mut broadcast::Receiver<Arc<WebEvent>>) {
        while let Ok(ev) = events.try_recv() {
            for m in &ev.messages {
                let send = write_text(&mut self.sink, m.clone());
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(1), send).await,
                    Ok(Ok(()))
                ) {
                    return;
                }
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) -> Result<(), Stop> {
        let frame = Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from_static(reason),
        }));
        match tokio::time::timeout(Duration::from_secs(1), self.sink.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Stop::Gone),
        }
    }

    async fn send(&mut self, m: Utf8Bytes) -> Result<(), Stop> {
        match tokio::time::timeout(WRITE_STALL_LIMIT, write_text(&mut self.sink, m)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(conn = self.conn, "web client write failed: {e}");
                Err(Stop::Gone)
            }
            Err(_) => {
                tracing::warn!(
                    conn = self.conn,
                    "web client stopped reading for 30 s; disconnecting it"
                );
                Err(Stop::Gone)
            }
        }
    }

    async fn send_all(&mut self, ms: &[Utf8Bytes]) -> Result<(), Stop> {
        for m in ms {
            self.send(m.clone()).await?;
        }
        Ok(())
    }

    async fn send_model(&mut self, conf: Arc<ModelConf>, force: bool) -> Result<(), Stop> {
        if !force && self.last_conf.as_deref() == Some(&*conf) {
            return Ok(());
        }
        let m = conf.message(&self.client_uid).encode();
        self.last_conf = Some(conf);
        self.send(m).await
    }

    async fn on_out(&mut self, o: Out) -> Result<(), Stop> {
        match o {
            Out::Msg(m) => self.send(m).await,
            Out::Model { conf, force } => self.send_model(conf, force).await,
            Out::PlaybackComplete => {
                if self
                    .turn
                    .as_ref()
                    .is_some_and(|t| t.waiting_until.is_some())
                {
                    self.end_turn().await
                } else {
                    // Not waiting (e.g. the turn already timed out): nothing to do.
                    Ok(())
                }
            }
            Out::Close(code, reason) => {
                let _ = self.close(code, reason).await;
                Err(Stop::Gone)
            }
        }
    }

    async fn on_event(&mut self, ev: &WebEvent) -> Result<(), Stop> {
        match &ev.signal {
            Signal::None | Signal::Closing => self.send_all(&ev.messages).await,
            Signal::Model(conf) => {
                self.send_all(&ev.messages).await?;
                self.send_model(conf.clone(), false).await
            }
            Signal::Start(id) => {
                if *id <= self.highest_turn {
                    return self.send_all(&ev.messages).await;
                }
                if self.turn.is_some() {
                    // Superseded (the new input interrupted it, or the client never
                    // reported playback): close it before the next chain starts.
                    self.end_turn().await?;
                }
                self.highest_turn = *id;
                self.turn = Some(TurnTrack {
                    id: *id,
                    audio_ms: 0,
                    waiting_until: None,
                });
                self.send_all(&ev.turn_messages).await?;
                self.send_all(&ev.messages).await
            }
            Signal::Turn {
                turn,
                audio_ms,
                done,
            } => {
                let following = self.follow(*turn, !ev.turn_messages.is_empty()).await?;
                if following {
                    self.send_all(&ev.turn_messages).await?;
                    if let Some(t) = self.turn.as_mut() {
                        t.audio_ms += u64::from(*audio_ms);
                    }
                }
                self.send_all(&ev.messages).await?;
                if following && let Some(interrupted) = done {
                    self.speech_done(*interrupted).await?;
                }
                Ok(())
            }
        }
    }

    /// Whether this client follows `turn` now; a turn it never saw start (it connected
    /// mid-turn) is picked up when it has something to show.
    async fn follow(&mut self, turn: u64, has_output: bool) -> Result<bool, Stop> {
        if let Some(t) = &self.turn
            && t.id == turn
        {
            // Output after synthesis completed is not expected; once waiting, stay put.
            return Ok(t.waiting_until.is_none());
        }
        if turn <= self.highest_turn || !has_output {
            return Ok(false);
        }
        if self.turn.is_some() {
            self.end_turn().await?;
        }
        self.highest_turn = turn;
        self.turn = Some(TurnTrack {
            id: turn,
            audio_ms: 0,
            waiting_until: None,
        });
        self.send(ServerMessage::control(control::CHAIN_START).encode())
            .await?;
        Ok(true)
    }

    /// Every sentence of the turn is out.
    async fn speech_done(&mut self, interrupted: bool) -> Result<(), Stop> {
        if interrupted {
            // Tell the page to stop playing; it will not report playback complete.
            self.send(ServerMessage::control(control::INTERRUPT).encode())
                .await?;
            return self.end_turn().await;
        }
        let Some(t) = self.turn.as_mut() else {
            return Ok(());
        };
        let wait = (Duration::from_millis(t.audio_ms) + PLAYBACK_GRACE).min(PLAYBACK_WAIT_MAX);
        t.waiting_until = Some(tokio::time::Instant::now() + wait);
        self.send(ServerMessage::BackendSynthComplete.encode())
            .await
    }

    /// `force-new-message` and the chain's end.
    async fn end_turn(&mut self) -> Result<(), Stop> {
        if self.turn.take().is_none() {
            return Ok(());
        }
        self.send(ServerMessage::ForceNewMessage.encode()).await?;
        self.send(ServerMessage::control(control::CHAIN_END).encode())
            .await
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_bursts_then_the_rate() {
        let mut b = Bucket::new(10);
        let ok = (0..50).filter(|_| b.take()).count();
        assert_eq!(ok, 20, "burst of twice the rate");
        std::thread::sleep(Duration::from_millis(220));
        let ok = (0..50).filter(|_| b.take()).count();
        assert!((1..=3).contains(&ok), "{ok}");
        let mut unlimited = Bucket::new(0);
        assert!((0..10_000).all(|_| unlimited.take()));
    }
}
