//! The local socket: binding it safely, and one session per attached client.
//!
//! A session is two tasks: a reader that parses frames and answers requests in order,
//! and a writer that merges those answers with the broadcast events. Responses take
//! priority over events; a client that stops reading only fills its own queues.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName, tokio as ls};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use vtuber_shared::framing::{self, Line, LineSplitter};
use vtuber_shared::{
    ClientFrame, ErrorBody, ErrorCode, Event, Outcome, PROTOCOL_VERSION, Reply, Request,
    ServerFrame,
};

use crate::events::EventReceiver;
use crate::stage::Stage;

/// A write that makes no progress for this long means the client is gone or stuck.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another vtuberd{pid} already owns {socket}")]
    AlreadyRunning { socket: PathBuf, pid: String },
    #[error("cannot prepare the socket folder {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind the socket {socket}: {source}")]
    Bind {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the socket cookie {path}: {source}")]
    Cookie {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BindError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::AlreadyRunning { .. } => {
                "stop it with `vtuber daemon stop`, or pass another --socket"
            }
            Self::Dir { .. } | Self::Bind { .. } | Self::Cookie { .. } => {
                "check permissions, or pass --socket / set $VTUBER_SOCKET to a writable path"
            }
        }
    }
}

/// The bound socket plus the lock that proves this daemon owns it, and the cookie
/// clients must present (see [`vtuber_shared::cookie`]).
pub struct BoundSocket {
    pub listener: ls::Listener,
    pub path: PathBuf,
    pub cookie: Cookie,
    _lock: File,
    lock_path: PathBuf,
}

impl BoundSocket {
    /// Removes the socket, lock and cookie files (on clean exit).
    pub fn cleanup(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
        let _ = std::fs::remove_file(vtuber_shared::cookie::cookie_path(&self.path));
    }
}

/// The secret this daemon's clients present in `hello`.
#[derive(Clone)]
pub struct Cookie(Arc<str>);

impl Cookie {
    /// A fresh random cookie.
    pub fn generate() -> std::io::Result<Self> {
        Ok(Self(
            crate::private::random_hex(vtuber_shared::cookie::COOKIE_BYTES)?.into(),
        ))
    }

    /// Whether `presented` is this cookie (constant time).
    pub fn matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| vtuber_shared::cookie::same_secret(p.trim(), &self.0))
    }
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(..)")
    }
}

/// Binds `path`. An exclusive lock on `<path>.lock` decides ownership: while another
/// daemon holds it we refuse; once we hold it, any socket file left is stale (its owner
/// crashed) and is removed.
pub fn bind(path: &Path) -> Result<BoundSocket, BindError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| BindError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    // Our own runtime folder is private even if something loosened it; a folder the user
    // chose with --socket is theirs to manage.
    if dir == vtuber_shared::paths::runtime_dir() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock_path = PathBuf::from(lock_name);
    let mut lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|source| BindError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
    let _ = lock.set_permissions(std::fs::Permissions::from_mode(0o600));
    if lock.try_lock().is_err() {
        let mut pid = String::new();
        let _ = lock.read_to_string(&mut pid);
        let pid = pid.trim();
        return Err(BindError::AlreadyRunning {
            socket: path.to_path_buf(),
            pid: if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            },
        });
    }
    let _ = lock.set_len(0);
    let _ = write!(lock, "{}", std::process::id());
    if path.exists() {
        tracing::info!(socket = %path.display(), "removing stale socket left by a previous daemon");
        let _ = std::fs::remove_file(path);
    }
    // A new cookie at every start, so one read from an earlier run is worth nothing;
    // written before the socket exists, so a client that finds the socket finds it.
    let cookie_path = vtuber_shared::cookie::cookie_path(path);
    let cookie_err = |source| BindError::Cookie {
        path: cookie_path.clone(),
        source,
    };
    let cookie = Cookie::generate().map_err(cookie_err)?;
    crate::private::write_atomic(&cookie_path, format!("{}\n", cookie.0).as_bytes())
        .map_err(cookie_err)?;
    let name = path
        .to_fs_name::<GenericFilePath>()
        .map_err(|source| BindError::Bind {
            socket: path.to_path_buf(),
            source,
        })?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .reclaim_name(false)
        .create_tokio()
        .map_err(|source| BindError::Bind {
            socket: path.to_path_buf(),
            source,
        })?;
    // Belt and braces where the platform ignored the requested mode.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(BoundSocket {
        listener,
        path: path.to_path_buf(),
        cookie,
        _lock: lock,
        lock_path,
    })
}

