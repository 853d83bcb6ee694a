//! The one client of vtuberd's socket protocol, used by the terminal client, its
//! commands and the tests: connecting with the `hello` handshake ([`connect`]), then
//! requests and events over the connection ([`Client`], [`Events`]).
//!
//! Layers: [`frames`] is the framed socket (lines in order, raw bytes out) that tests
//! drive directly; [`Client`] routes responses to their requests on top of it.

#[cfg(any(test, feature = "fake-daemon"))]
pub mod fake_daemon;
pub mod frames;
mod multiplex;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use multiplex::{Client, EventFrame, Events, ResponseFrame};

use crate::cookie::{CookieError, read_cookie};
use crate::{ErrorBody, ErrorCode, PROTOCOL_VERSION, Reply, Request, Status};

/// How long the daemon gets to answer `hello`; a live daemon answers at once, so a
/// silent one is wedged and waiting longer would only hang the command.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client that connected waits for a missing cookie: a socket the service
/// manager holds accepts before the daemon runs (socket activation), and the daemon
/// writes its cookie as it starts.
pub const COOKIE_WAIT: Duration = Duration::from_secs(10);

/// Default bound for one request in the one-shot commands.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemon's answer to `hello`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub daemon_version: String,
    pub status: Status,
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens on the socket (missing file or refused connection).
    #[error("vtuberd is not running (no answer on {}: {source})", socket.display())]
    NotRunning { socket: PathBuf, source: io::Error },
    /// Any other I/O failure while connecting or during the handshake.
    #[error("cannot talk to vtuberd on {}: {source}", socket.display())]
    Io { socket: PathBuf, source: io::Error },
    /// The daemon refused `hello` or spoke another protocol version.
    #[error("vtuberd refused the connection: {0}")]
    Handshake(ErrorBody),
}

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
    /// Whether this client uses the reply's audio (see `Request::Hello`).
    pub audio: bool,
}

impl Hello {
    /// `vtuber-<kind>/<version>`: a part of the `vtuber` client (the workspace shares
    /// one version).
    pub fn new(kind: &str, subscribe: bool) -> Self {
        Self {
            client: format!("vtuber-{kind}/{}", env!("CARGO_PKG_VERSION")),
            subscribe,
            audio: true,
        }
    }

    /// A client that shows text only: the daemon need not synthesize speech for it.
    #[must_use]
    pub fn text_only(mut self) -> Self {
        self.audio = false;
        self
    }

    /// The `hello` request for the daemon on `socket`, with the cookie read from beside
    /// the socket, and why the cookie could not be read if it could not (the daemon then
    /// refuses, and the reason explains its refusal).
    pub fn request(self, socket: &Path) -> (Request, Option<CookieError>) {
        let (cookie, problem) = match read_cookie(socket) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        };
        let request = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: self.client,
            subscribe: self.subscribe,
            audio: self.audio,
            cookie,
        };
        (request, problem)
    }
}

/// Waits up to [`COOKIE_WAIT`] for the cookie beside `socket` to exist: connected but
/// without a cookie means a socket-activated daemon is starting. A daemon that binds its
/// own socket wrote the cookie first, so this returns at once.
async fn wait_for_cookie(socket: &Path) {
    let path = crate::cookie::cookie_path(socket);
    let deadline = tokio::time::Instant::now() + COOKIE_WAIT;
    while !path.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    let (reader, writer) = frames::open(socket).await.map_err(io_err)?;
    let (client, events) = Client::start(reader, writer);
    wait_for_cookie(socket).await;
    // Without the cookie the daemon refuses us; it then says what to do, and we add why
    // the file could not be read.
    let (request, cookie_problem) = hello.request(socket);
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

#[cfg(test)]
mod tests {
    use super::fake_daemon::{self as fake, Peer};
    use super::*;
    use crate::{ErrorBody, Outcome, ServerFrame};

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
                    audio: true,
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
}
