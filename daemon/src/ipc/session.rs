//! One session per attached client, and the loop that accepts them.
//!
//! A session is two tasks: a reader that parses frames and answers requests in order
//! (through `super::dispatch`), and a writer that merges those answers with the
//! broadcast events. Responses take priority over events; a client that stops reading
//! only fills its own queues.

use std::sync::Arc;
use std::time::Duration;

use interprocess::local_socket::tokio as ls;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use vtuber_shared::framing::{self, LineSplitter};
use vtuber_shared::{ErrorBody, ErrorCode, Event, Outcome, ServerFrame};

use super::dispatch::{Dispatched, Peer, dispatch, parse_line, response};
use super::listener::Cookie;
use crate::events::EventReceiver;
use crate::services::Services;

/// A write that makes no progress for this long means the client is gone or stuck.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);

/// Longest wait for sessions to write their last frames (the `shutdown` answer, the
/// `shutting_down` event) once the daemon stops.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Accepts clients until `shutdown` fires, then waits (briefly) for every session to
/// flush what it has queued, so a client is not cut off before its answer.
pub async fn serve(
    listener: ls::Listener,
    cookie: Cookie,
    services: Arc<Services>,
    shutdown: CancellationToken,
) {
    let my_uid = vtuber_shared::paths::current_uid();
    let sessions = tokio_util::task::TaskTracker::new();
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
        sessions.spawn(session(
            stream,
            cookie.clone(),
            services.clone(),
            shutdown.clone(),
        ));
    }
    sessions.close();
    if tokio::time::timeout(FLUSH_LIMIT, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("some clients were still being written to when the daemon stopped");
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

/// What the reader hands the writer.
enum Outgoing {
    Frame(Box<ServerFrame>),
    /// Start forwarding events from this subscription.
    Subscribe(EventReceiver),
    /// Flush and close.
    Close,
}

async fn session(
    stream: ls::Stream,
    cookie: Cookie,
    services: Arc<Services>,
    shutdown: CancellationToken,
) {
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
    let mut peer = Peer::new(services.clients.connect());
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
            let frame = match parse_line(line) {
                Err(refused) => refused,
                Ok(frame) => {
                    let Dispatched {
                        reply,
                        close,
                        subscription,
                    } = dispatch(&services, &cookie, &mut peer, frame).await;
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
            };
            if out_tx.send(Outgoing::Frame(frame)).await.is_err() {
                break 'read;
            }
        }
    }
    let _ = out_tx.send(Outgoing::Close).await;
    drop(out_tx);
    let _ = writer.await;
    // Forgets its audio stream and, if it said `hello`, counts the client out.
    drop(peer);
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
