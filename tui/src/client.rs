//! A small client for the `vtuberd` local-socket protocol.
//!
//! One reader task owns the receive side: it splits the byte stream into frames, routes
//! each response to the request that is waiting for it (by `id`) and pushes broadcast
//! events into a channel. Requests can therefore be issued from many tasks at once while
//! the events keep flowing, which both the TUI and `say` need.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use vtuber_shared::framing::{self, Line, LineSplitter};
use vtuber_shared::{
    ClientFrame, ConversationSummary, ErrorBody, ErrorCode, Event, Outcome, PROTOCOL_VERSION,
    Reply, Request, ServerFrame, Status, StoredMessage, append_page,
};

/// How long the daemon gets to answer `hello`; a live daemon answers at once, so a
/// silent one is wedged and waiting longer would only hang the command.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default bound for one request in the one-shot commands.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Events buffered for a slow consumer before the client starts dropping them itself
/// (and reports that as a local `lagged` event, just as the daemon would).
const EVENT_BUFFER: usize = 4096;

/// A broadcast event together with the line it arrived as (for `--json` output).
#[derive(Debug, Clone)]
pub struct EventFrame {
    pub event: Event,
    pub raw: String,
}

/// A response together with the line it arrived as.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    pub outcome: Outcome,
    pub raw: String,
}

impl ResponseFrame {
    pub fn into_result(self) -> Result<Reply, ErrorBody> {
        match self.outcome {
            Outcome::Ok(reply) => Ok(reply),
            Outcome::Err(err) => Err(err),
        }
    }
}

/// The daemon's answer to `hello`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub daemon_version: String,
    pub status: Status,
}

