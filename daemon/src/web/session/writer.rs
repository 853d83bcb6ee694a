//! A connection's writer: the greeting, answers merged with the shared event stream,
//! and this client's side of each turn (the closing handshake with the page).

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use futures::stream::SplitSink;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::Out;
use crate::web::avatars::ModelConf;
use crate::web::olv_events::{Signal, WebEvent};
use crate::web::olv_messages::{ServerMessage, control};
use crate::web::socket::{FRAGMENT_BYTES, Socket, text_frames};

/// A write that makes no progress for this long means the client is gone or stuck.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);
/// Extra time a client gets beyond the audio's length to report playback complete.
const PLAYBACK_GRACE: Duration = Duration::from_secs(5);
/// The longest wait for `frontend-playback-complete`.
const PLAYBACK_WAIT_MAX: Duration = Duration::from_secs(60);

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

pub(super) struct Writer {
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
    pub(super) fn new(sink: SplitSink<Socket, Message>, client_uid: String, conn: u64) -> Self {
        Self {
            sink,
            client_uid,
            last_conf: None,
            turn: None,
            highest_turn: 0,
            conn,
        }
    }

    pub(super) async fn run(
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
            // Tell the page to stop playing; it will not report playback complete. Our
            // page and the OLV protocol use `control: interrupt`; Open-LLM-VTuber's own
            // frontend (web build 1.2.1) stops only on `interrupt-signal`. Both go to
            // every client following the turn, whichever client interrupted.
            self.send(ServerMessage::control(control::INTERRUPT).encode())
                .await?;
            self.send(ServerMessage::InterruptSignal.encode()).await?;
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