/// Accepts clients until `shutdown` fires.
pub async fn serve(
    listener: ls::Listener,
    cookie: Cookie,
    stage: Stage,
    shutdown: CancellationToken,
) {
    let my_uid = vtuber_shared::paths::current_uid();
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = listener.accept() => c,
        };
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let peer_uid = stream.peer_creds().ok().and_then(|c| c.euid());
        if my_uid.is_some() && peer_uid != my_uid {
            tracing::warn!(?peer_uid, "refused a client of another user");
            tokio::spawn(refuse(stream));
            continue;
        }
        tokio::spawn(session(
            stream,
            cookie.clone(),
            stage.clone(),
            shutdown.clone(),
        ));
    }
}

async fn refuse(stream: ls::Stream) {
    let mut tx = &stream;
    let frame = ServerFrame::Response {
        id: None,
        outcome: Outcome::Err(
            ErrorBody::new(ErrorCode::Handshake, "this daemon serves another user")
                .with_hint("run your own vtuberd"),
        ),
    };
    if let Ok(line) = framing::encode(&frame) {
        let _ = tokio::time::timeout(Duration::from_secs(1), tx.write_all(&line)).await;
    }
}

fn response(id: Option<u64>, outcome: Result<Reply, ErrorBody>) -> ServerFrame {
    ServerFrame::Response {
        id,
        outcome: match outcome {
            Ok(r) => Outcome::Ok(r),
            Err(e) => Outcome::Err(e),
        },
    }
}

/// What the reader hands the writer.
enum Outgoing {
    Frame(Box<ServerFrame>),
    /// Start forwarding events from this subscription.
    Subscribe(EventReceiver),
    /// Flush and close.
    Close,
}

async fn session(stream: ls::Stream, cookie: Cookie, stage: Stage, shutdown: CancellationToken) {
    // `&Stream` reads and writes independently, so the two tasks share one stream.
    let stream = Arc::new(stream);
    let mut rx = &*stream;
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(64);
    // Either side ending ends the session: the writer gives up on a stuck client.
    let closed = CancellationToken::new();
    let writer = tokio::spawn(writer(
        stream.clone(),
        out_rx,
        shutdown.clone(),
        closed.clone(),
    ));
    let mut splitter = LineSplitter::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut client: Option<String> = None;
    let conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    'read: loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = closed.cancelled() => break,
            n = rx.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        for line in splitter.push(&buf[..n]) {
            let frame = match line {
                Line::Oversized { len } => response(
                    None,
                    Err(ErrorBody::new(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "frame of {len} bytes exceeds the {}-byte limit; it was dropped",
                            framing::MAX_FRAME_BYTES
                        ),
                    )
                    .with_hint("send smaller messages")),
                ),
                Line::Frame(bytes) => match framing::decode::<ClientFrame>(&bytes) {
                    Err(e) => response(
                        peek_id(&bytes),
                        Err(ErrorBody::new(ErrorCode::BadRequest, e.to_string()).with_hint(
                            "send one JSON object per line: {\"id\": N, \"request\": {\"type\": ...}} (see docs/protocol.md)",
                        )),
                    ),
                    Ok(frame) => {
                        let mut subscription = None;
                        let (reply, close) =
                            handle(&stage, &cookie, conn, &mut client, frame, &mut subscription).await;
                        if out_tx.send(Outgoing::Frame(Box::new(reply))).await.is_err() {
                            break 'read;
                        }
                        // After the welcome, so no event overtakes it; the receiver has
                        // buffered everything since `last_seq` meanwhile.
                        if let Some(rx) = subscription
                            && out_tx.send(Outgoing::Subscribe(rx)).await.is_err()
                        {
                            break 'read;
                        }
                        if close {
                            break 'read;
                        }
                        continue;
                    }
                },
            };
            if out_tx.send(Outgoing::Frame(Box::new(frame))).await.is_err() {
                break 'read;
            }
        }
    }
    let _ = out_tx.send(Outgoing::Close).await;
    drop(out_tx);
    let _ = writer.await;
    if let Some(voice) = stage.info.voice.get() {
        voice.client_gone(conn);
    }
    if client.is_some() {
        let n = stage.info.clients.fetch_sub(1, Ordering::Relaxed) - 1;
        stage.bus.emit(Event::ClientsChanged { clients: n });
    }
}

