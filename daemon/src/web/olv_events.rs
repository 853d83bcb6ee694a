//! How the daemon's events become Open-LLM-VTuber messages.
//!
//! Every bus event is translated once by [`Translator`] into ready-encoded JSON text
//! ([`WebEvent`]) that every connection shares, so a sentence's audio (tens of kilobytes
//! of base64) is serialized once however many browsers watch; the hub runs it.
//! Per-connection parts (the turn's closing handshake, `client_uid`) are added by the
//! session.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{CharacterInfo, Event, SpeechAudio, ToolOutcome, TurnOutcome};

use super::avatars::{Characters, ModelConf};
use super::olv_messages::{Actions, DisplayText, ServerMessage, control, now_iso};
use crate::events::EventBus;
use crate::speech::text::expressions::extract_expressions;
use crate::speech::text::sentences::{SentenceSplitter, SplitterConfig};

/// What a translated event means for a connection's turn bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Nothing turn-related: send `messages`.
    None,
    /// A turn began: close any earlier one, then send `turn_messages`.
    Start(u64),
    /// Part of turn `turn` (`turn_messages` go only to clients following that turn):
    /// `audio_ms` of speech, and `done: Some(interrupted)` once the turn's speech is all out.
    Turn {
        turn: u64,
        audio_ms: u32,
        done: Option<bool>,
    },
    /// The character (or its avatar) changed: send `set-model-and-conf`.
    Model(Arc<ModelConf>),
    /// The server is stopping: close the connection (1001) after what came before.
    Closing,
}

/// One bus event in OLV form, shared by every connection.
#[derive(Debug, Clone)]
pub struct WebEvent {
    pub seq: u64,
    pub signal: Signal,
    /// Sent only when the connection follows the signal's turn.
    pub turn_messages: Vec<Utf8Bytes>,
    /// Sent to every connection.
    pub messages: Vec<Utf8Bytes>,
}

impl WebEvent {
    fn new(seq: u64) -> Self {
        Self {
            seq,
            signal: Signal::None,
            turn_messages: Vec::new(),
            messages: Vec::new(),
        }
    }
}

/// Turns from voice carry a transcript event of their own.
pub fn is_voice_origin(origin: &str) -> bool {
    origin == "voice"
        || origin.starts_with("voice:")
        || origin.ends_with("(voice)")
        || origin.ends_with("(audio)")
}

/// A reply shown as text only (speech is off): its deltas cut into sentences here.
struct TextTurn {
    turn_id: u64,
    splitter: SentenceSplitter,
}

/// Translates bus events, in order, keeping what the mapping needs to remember.
pub struct Translator {
    characters: Arc<Characters>,
    /// The current character (id, name), as of the last event seen.
    character: CharacterInfo,
    /// Whether turns are spoken (a `speech_finished` ends each).
    speech: bool,
    splitter: SplitterConfig,
    text_turn: Option<TextTurn>,
    /// Tool name by call id, for progress messages.
    tools: HashMap<String, String>,
}

impl Translator {
    pub fn new(
        characters: Arc<Characters>,
        character: CharacterInfo,
        speech: bool,
        splitter: SplitterConfig,
    ) -> Self {
        Self {
            characters,
            character,
            speech,
            splitter,
            text_turn: None,
            tools: HashMap::new(),
        }
    }

    pub fn characters(&self) -> &Arc<Characters> {
        &self.characters
    }

    fn audio_message(
        &self,
        text: String,
        expressions: &[String],
        audio: Option<&SpeechAudio>,
    ) -> ServerMessage {
        let emotions = self.characters.emotions(&self.character.id);
        let expressions: Vec<Value> = expressions
            .iter()
            .map(|tag| match emotions.get(tag) {
                Some(i) => Value::from(*i),
                None => Value::from(tag.as_str()),
            })
            .collect();
        let (wav, volumes, slice) = match audio {
            Some(a) if !a.wav_base64.is_empty() => {
                (Some(a.wav_base64.clone()), a.volumes.clone(), a.slice_ms)
            }
            // Played on the daemon's speaker only: no sound for the page, but the
            // loudness still drives the avatar's mouth.
            Some(a) => (None, a.volumes.clone(), a.slice_ms),
            None => (None, Vec::new(), crate::speech::speaker::SLICE_MS),
        };
        ServerMessage::Audio {
            audio: wav,
            volumes,
            slice_length: slice,
            display_text: DisplayText {
                text,
                name: self.character.name.clone(),
                avatar: None,
            },
            actions: (!expressions.is_empty()).then_some(Actions { expressions }),
            forwarded: false,
        }
    }

