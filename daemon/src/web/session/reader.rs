//! A connection's reader: size and rate limits, parsing, the quick answers, and audio
//! from the page's microphone; everything slower goes to the worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::SplitStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::worker::Job;
use super::{ORIGIN_VOICE, Out};
use crate::pcm::Pcm;
use crate::speech::INPUT_RATE;
use crate::voice_input::VoiceInput;
use crate::web::WebState;
use crate::web::olv_messages::{ClientMessage, ServerMessage, parse_client};
use crate::web::socket::Socket;

/// How long after connecting a client's first `create-new-history` counts as part of
/// connecting (Open-LLM-VTuber's frontend sends it right after the socket opens).
const CONNECT_HANDSHAKE: Duration = Duration::from_secs(10);

/// Longest utterance buffered from `mic-audio-data` (16 kHz samples).
const MAX_UTTERANCE_SAMPLES: usize = INPUT_RATE as usize * 120;

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

pub(super) struct Reader {
    web: Arc<WebState>,
    conn: u64,
    out: mpsc::Sender<Out>,
    work: mpsc::Sender<Job>,
    bucket: Bucket,
    /// Until when a `create-new-history` is taken as part of connecting; `None` once
    /// the client sent one, or anything that is not a connect-time request.
    connecting_until: Option<Instant>,
    last_throttle_notice: Option<Instant>,
    last_stream_error: Option<Instant>,
    /// `mic-audio-data` of the utterance in progress.
    utterance: Vec<f32>,
    utterance_overflow: bool,
    /// This client sent `raw-audio-data` (server-side voice detection).
    streamed_raw: bool,
}

impl Reader {
    pub(super) fn new(
        web: Arc<WebState>,
        conn: u64,
        out: mpsc::Sender<Out>,
        work: mpsc::Sender<Job>,
        own_page: bool,
    ) -> Self {
        Self {
            // Our own page never asks for a new conversation when it connects: its
            // "New" button is always meant.
            connecting_until: (!own_page).then(|| Instant::now() + CONNECT_HANDSHAKE),
            bucket: Bucket::new(web.max_messages_per_sec),
            web,
            conn,
            out,
            work,
            last_throttle_notice: None,
            last_stream_error: None,
            utterance: Vec::new(),
            utterance_overflow: false,
            streamed_raw: false,
        }
    }

    async fn send(&self, out: Out) {
        let _ = self.out.send(out).await;
    }

    async fn error(&self, message: impl Into<String>) {
        self.send(Out::msg(ServerMessage::error(message))).await;
    }