/// Best effort: the `id` of a frame that failed to parse as a whole.
fn peek_id(bytes: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get("id")?
        .as_u64()
}

/// Connection ids for per-connection state elsewhere (audio streams). Shared with the
/// web server so ids never collide.
pub static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

async fn handle(
    stage: &Stage,
    cookie: &Cookie,
    conn: u64,
    client: &mut Option<String>,
    frame: ClientFrame,
    subscription: &mut Option<EventReceiver>,
) -> (ServerFrame, bool) {
    let id = Some(frame.id);
    let Some(label) = client.clone() else {
        return match frame.request {
            Request::Hello {
                protocol,
                client: name,
                subscribe,
                cookie: presented,
            } => {
                if protocol != PROTOCOL_VERSION {
                    return (
                        response(
                            id,
                            Err(ErrorBody::new(
                                ErrorCode::Handshake,
                                format!(
                                    "protocol version {protocol} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                                ),
                            )
                            .with_hint("use the vtuber client from the same release as vtuberd")),
                        ),
                        true,
                    );
                }
                if !cookie.matches(presented.as_deref()) {
                    tracing::warn!(client = %name, "refused a client without the socket cookie");
                    let what = if presented.is_some() {
                        "the cookie in `hello` is not this daemon's"
                    } else {
                        "`hello` carries no cookie"
                    };
                    return (
                        response(
                            id,
                            Err(ErrorBody::new(ErrorCode::Handshake, what).with_hint(format!(
                                "send the content of {} as `cookie` (the vtuber client does this); it changes at every daemon start",
                                vtuber_shared::cookie::cookie_path(&stage.info.socket).display()
                            ))),
                        ),
                        true,
                    );
                }
                let last_seq = if subscribe {
                    let (rx, last) = stage.bus.subscribe();
                    *subscription = Some(rx);
                    last
                } else {
                    stage.bus.last_seq()
                };
                *client = Some(name.clone());
                let n = stage.info.clients.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(client = %name, clients = n, "client attached");
                stage.bus.emit(Event::ClientsChanged { clients: n });
                (
                    response(
                        id,
                        Ok(Reply::Welcome {
                            protocol: PROTOCOL_VERSION,
                            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
                            status: stage.status(),
                            last_seq,
                        }),
                    ),
                    false,
                )
            }
            _ => (
                response(
                    id,
                    Err(ErrorBody::new(
                        ErrorCode::Handshake,
                        "the first request must be `hello`",
                    )
                    .with_hint(format!(
                        "send {{\"id\":1,\"request\":{{\"type\":\"hello\",\"protocol\":{PROTOCOL_VERSION},\"client\":\"name\"}}}} first"
                    ))),
                ),
                false,
            ),
        };
    };
    let result =
        match frame.request {
            Request::Hello { .. } => Err(ErrorBody::new(
                ErrorCode::Handshake,
                "`hello` was already received on this connection",
            )
            .with_hint("send it once, first")),
            Request::Ping => Ok(Reply::Pong),
            Request::Status => Ok(Reply::Status(stage.status())),
            Request::SendText { text } => {
                stage
                    .send_text(text, label)
                    .await
                    .map(|(turn_id, conversation_id)| Reply::TurnAccepted {
                        turn_id,
                        conversation_id,
                    })
            }
            Request::Interrupt => stage
                .interrupt()
                .await
                .map(|turn_id| Reply::Interrupted { turn_id }),
            Request::ListCharacters => {
                stage
                    .characters()
                    .await
                    .map(|(current, characters)| Reply::Characters {
                        current,
                        characters,
                    })
            }
            Request::SwitchCharacter { name } => stage
                .switch_character(name)
                .await
                .map(|character| Reply::CharacterSwitched { character }),
            Request::ListConversations { character } => stage
                .store
                .list_conversations(character)
                .await
                .map(|conversations| Reply::Conversations { conversations })
                .map_err(|e| e.to_body()),
            Request::GetConversation { id, page } => stage
                .store
                .conversation_page(
                    id,
                    page,
                    crate::store::PAGE_TEXT_BUDGET,
                    crate::store::PAGE_MAX_MESSAGES,
                )
                .await
                .map(|(conversation, messages, next)| Reply::Conversation {
                    conversation,
                    messages,
                    next,
                })
                .map_err(|e| e.to_body()),
            Request::NewConversation => stage
                .new_conversation()
                .await
                .map(|conversation_id| Reply::ConversationChanged { conversation_id }),
            Request::LoadConversation { id } => stage
                .load_conversation(id)
                .await
                .map(|conversation_id| Reply::ConversationChanged { conversation_id }),
            Request::DeleteConversation { id } => stage
                .delete_conversation(id)
                .await
                .map(|()| Reply::Deleted { id }),
            Request::Shutdown => {
                stage.request_shutdown();
                Ok(Reply::ShuttingDown)
            }
            Request::ApproveToolCall {
                request_id,
                decision,
            } => with_mcp(stage, |m| {
                Ok(Reply::ApprovalRecorded {
                    request_id,
                    accepted: m.answer_approval(request_id, decision),
                })
            }),
            Request::ListMcpServers => Ok(Reply::McpServers {
                servers: stage
                    .info
                    .mcp
                    .as_ref()
                    .map(|m| m.servers())
                    .unwrap_or_default(),
            }),
            Request::ListMcpTools { server } => Ok(Reply::McpTools {
                tools: stage
                    .info
                    .mcp
                    .as_ref()
                    .map(|m| m.tools(server.as_deref()))
                    .unwrap_or_default(),
            }),
            Request::RestartMcpServer { name } => match &stage.info.mcp {
                Some(m) => m
                    .restart(&name)
                    .await
                    .map(|()| Reply::McpRestarting { name }),
                None => Err(no_mcp()),
            },
            Request::ToolAudit { since_ms, limit } => match &stage.info.mcp {
                Some(m) => m
                    .audit(since_ms, limit.unwrap_or(100))
                    .await
                    .map(|entries| Reply::ToolAudit { entries }),
                None => crate::mcp::audit::query(&stage.store, since_ms, limit.unwrap_or(100))
                    .await
                    .map(|entries| Reply::ToolAudit { entries }),
            },
            Request::SendAudio { wav_base64 } => match voice(stage) {
                Ok(v) => match decode_wav(&wav_base64) {
                    Ok(pcm) => v.utterance(pcm, &format!("{label} (audio)")).await.map(
                        |(transcript, turn)| Reply::Heard {
                            transcript,
                            turn_id: turn.map(|t| t.0),
                            conversation_id: turn.map(|t| t.1),
                        },
                    ),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Request::Speak { text } => match voice(stage) {
                Ok(v) => v.speak(&text).await.map(|pcm| Reply::Speech {
                    audio: crate::speech::speaker::speech_audio(&pcm, true),
                }),
                Err(e) => Err(e),
            },
            Request::StreamAudio { samples_base64 } => match voice(stage) {
                Ok(v) => decode_f32(&samples_base64)
                    .and_then(|samples| v.stream(conn, samples))
                    .map(|()| Reply::AudioReceived),
                Err(e) => Err(e),
            },
            Request::SetListening { on } => voice(stage).and_then(|v| {
                v.set_listening(on).map(|voice| Reply::Voice {
                    voice: Box::new(voice),
                })
            }),
            Request::PushToTalk { pressed } => voice(stage).and_then(|v| {
                v.push_to_talk(pressed).map(|voice| Reply::Voice {
                    voice: Box::new(voice),
                })
            }),
        };
    (response(id, result), false)
}

fn voice(stage: &Stage) -> Result<&crate::voice::Voice, ErrorBody> {
    stage.info.voice.get().ok_or_else(|| {
        ErrorBody::new(ErrorCode::Config, "voice is disabled on this daemon")
            .with_hint("set speech.enabled: true in conf.yaml and restart the daemon")
    })
}

fn decode_wav(b64: &str) -> Result<crate::pcm::Pcm, ErrorBody> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("wav_base64 is not base64: {e}"),
            )
            .with_hint("send the WAV file's bytes, base64-encoded (standard alphabet)")
        })?;
    crate::pcm::Pcm::from_wav(&bytes).map_err(|e| crate::voice::speech_error(e.into()))
}