/// Why a connection could not be set up.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing listens on the socket (missing file or refused connection).
    NotRunning { socket: PathBuf, source: io::Error },
    /// Any other I/O failure while connecting or during the handshake.
    Io { socket: PathBuf, source: io::Error },
    /// The daemon refused `hello` or spoke another protocol version.
    Handshake(ErrorBody),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRunning { socket, source } => write!(
                f,
                "vtuberd is not running (no answer on {}: {source})",
                socket.display()
            ),
            Self::Io { socket, source } => {
                write!(
                    f,
                    "cannot talk to vtuberd on {}: {source}",
                    socket.display()
                )
            }
            Self::Handshake(body) => write!(f, "vtuberd refused the connection: {body}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// True for the connect errors that mean "no daemon here" rather than "daemon broken".
pub fn is_not_running(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// How this connection introduces itself.
#[derive(Debug, Clone)]
pub struct Hello {
    /// Free-form label shown in the daemon's status, e.g. `vtuber-chat/0.1.0`.
    pub client: String,
    /// Whether to receive broadcast events.
    pub subscribe: bool,
}

impl Hello {
    pub fn new(kind: &str, subscribe: bool) -> Self {
        Self {
            client: format!("vtuber-{kind}/{}", env!("CARGO_PKG_VERSION")),
            subscribe,
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ResponseFrame>>>>;

/// The request side of a connection. Cheap to clone; all clones share one socket.
#[derive(Clone)]
pub struct Client {
    writer: Arc<tokio::sync::Mutex<WriteHalf<Stream>>>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

/// The event side of a connection. `recv` returns `None` once the connection is gone.
pub struct Events {
    rx: mpsc::Receiver<EventFrame>,
}

impl Events {
    pub async fn recv(&mut self) -> Option<EventFrame> {
        self.rx.recv().await
    }

    /// An event that is already waiting, without blocking (to batch redraws).
    pub fn try_recv(&mut self) -> Option<EventFrame> {
        self.rx.try_recv().ok()
    }
}

/// A connected, greeted client.
pub struct Connection {
    pub client: Client,
    pub events: Events,
    pub welcome: Welcome,
}

/// Connects to `socket` and performs the `hello` handshake.
pub async fn connect(socket: &Path, hello: Hello) -> Result<Connection, ConnectError> {
    let io_err = |source: io::Error| {
        if is_not_running(&source) {
            ConnectError::NotRunning {
                socket: socket.to_owned(),
                source,
            }
        } else {
            ConnectError::Io {
                socket: socket.to_owned(),
                source,
            }
        }
    };
    let name = socket
        .to_path_buf()
        .to_fs_name::<GenericFilePath>()
        .map_err(io_err)?;
    let stream = Stream::connect(name).await.map_err(io_err)?;
    let (client, events) = Client::start(stream);
    // Without the cookie the daemon refuses us; it then says what to do, and we add why
    // the file could not be read.
    let (cookie, cookie_problem) = match vtuber_shared::cookie::read_cookie(socket) {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e)),
    };
    let request = Request::Hello {
        protocol: PROTOCOL_VERSION,
        client: hello.client,
        subscribe: hello.subscribe,
        cookie,
    };
    let reply = client
        .request_timeout(request, HANDSHAKE_TIMEOUT)
        .await
        .map_err(|mut body| match body.code {
            ErrorCode::Handshake => {
                if let Some(problem) = &cookie_problem
                    && body.message.contains("cookie")
                {
                    body.message = format!("{} ({problem})", body.message);
                }
                ConnectError::Handshake(body)
            }
            _ => ConnectError::Io {
                socket: socket.to_owned(),
                source: io::Error::other(body.to_string()),
            },
        })?;
    match reply {
        Reply::Welcome {
            protocol,
            daemon_version,
            status,
            ..
        } => {
            if protocol != PROTOCOL_VERSION {
                return Err(ConnectError::Handshake(
                    ErrorBody::new(
                        ErrorCode::Handshake,
                        format!(
                            "vtuberd {daemon_version} speaks protocol {protocol}, \
                             this vtuber speaks {PROTOCOL_VERSION}"
                        ),
                    )
                    .with_hint("install matching versions of vtuber and vtuberd"),
                ));
            }
            Ok(Connection {
                client,
                events,
                welcome: Welcome {
                    daemon_version,
                    status,
                },
            })
        }
        other => Err(ConnectError::Handshake(ErrorBody::new(
            ErrorCode::Handshake,
            format!(
                "expected a welcome reply to hello, got {}",
                reply_kind(&other)
            ),
        ))),
    }
}

/// The wire name of a reply, for error messages.
pub fn reply_kind(reply: &Reply) -> String {
    serde_json::to_value(reply)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "an unknown reply".to_owned())
}

/// The error a request gets when the transport, not the daemon, failed.
fn transport_error(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, message).with_hint(
        "vtuberd may have stopped; check `vtuber daemon status` and its log (vtuberd.log in the data directory)",
    )
}

impl Client {
    fn start(stream: Stream) -> (Self, Events) {
        let (read, write) = tokio::io::split(stream);
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(read_loop(read, pending.clone(), tx));
        (
            Self {
                writer: Arc::new(tokio::sync::Mutex::new(write)),
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
            },
            Events { rx },
        )
    }

    /// Writes `request` and returns a receiver for its response, without waiting for it.
    /// The receiver fails if the connection closes first.
    pub async fn send(
        &self,
        request: Request,
    ) -> Result<oneshot::Receiver<ResponseFrame>, ErrorBody> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = framing::encode(&ClientFrame { id, request }).map_err(|e| {
            ErrorBody::new(ErrorCode::InvalidArgument, format!("request not sent: {e}"))
        })?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let mut writer = self.writer.lock().await;
        let written = async {
            writer.write_all(&bytes).await?;
            writer.flush().await
        }
        .await;
        if let Err(e) = written {
            lock(&self.pending).remove(&id);
            return Err(transport_error(format!("could not send to vtuberd: {e}")));
        }
        Ok(rx)
    }

    /// Sends `request` and waits for its response.
    pub async fn request(&self, request: Request) -> Result<Reply, ErrorBody> {
        self.request_raw(request).await?.into_result()
    }

    /// Like [`Client::request`], but gives up after `timeout`.
    pub async fn request_timeout(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Reply, ErrorBody> {
        match tokio::time::timeout(timeout, self.request(request)).await {
            Ok(result) => result,
            Err(_) => Err(transport_error(format!(
                "vtuberd did not answer within {} s",
                timeout.as_secs()
            ))),
        }
    }

    /// A whole conversation, read page by page (`get_conversation` with `page`), with
    /// messages split across pages joined again. `timeout` bounds each page.
    pub async fn conversation(
        &self,
        id: i64,
        timeout: Duration,
    ) -> Result<(ConversationSummary, Vec<StoredMessage>), ErrorBody> {
        let mut messages = Vec::new();
        let mut page = None;
        loop {
            match self
                .request_timeout(Request::GetConversation { id, page }, timeout)
                .await?
            {
                Reply::Conversation {
                    conversation,
                    messages: part,
                    next,
                } => {
                    let progressed = !part.is_empty();
                    append_page(&mut messages, part);
                    match next {
                        // An empty page that points on would loop forever; stop there.
                        Some(cursor) if progressed && Some(cursor) != page => {
                            page = Some(cursor);
                        }
                        _ => return Ok((conversation, messages)),
                    }
                }
                other => {
                    return Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!(
                            "vtuberd answered get_conversation with {}",
                            reply_kind(&other)
                        ),
                    )
                    .with_hint("are vtuber and vtuberd the same version?"));
                }
            }
        }
    }

    /// Sends `request` and returns the whole response frame, raw line included.
    pub async fn request_raw(&self, request: Request) -> Result<ResponseFrame, ErrorBody> {
        let rx = self.send(request).await?;
        rx.await
            .map_err(|_| transport_error("the connection to vtuberd closed before it answered"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: each operation is one call.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn read_loop(mut read: ReadHalf<Stream>, pending: Pending, events: mpsc::Sender<EventFrame>) {
    let mut splitter = LineSplitter::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Events we had to drop because the consumer is not keeping up.
    let mut dropped: u64 = 0;
    // An error not tied to a request (e.g. "this daemon serves another user" right
    // before the daemon hangs up): the best explanation for requests left unanswered.
    let mut orphan: Option<ResponseFrame> = None;
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for line in splitter.push(&buf[..n]) {
            let Line::Frame(bytes) = line else {
                // An oversized frame cannot be routed; if it was a response, its
                // request fails when the connection ends. Treat it as missed events.
                dropped += 1;
                continue;
            };
            let raw = String::from_utf8_lossy(&bytes).into_owned();
            let frame: ServerFrame = match framing::decode(&bytes) {
                Ok(frame) => frame,
                // A response this build cannot decode (a reply type it does not know)
                // still answers its request: the caller may read it from `raw`.
                Err(_) if undecoded_response_id(&bytes).is_some() => {
                    let id = undecoded_response_id(&bytes).unwrap_or_default();
                    if let Some(tx) = lock(&pending).remove(&id) {
                        let outcome = Outcome::Err(ErrorBody::new(
                            ErrorCode::Internal,
                            "vtuberd sent a reply this vtuber cannot read; \
                             are vtuber and vtuberd the same version?",
                        ));
                        let _ = tx.send(ResponseFrame { outcome, raw });
                    }
                    continue;
                }
                // A frame from a newer daemon we cannot parse: skip it, but say so.
                Err(_) => {
                    dropped += 1;
                    continue;
                }
            };
            match frame {
                ServerFrame::Response {
                    id: Some(id),
                    outcome,
                } => {
                    if let Some(tx) = lock(&pending).remove(&id) {
                        let _ = tx.send(ResponseFrame { outcome, raw });
                    }
                }
                // A response to a line the daemon could not parse, or about the whole
                // connection: nobody asked, so keep it for when the connection ends.
                ServerFrame::Response { id: None, outcome } => {
                    orphan = Some(ResponseFrame { outcome, raw });
                }
                ServerFrame::Event { event, .. } => {
                    if dropped > 0 {
                        let lagged = EventFrame {
                            raw: String::new(),
                            event: Event::Lagged { missed: dropped },
                        };
                        if events.try_send(lagged).is_ok() {
                            dropped = 0;
                        }
                    }
                    match events.try_send(EventFrame { event, raw }) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                        // Nobody listens for events (a one-shot command); keep serving responses.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
            }
        }
    }
    // Waiting requests get the daemon's last word if it had one; otherwise dropping
    // their senders fails them. Dropping `events` ends the event stream.
    let waiting: Vec<_> = lock(&pending).drain().map(|(_, tx)| tx).collect();
    if let Some(last_word) = orphan {
        for tx in waiting {
            let _ = tx.send(last_word.clone());
        }
    }
}

/// The id of a frame that is a response but did not decode as a known one.
fn undecoded_response_id(bytes: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if value.get("kind")?.as_str()? != "response" {
        return None;
    }
    value.get("id")?.as_u64()
}

/// The `result` object of a response line, decoded as `T`; `Err` carries the
/// daemon's error, or says the reply was not what was asked for.
pub fn decode_result<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, ErrorBody> {
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("vtuberd sent bad JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        return Err(serde_json::from_value(error.clone()).unwrap_or_else(|_| {
            ErrorBody::new(ErrorCode::Internal, format!("vtuberd failed: {error}"))
        }));
    }
    let result = value.get("result").cloned().unwrap_or_default();
    let kind = result
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .to_owned();
    serde_json::from_value(result).map_err(|e| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("vtuberd sent an unexpected reply ({kind}): {e}"),
        )
        .with_hint("are vtuber and vtuberd the same version?")
    })
}