    /// Text-only sentences of a reply, as `audio` messages without sound.
    fn text_sentences(&self, raws: Vec<String>) -> Vec<Utf8Bytes> {
        let emotions = self.characters.emotions(&self.character.id);
        raws.into_iter()
            .filter_map(|raw| {
                let (display, expressions) = extract_expressions(&raw, &emotions);
                let display = display.trim().to_owned();
                (!display.is_empty() || !expressions.is_empty())
                    .then(|| self.audio_message(display, &expressions, None).encode())
            })
            .collect()
    }

    /// The OLV form of `event`; `None` for events clients have no use for.
    pub async fn translate(&mut self, seq: u64, event: &Event) -> Option<WebEvent> {
        let mut out = WebEvent::new(seq);
        match event {
            Event::StateChanged { state } => {
                out.messages.push(
                    ServerMessage::State {
                        state: state.as_str(),
                    }
                    .encode(),
                );
            }
            Event::TurnStarted {
                turn_id,
                text,
                origin,
                ..
            } => {
                self.text_turn = (!self.speech).then(|| TextTurn {
                    turn_id: *turn_id,
                    splitter: SentenceSplitter::new(self.splitter.clone()),
                });
                out.signal = Signal::Start(*turn_id);
                out.turn_messages
                    .push(ServerMessage::control(control::CHAIN_START).encode());
                out.turn_messages.push(
                    ServerMessage::FullText {
                        text: "Thinking...".into(),
                    }
                    .encode(),
                );
                // Voice turns show up as `user-input-transcription` (from the transcript
                // event) instead, so the page does not list them twice.
                if !is_voice_origin(origin)
                    && origin != crate::conversation::proactive::ORIGIN_PROACTIVE
                {
                    out.turn_messages.push(
                        ServerMessage::UserInput {
                            text: text.clone(),
                            origin: origin.clone(),
                        }
                        .encode(),
                    );
                }
            }
            Event::Delta { turn_id, text } => {
                let t = self.text_turn.as_mut().filter(|t| t.turn_id == *turn_id)?;
                let raws: Vec<String> = t.splitter.push(text).into_iter().map(|s| s.raw).collect();
                if raws.is_empty() {
                    return None;
                }
                out.turn_messages = self.text_sentences(raws);
                out.signal = Signal::Turn {
                    turn: *turn_id,
                    audio_ms: 0,
                    done: None,
                };
            }
            Event::TurnEnded {
                turn_id,
                outcome,
                cut,
                ..
            } => {
                if let TurnOutcome::Failed { error } = outcome {
                    out.messages
                        .push(ServerMessage::error(error.to_string()).encode());
                }
                // The page has no notice of its own; its error toast carries the note.
                if let Some(cut) = cut {
                    out.messages
                        .push(ServerMessage::error(cut.message.clone()).encode());
                }
                let interrupted = matches!(outcome, TurnOutcome::Interrupted);
                if let Some(mut t) = self.text_turn.take_if(|t| t.turn_id == *turn_id) {
                    // No speech will follow: this is the end of the turn's output.
                    if !interrupted && let Some(last) = t.splitter.finish() {
                        out.turn_messages = self.text_sentences(vec![last.raw]);
                    }
                    out.signal = Signal::Turn {
                        turn: *turn_id,
                        audio_ms: 0,
                        done: Some(interrupted),
                    };
                } else if out.messages.is_empty() {
                    return None;
                }
            }
            Event::Sentence {
                turn_id,
                text,
                expressions,
                audio,
                ..
            } => {
                out.turn_messages.push(
                    self.audio_message(text.clone(), expressions, audio.as_ref())
                        .encode(),
                );
                out.signal = Signal::Turn {
                    turn: *turn_id,
                    audio_ms: audio.as_ref().map_or(0, |a| a.duration_ms),
                    done: None,
                };
            }
            Event::SpeechFinished {
                turn_id,
                interrupted,
                ..
            } => {
                out.signal = Signal::Turn {
                    turn: *turn_id,
                    audio_ms: 0,
                    done: Some(*interrupted),
                };
            }
            Event::Transcript { text, .. } => {
                out.messages
                    .push(ServerMessage::UserInputTranscription { text: text.clone() }.encode());
            }
            Event::CharacterChanged { character, .. } => {
                self.character = character.clone();
                out.signal = Signal::Model(Arc::new(self.characters.model_conf(character)));
            }
            Event::CharactersReloaded { characters } => {
                self.characters.reload().await;
                if let Some(c) = characters.iter().find(|c| c.id == self.character.id) {
                    self.character = c.clone();
                }
                // Sessions skip it when the avatar did not change.
                out.signal = Signal::Model(Arc::new(self.characters.model_conf(&self.character)));
            }
            Event::ToolCallStarted {
                call_id,
                server,
                tool,
                arguments,
                ..
            } => {
                self.tools.insert(call_id.clone(), tool.clone());
                if self.tools.len() > 1000 {
                    self.tools.clear();
                }
                out.messages.push(
                    self.tool_status(call_id, tool, "running", format!("{server}: {arguments}"))
                        .encode(),
                );
            }
            Event::ToolCallProgress {
                call_id,
                progress,
                total,
                message,
            } => {
                let tool = self
                    .tools
                    .get(call_id)
                    .cloned()
                    .unwrap_or_else(|| "tool".into());
                let mut content = match total {
                    Some(t) => format!("{progress}/{t}"),
                    None => format!("{progress}"),
                };
                if let Some(m) = message {
                    content = format!("{content} {m}");
                }
                out.messages.push(
                    self.tool_status(call_id, &tool, "running", content)
                        .encode(),
                );
            }
            Event::ToolCallEnded {
                call_id,
                outcome,
                summary,
                ..
            } => {
                let tool = self.tools.remove(call_id).unwrap_or_else(|| "tool".into());
                let (status, content) = match outcome {
                    ToolOutcome::Ok => ("completed", summary.clone()),
                    ToolOutcome::Error => ("error", summary.clone()),
                    ToolOutcome::Denied => ("error", format!("denied: {summary}")),
                    ToolOutcome::TimedOut => ("error", format!("timed out: {summary}")),
                    ToolOutcome::Cancelled => ("error", format!("cancelled: {summary}")),
                };
                out.messages
                    .push(self.tool_status(call_id, &tool, status, content).encode());
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
                out.messages.push(
                    ServerMessage::ApprovalRequest {
                        request_id: *request_id,
                        tool: tool.clone(),
                        server: server.clone(),
                        description: description.clone(),
                        arguments: arguments.clone(),
                        timeout_secs: *timeout_secs,
                    }
                    .encode(),
                );
            }
            Event::ApprovalResolved {
                request_id,
                resolution,
            } => {
                out.messages.push(
                    ServerMessage::ApprovalResolved {
                        request_id: *request_id,
                        resolution: *resolution,
                    }
                    .encode(),
                );
            }
            Event::Error { error } => {
                out.messages
                    .push(ServerMessage::error(error.to_string()).encode());
            }
            Event::ShuttingDown => {
                out.messages.push(
                    ServerMessage::FullText {
                        text: "The daemon is shutting down".into(),
                    }
                    .encode(),
                );
            }
            // Nothing the page shows: the model's load and the conversation's changes
            // show up through `state` and the turns; clients, servers, voice activity
            // and levels have no OLV message.
            Event::ModelLoad { .. }
            | Event::ConversationChanged { .. }
            | Event::ConversationDeleted { .. }
            | Event::ClientsChanged { .. }
            | Event::McpServerChanged { .. }
            | Event::VoiceActivity { .. }
            | Event::InputLevel { .. }
            | Event::VoiceChanged { .. }
            | Event::Lagged { .. }
            | Event::Unknown => return None,
        }
        Some(out)
    }