/// Little-endian `f32` samples, base64.
fn decode_f32(b64: &str) -> Result<Vec<f32>, ErrorBody> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("samples_base64 is not base64: {e}"),
            )
            .with_hint("send little-endian f32 samples at 16 kHz, base64-encoded")
        })?;
    if bytes.len() % 4 != 0 {
        return Err(ErrorBody::new(
            ErrorCode::InvalidArgument,
            format!("{} bytes is not a whole number of f32 samples", bytes.len()),
        )
        .with_hint("send little-endian f32 samples at 16 kHz"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .map(|s| {
            if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect())
}

fn no_mcp() -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, "no MCP servers are configured")
        .with_hint("add servers under `mcp.servers` in conf.yaml (see `vtuber mcp import`)")
}

fn with_mcp(
    stage: &Stage,
    f: impl FnOnce(&crate::mcp::McpManager) -> Result<Reply, ErrorBody>,
) -> Result<Reply, ErrorBody> {
    match &stage.info.mcp {
        Some(m) => f(m),
        None => Err(no_mcp()),
    }
}

async fn writer(
    stream: Arc<ls::Stream>,
    mut out: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
    closed: CancellationToken,
) {
    let _close_on_exit = closed.drop_guard();
    let mut tx = &*stream;
    let mut events: Option<EventReceiver> = None;
    loop {
        let line: Vec<u8> = tokio::select! {
            biased;
            msg = out.recv() => match msg {
                Some(Outgoing::Frame(frame)) => match encode_response(&frame) {
                    Some(l) => l,
                    None => continue,
                },
                Some(Outgoing::Subscribe(rx)) => {
                    events = Some(rx);
                    continue;
                }
                Some(Outgoing::Close) | None => {
                    // Deliver events already queued (e.g. `shutting_down`) before closing.
                    drain_events(&mut tx, &mut events).await;
                    break;
                }
            },
            ev = next_event(&mut events) => match ev {
                Ok(ev) => ev.line.clone(),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "client fell behind; events dropped for it");
                    match framing::encode(&ServerFrame::Event {
                        seq: 0,
                        event: Event::Lagged { missed },
                    }) {
                        Ok(l) => l,
                        Err(_) => continue,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    events = None;
                    continue;
                }
            },
            _ = shutdown.cancelled(), if events.is_some() => {
                drain_events(&mut tx, &mut events).await;
                break;
            }
        };
        match tokio::time::timeout(WRITE_STALL_LIMIT, tx.write_all(&line)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!("client stopped reading for 30 s; disconnecting it");
                break;
            }
        }
    }
    let _ = tx.flush().await;
}

/// Encodes a response; one too large for a frame is answered with an error instead, so
/// the client is never left waiting.
fn encode_response(frame: &ServerFrame) -> Option<Vec<u8>> {
    match framing::encode(frame) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(error = %e, "response could not be encoded");
            let ServerFrame::Response { id, .. } = frame else {
                return None;
            };
            framing::encode(&response(
                *id,
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    format!("the response could not be sent: {e}"),
                )
                .with_hint("ask for less at once (e.g. a shorter conversation)")),
            ))
            .ok()
        }
    }
}

/// Writes whatever events are already queued for this client, each with a short limit.
async fn drain_events(tx: &mut &ls::Stream, events: &mut Option<EventReceiver>) {
    if let Some(rx) = events.as_mut() {
        while let Ok(ev) = rx.try_recv() {
            let write = tx.write_all(&ev.line);
            if !matches!(
                tokio::time::timeout(Duration::from_secs(1), write).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
    }
}

async fn next_event(
    events: &mut Option<EventReceiver>,
) -> Result<Arc<crate::events::EncodedEvent>, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