#[cfg(test)]
pub(crate) mod fake {
    //! A scripted stand-in for vtuberd: a real local socket in a temp dir whose
    //! behaviour per request is written by each test.

    use super::*;
    use interprocess::local_socket::ListenerOptions;
    use interprocess::local_socket::traits::tokio::Listener as _;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use vtuber_shared::{DaemonState, LlmInfo, ModelLoad};

    pub fn status() -> Status {
        Status {
            state: DaemonState::Idle,
            character: "aria".into(),
            llm: LlmInfo {
                backend: "embedded".into(),
                model: "tiny".into(),
            },
            model_load: ModelLoad::Ready,
            clients: 1,
            daemon_version: "0.1.0".into(),
            uptime_secs: 12.5,
            pid: 4242,
            conversation_id: Some(7),
            socket: "/tmp/x.sock".into(),
            config_file: None,
            last_error: None,
            voice: None,
            web_url: None,
            web_auth: None,
            web_error: None,
        }
    }

    /// One accepted connection, seen from the daemon's side.
    pub struct Peer {
        reader: BufReader<ReadHalf<Stream>>,
        writer: WriteHalf<Stream>,
    }

    impl Peer {
        pub async fn read(&mut self) -> ClientFrame {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.expect("read frame");
            framing::decode(line.as_bytes()).expect("client frame")
        }