    fn tool_status(
        &self,
        call_id: &str,
        tool: &str,
        status: &'static str,
        content: String,
    ) -> ServerMessage {
        ServerMessage::ToolCallStatus {
            tool_id: call_id.to_owned(),
            tool_name: tool.to_owned(),
            status,
            content,
            timestamp: now_iso(),
            name: self.character.name.clone(),
        }
    }
}

/// Starts the task that turns bus events into shared [`WebEvent`]s.
pub(super) fn start_hub(
    bus: &EventBus,
    mut translator: Translator,
    capacity: usize,
    shutdown: CancellationToken,
) -> broadcast::Sender<Arc<WebEvent>> {
    let (tx, _) = broadcast::channel(capacity.max(16));
    let (mut rx, _) = bus.subscribe();
    let out = tx.clone();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                biased;
                ev = rx.recv() => ev,
                _ = shutdown.cancelled() => {
                    // What the conversation said last ("shutting down") goes out before the
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::characters::Roster;
    use serde_json::json;
    use vtuber_shared::{DaemonState, ErrorBody, ErrorCode};

    #[test]
    fn voice_origins() {
        assert!(is_voice_origin("voice"));
        assert!(is_voice_origin("voice:7"));
        assert!(is_voice_origin("web (voice)"));
        assert!(is_voice_origin("vtuber listen (audio)"));
        assert!(!is_voice_origin("web"));
        assert!(!is_voice_origin("vtuber chat"));
    }

    fn translator(speech: bool) -> Translator {
        let characters = Arc::new(Characters::load(
            None,
            PathBuf::from("/nonexistent"),
            PathBuf::from("/nonexistent/live2d-models"),
            None,
        ));
        let (roster, _) = Roster::load(None);
        Translator::new(
            characters,
            roster.get("mao").unwrap().info(),
            speech,
            SplitterConfig::default(),
        )
    }

    fn texts(v: &[Utf8Bytes]) -> Vec<Value> {
        v.iter()
            .map(|b| serde_json::from_str(b.as_str()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn spoken_turn_maps_to_olv_messages() {
        let mut t = translator(true);
        let start = t
            .translate(
                1,
                &Event::TurnStarted {
                    turn_id: 4,
                    conversation_id: 1,
                    text: "hi".into(),
                    origin: "vtuber chat".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(start.signal, Signal::Start(4));
        let m = texts(&start.turn_messages);
        assert_eq!(
            m[0],
            json!({"type":"control","text":"conversation-chain-start"})
        );
        assert_eq!(m[1], json!({"type":"full-text","text":"Thinking..."}));
        assert_eq!(
            m[2],
            json!({"type":"user-input","text":"hi","origin":"vtuber chat"})
        );
        // Deltas are spoken as sentences, not sent themselves.
        assert!(
            t.translate(
                2,
                &Event::Delta {
                    turn_id: 4,
                    text: "Hi.".into()
                }
            )
            .await
            .is_none()
        );
        let s = t
            .translate(
                3,
                &Event::Sentence {
                    turn_id: 4,
                    index: 0,
                    text: "Hello!".into(),
                    expressions: vec!["joy".into(), "weird".into()],
                    audio: Some(SpeechAudio {
                        wav_base64: "UklG".into(),
                        sample_rate: 22050,
                        duration_ms: 640,
                        volumes: vec![0.5, 1.0],
                        slice_ms: 20,
                    }),
                    synth_ms: 5,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            s.signal,
            Signal::Turn {
                turn: 4,
                audio_ms: 640,
                done: None
            }
        );
        assert_eq!(
            texts(&s.turn_messages)[0],
            json!({"type":"audio","audio":"UklG","volumes":[0.5,1.0],"slice_length":20,
                   "display_text":{"text":"Hello!","name":"Mao","avatar":null},
                   "actions":{"expressions":[1,"weird"]},"forwarded":false})
        );
        // With speech, the end of the text is not the end of the turn.
        assert!(
            t.translate(
                4,
                &Event::TurnEnded {
                    turn_id: 4,
                    outcome: TurnOutcome::Finished,
                    text: "Hello!".into(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                }
            )
            .await
            .is_none()
        );
        let done = t
            .translate(
                5,
                &Event::SpeechFinished {
                    turn_id: 4,
                    sentences: 1,
                    interrupted: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            done.signal,
            Signal::Turn {
                turn: 4,
                audio_ms: 0,
                done: Some(false)
            }
        );
        let st = t
            .translate(
                6,
                &Event::StateChanged {
                    state: DaemonState::Speaking,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            texts(&st.messages)[0],
            json!({"type":"state","state":"speaking"})
        );
    }

    #[tokio::test]
    async fn text_only_turn_is_shown_sentence_by_sentence() {
        let mut t = translator(false);
        let start = t
            .translate(
                1,
                &Event::TurnStarted {
                    turn_id: 1,
                    conversation_id: 1,
                    text: "yo".into(),
                    origin: "voice".into(),
                },
            )
            .await
            .unwrap();
        // A voice turn: the transcript event shows the input.
        assert_eq!(start.turn_messages.len(), 2);
        let d = t
            .translate(
                2,
                &Event::Delta {
                    turn_id: 1,
                    text: "[joy] First one here. Second".into(),
                },
            )
            .await
            .unwrap();
        let m = texts(&d.turn_messages);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["display_text"]["text"], "First one here.");
        assert_eq!(m[0]["audio"], Value::Null);
        assert_eq!(m[0]["volumes"], json!([]));
        assert_eq!(m[0]["actions"], json!({"expressions":[1]}));
        let end = t
            .translate(
                3,
                &Event::TurnEnded {
                    turn_id: 1,
                    outcome: TurnOutcome::Finished,
                    text: String::new(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            end.signal,
            Signal::Turn {
                turn: 1,
                audio_ms: 0,
                done: Some(false)
            }
        );
        assert_eq!(
            texts(&end.turn_messages)[0]["display_text"]["text"],
            "Second"
        );
        let failed = t
            .translate(
                4,
                &Event::TurnEnded {
                    turn_id: 2,
                    outcome: TurnOutcome::Failed {
                        error: ErrorBody::new(ErrorCode::Llm, "boom").with_hint("fix it"),
                    },
                    text: String::new(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            texts(&failed.messages)[0],
            json!({"type":"error","message":"boom (fix it)"})
        );
    }
}
