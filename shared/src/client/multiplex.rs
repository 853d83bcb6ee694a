//! Requests and events over one connection: a reader task routes each response to the
//! request waiting for it (by `id`) and pushes broadcast events into a channel, so
//! requests can be issued from many tasks at once while the events keep flowing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::frames::{FrameReader, FrameWriter};
use super::reply_kind;
use crate::framing::{self, Line};
use crate::{
    ClientFrame, ConversationSummary, ErrorBody, ErrorCode, Event, Outcome, Reply, Request,
    ServerFrame, StoredMessage, append_page,
};

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

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ResponseFrame>>>>;

/// The request side of a connection. Cheap to clone; all clones share one socket.
#[derive(Clone)]
pub struct Client {
    writer: Arc<tokio::sync::Mutex<FrameWriter>>,
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

/// The error a request gets when the transport, not the daemon, failed.
fn transport_error(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, message).with_hint(
        "vtuberd may have stopped; check `vtuber daemon status` and its log (vtuberd.log in the data directory)",
    )
}

impl Client {
    /// Takes over an open socket: spawns the reader task that feeds responses and events.
    pub(super) fn start(reader: FrameReader, writer: FrameWriter) -> (Self, Events) {
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(read_loop(reader, pending.clone(), tx));
        (
            Self {
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
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
        let written = self.writer.lock().await.write(&bytes).await;
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

async fn read_loop(mut reader: FrameReader, pending: Pending, events: mpsc::Sender<EventFrame>) {
    // Events we had to drop because the consumer is not keeping up.
    let mut dropped: u64 = 0;
    // An error not tied to a request (e.g. "this daemon serves another user" right
    // before the daemon hangs up): the best explanation for requests left unanswered.
    let mut orphan: Option<ResponseFrame> = None;
    while let Ok(Some(line)) = reader.next_line().await {
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

#[cfg(test)]
mod tests {
    use super::super::fake_daemon::{self as fake, Peer};
    use super::super::{Hello, connect};
    use super::*;
    use crate::PROTOCOL_VERSION;

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