        pub async fn write(&mut self, frame: &ServerFrame) {
            let bytes = framing::encode(frame).expect("encode");
            self.writer.write_all(&bytes).await.expect("write frame");
        }

        /// Writes one line as is (for frames the shared types cannot express).
        pub async fn write_line(&mut self, line: &str) {
            self.writer
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("write line");
        }

        pub async fn respond(&mut self, id: u64, reply: Reply) {
            self.write(&ServerFrame::Response {
                id: Some(id),
                outcome: Outcome::Ok(reply),
            })
            .await;
        }

        pub async fn event(&mut self, seq: u64, event: Event) {
            self.write(&ServerFrame::Event { seq, event }).await;
        }

        /// Reads `hello` and answers with a welcome for `protocol`.
        pub async fn handshake(&mut self, protocol: u32) -> ClientFrame {
            let hello = self.read().await;
            assert!(matches!(hello.request, Request::Hello { .. }), "{hello:?}");
            self.respond(
                hello.id,
                Reply::Welcome {
                    protocol,
                    daemon_version: "0.1.0".into(),
                    status: status(),
                    last_seq: 0,
                },
            )
            .await;
            hello
        }
    }

    /// Listens on `dir/vtuberd.sock` and runs `script` for the first connection.
    pub fn serve<F, Fut>(dir: &Path, script: F) -> (PathBuf, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(Peer) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let path = dir.join("vtuberd.sock");
        let name = path.clone().to_fs_name::<GenericFilePath>().expect("name");
        let listener = ListenerOptions::new()
            .name(name)
            .create_tokio()
            .expect("listen");
        let task = tokio::spawn(async move {
            let stream = listener.accept().await.expect("accept");
            let (r, w) = tokio::io::split(stream);
            script(Peer {
                reader: BufReader::new(r),
                writer: w,
            })
            .await;
        });
        (path, task)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{self, Peer};
    use super::*;

    const COOKIE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[tokio::test]
    async fn hello_is_sent_first_and_welcome_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vtuberd.sock.cookie"),
            format!("{COOKIE}\n"),
        )
        .unwrap();
        let (path, server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            let hello = peer.handshake(PROTOCOL_VERSION).await;
            assert_eq!(
                hello.request,
                Request::Hello {
                    protocol: PROTOCOL_VERSION,
                    client: format!("vtuber-test/{}", env!("CARGO_PKG_VERSION")),
                    subscribe: false,
                    cookie: Some(COOKIE.into()),
                }
            );
        });
        let conn = connect(&path, Hello::new("test", false)).await.unwrap();
        assert_eq!(conn.welcome.status.pid, 4242);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn protocol_mismatch_is_a_handshake_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION + 1).await;
        });
        match connect(&path, Hello::new("test", false)).await {
            Err(ConnectError::Handshake(body)) => {
                assert!(body.message.contains("protocol"), "{body}");
                assert!(body.hint.is_some());
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a mismatched protocol must not connect"),
        }
    }

    #[tokio::test]
    async fn a_refusal_without_an_id_explains_the_hang_up() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.read().await;
            peer.write(&ServerFrame::Response {
                id: None,
                outcome: Outcome::Err(
                    ErrorBody::new(ErrorCode::Handshake, "this daemon serves another user")
                        .with_hint("run your own vtuberd"),
                ),
            })
            .await;
            // Dropping the peer hangs up.
        });
        match connect(&path, Hello::new("test", false)).await {
            Err(ConnectError::Handshake(body)) => {
                assert_eq!(
                    body.to_string(),
                    "this daemon serves another user (run your own vtuberd)"
                );
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a refused hello must not connect"),
        }
    }

    #[tokio::test]
    async fn missing_socket_reads_as_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = connect(&dir.path().join("none.sock"), Hello::new("test", false))
            .await
            .err()
            .expect("no daemon");
        assert!(matches!(err, ConnectError::NotRunning { .. }), "{err}");
    }

    #[tokio::test]
    async fn responses_are_matched_to_requests_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let a = peer.read().await;
            let b = peer.read().await;
            let (ping, status) = match (&a.request, &b.request) {
                (Request::Ping, Request::Status) => (a.id, b.id),
                (Request::Status, Request::Ping) => (b.id, a.id),
                other => panic!("unexpected requests {other:?}"),
            };
            assert_ne!(ping, status);
            // Answer in the opposite order, with an event in between.
            peer.respond(status, Reply::Status(fake::status())).await;
            peer.event(1, Event::ClientsChanged { clients: 2 }).await;
            peer.respond(ping, Reply::Pong).await;
        });
        let mut conn = connect(&path, Hello::new("test", true)).await.unwrap();
        let (ping, status) = tokio::join!(
            conn.client.request(Request::Ping),
            conn.client.request(Request::Status)
        );
        assert_eq!(ping, Ok(Reply::Pong));
        assert_eq!(status, Ok(Reply::Status(fake::status())));
        let ev = conn.events.recv().await.unwrap();
        assert_eq!(ev.event, Event::ClientsChanged { clients: 2 });
        assert!(ev.raw.contains("clients_changed"), "{}", ev.raw);
        server.await.unwrap();
        // The daemon hung up: the event stream ends and requests fail instead of hanging.
        assert!(conn.events.recv().await.is_none());
        let err = conn.client.request(Request::Ping).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal);
    }

    #[tokio::test]
    async fn error_responses_come_back_as_error_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _server) = fake::serve(dir.path(), |mut peer: Peer| async move {
            peer.handshake(PROTOCOL_VERSION).await;
            let req = peer.read().await;
            peer.write(&ServerFrame::Response {
                id: Some(req.id),
                outcome: Outcome::Err(
                    ErrorBody::new(ErrorCode::NotFound, "no character `bob`")
                        .with_hint("see `vtuber characters list`"),
                ),
            })
            .await;
        });
        let conn = connect(&path, Hello::new("test", false)).await.unwrap();
        let err = conn
            .client
            .request(Request::SwitchCharacter { name: "bob".into() })
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(
            err.to_string(),
            "no character `bob` (see `vtuber characters list`)"
        );
    }
}