    /// Reads until the client leaves or the writer closes the connection (which it does
    /// on shutdown, after the last notices).
    pub(super) async fn run(
        &mut self,
        mut stream: SplitStream<Socket>,
        closed: &CancellationToken,
    ) {
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
        if connect_time_new_history(&mut self.connecting_until, &msg, Instant::now()) {
            if self.work.try_send(Job::JoinCurrent).is_err() {
                self.error("too many requests at once: wait for the answers before sending more")
                    .await;
            }
            return;
        }
        match msg {
            ClientMessage::Heartbeat => self.send(Out::msg(ServerMessage::HeartbeatAck)).await,
            ClientMessage::FrontendPlaybackComplete => self.send(Out::PlaybackComplete).await,
            // Subtitles for group members; with one shared stage there is nobody to mirror to.
            ClientMessage::AudioPlayStart { .. } => {}
            ClientMessage::AddClientToGroup { .. }
            | ClientMessage::RemoveClientFromGroup { .. }
            | ClientMessage::RequestGroupInfo => {
                const NO_GROUPS: &str = "groups are not supported: every client already shares one stage (the same character and conversation)";
                let asked = !matches!(msg, ClientMessage::RequestGroupInfo);
                self.send(Out::msg(ServerMessage::GroupUpdate {
                    members: Vec::new(),
                    is_owner: false,
                    error: Some(NO_GROUPS.into()),
                }))
                .await;
                // Open-LLM-VTuber's frontend ignores `group-update`'s error and shows
                // only `error` messages (a toast); its group drawer sends
                // `request-group-info` each time it opens, so only an invite or a
                // removal, which the user asked for, gets the toast.
                if asked {
                    self.error(NO_GROUPS).await;
                }
            }
            ClientMessage::AvatarStatus { model_url, error } => {
                if let Some(why) = &error {
                    tracing::warn!(model = %model_url, conn = self.conn, "the page cannot show the character's model: {why}");
                }
                self.web
                    .services
                    .web
                    .avatar
                    .report(&model_url, error.as_deref());
            }
            ClientMessage::RequestInitConfig => {
                let conf = self
                    .web
                    .characters
                    .model_conf(&self.web.services.conversation.view().character);
                self.send(Out::Model {
                    conf: Arc::new(conf),
                    force: true,
                })
                .await
            }
            ClientMessage::InterruptSignal { .. } => {
                // The text the user heard is not used: the stored reply is what was
                // generated before the interruption, marked interrupted.
                match &self.web.services.voice {
                    Some(v) => v.barge_in(),
                    None => {
                        let conversation = self.web.services.conversation.clone();
                        tokio::spawn(async move {
                            let _ = conversation.interrupt().await;
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
                self.utterance.extend(audio.into_iter().map(|s| {
                    if s.is_finite() {
                        s.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    }
                }));
            }
            ClientMessage::MicAudioEnd { images } => {
                self.utterance_end(crate::web::olv_messages::images_of(images.as_ref()))
                    .await
            }
            ClientMessage::RawAudioData { audio } => {
                let Some(voice) = self.voice_or_error().await else {
                    return;
                };
                self.streamed_raw = true;
                let samples = audio
                    .into_iter()
                    .map(|s| {
                        if s.is_finite() {
                            s.clamp(-1.0, 1.0)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                if let Err(e) = voice.stream(self.conn, samples) {
                    let now = Instant::now();
                    if self
                        .last_stream_error
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(5))
                    {
                        self.last_stream_error = Some(now);
                        self.error(e.to_string()).await;
                    }
                }
            }
            other => {
                if self.work.try_send(Job::Msg(other)).is_err() {
                    self.error(
                        "too many requests at once: wait for the answers before sending more",
                    )
                    .await;
                }
            }
        }
    }

    async fn voice_or_error(&self) -> Option<VoiceInput> {
        match &self.web.services.voice {
            Some(v) => Some(v.clone()),
            None => {
                self.error("voice input is disabled on this daemon (set speech.enabled: true in conf.yaml and restart it)")
                    .await;
                None
            }
        }
    }

    /// `mic-audio-end`: transcribe the buffered utterance and answer it, off the socket.
    /// `mic-audio-end`: the utterance (buffered here, or detected by the server's
    /// voice detection) goes as a turn, with the client's pictures.
    async fn utterance_end(&mut self, images: Vec<vtuber_shared::ImageInput>) {
        let samples = std::mem::take(&mut self.utterance);
        self.utterance_overflow = false;
        let Some(voice) = self.voice_or_error().await else {
            return;
        };
        if samples.is_empty() {
            if self.streamed_raw {
                // Server-side detection: the client says the utterance is over.
                voice.stream_end(self.conn, images);
            } else {
                self.error("mic-audio-end without audio: send mic-audio-data first")
                    .await;
            }
            return;
        }
        let out = self.out.clone();
        tokio::spawn(async move {
            match voice
                .utterance(Pcm::new(samples, INPUT_RATE), ORIGIN_VOICE, images)
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

/// Whether `msg` is a `create-new-history` sent while connecting: the client's first,
/// before `*until` ([`CONNECT_HANDSHAKE`] after connecting), before it sent anything but
/// the requests a page makes to set itself up. Open-LLM-VTuber's frontend sends one on
/// every connect (its `wsService`, once the socket is open: `fetch-backgrounds`,
/// `fetch-configs`, `fetch-history-list`, `create-new-history`); all clients share one
/// conversation, so that must not replace it for everyone (see `worker::join_current`).
/// A later "new chat" click, or one after the client did anything else, makes a new
/// one. `*until` becomes `None` once the handshake is over.
fn connect_time_new_history(
    until: &mut Option<Instant>,
    msg: &ClientMessage,
    now: Instant,
) -> bool {
    let Some(by) = *until else {
        return false;
    };
    match msg {
        ClientMessage::CreateNewHistory => {
            *until = None;
            now <= by
        }
        ClientMessage::FetchBackgrounds
        | ClientMessage::FetchConfigs
        | ClientMessage::FetchHistoryList
        | ClientMessage::RequestInitConfig
        | ClientMessage::RequestGroupInfo
        | ClientMessage::Heartbeat => false,
        _ => {
            *until = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connecting_clients_first_new_history_joins_the_current_one() {
        let t0 = Instant::now();
        let new = ClientMessage::CreateNewHistory;
        // OLV's connect sequence: the set-up requests, then create-new-history.
        let mut until = Some(t0 + CONNECT_HANDSHAKE);
        for m in [
            ClientMessage::FetchBackgrounds,
            ClientMessage::FetchConfigs,
            ClientMessage::FetchHistoryList,
        ] {
            assert!(!connect_time_new_history(&mut until, &m, t0));
        }
        assert!(connect_time_new_history(&mut until, &new, t0));
        // The "new chat" click afterwards is a real one.
        assert!(!connect_time_new_history(&mut until, &new, t0));
        // After any input, it is a real one too.
        let mut until = Some(t0 + CONNECT_HANDSHAKE);
        let text = ClientMessage::TextInput {
            text: "hi".into(),
            images: None,
        };
        assert!(!connect_time_new_history(&mut until, &text, t0));
        assert!(!connect_time_new_history(&mut until, &new, t0));
        // And when it comes long after connecting.
        let mut until = Some(t0 + CONNECT_HANDSHAKE);
        assert!(!connect_time_new_history(
            &mut until,
            &new,
            t0 + CONNECT_HANDSHAKE + Duration::from_secs(1)
        ));
    }

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
