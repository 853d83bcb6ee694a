//! The spoken side of a turn: streamed reply text in, ordered sentences of audio out.
//!
//! Deltas are cut into sentences as they arrive; each sentence goes to TTS at once, up
//! to [`SpeakerSetup::parallel`] at a time, so later ones are synthesized while the
//! current one plays. Results are delivered
//! strictly in sentence order, as `sentence` events for clients and to the local
//! speaker. Cancellation (barge-in, a new input) stops synthesis and silences the
//! speaker at once.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{ErrorBody, ErrorCode, Event, SpeechAudio};

use super::listeners::Listeners;
use super::text::clean::{CleanOptions, clean_for_speech};
use super::text::expressions::extract_expressions;
use super::text::sentences::{SentenceSplitter, SplitterConfig};
use super::tts::Tts;
use super::{SpeechError, Voice};
use crate::events::EventBus;
use crate::pcm::Pcm;
use crate::sound::{Played, Player};

/// Lip-sync slice length sent with every sentence.
pub const SLICE_MS: u32 = 20;

/// Everything one turn's speech needs.
pub struct SpeakerSetup {
    pub turn_id: u64,
    pub tts: Tts,
    pub voice: Voice,
    pub clean: CleanOptions,
    pub splitter: SplitterConfig,
    /// Sentences synthesized at once (see [`Tts::parallel`]).
    pub parallel: usize,
    pub emotions: BTreeMap<String, i64>,
    pub bus: EventBus,
    /// The daemon's speaker, when replies play locally.
    pub player: Option<Player>,
    /// Clients that play audio. Without a speaker, a sentence is synthesized only while
    /// one is attached; otherwise it goes out as text only.
    pub listeners: Listeners,
    /// Put the audio in `sentence` events (clients play it).
    pub audio_to_clients: bool,
    pub cancel: CancellationToken,
}

/// How a turn's speech ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechSummary {
    pub turn_id: u64,
    pub sentences: u32,
    pub interrupted: bool,
}

/// Feeds reply text to a running speech task. Dropping it marks the end of the reply.
pub struct Speaker {
    tx: mpsc::UnboundedSender<String>,
}

impl Speaker {
    /// Starts the task; it ends when the `Speaker` is dropped and everything queued has
    /// been delivered (and played, with a local speaker), or on cancellation.
    pub fn start(setup: SpeakerSetup) -> (Self, JoinHandle<SpeechSummary>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(run(setup, rx));
        (Self { tx }, handle)
    }

    pub fn push(&self, delta: &str) {
        let _ = self.tx.send(delta.to_owned());
    }
}

/// A sentence ready to synthesize.
struct Prepared {
    index: u32,
    display: String,
    expressions: Vec<String>,
    spoken: String,
}

fn prepare(raw: &str, index: u32, setup: &SpeakerSetup) -> Option<Prepared> {
    let (display, expressions) = extract_expressions(raw, &setup.emotions);
    let spoken = clean_for_speech(&display, &setup.clean);
    let display = display.trim().to_owned();
    if display.is_empty() && expressions.is_empty() {
        return None;
    }
    Some(Prepared {
        index,
        display,
        expressions,
        spoken,
    })
}

type Synth = (Prepared, Result<Option<(Pcm, u32)>, SpeechError>);

async fn synthesize(tts: Tts, voice: Voice, p: Prepared) -> Synth {
    if p.spoken.trim().is_empty() {
        return (p, Ok(None));
    }
    let started = Instant::now();
    let r = tts.synthesize(&p.spoken, &voice).await;
    let ms = started.elapsed().as_millis() as u32;
    (p, r.map(|pcm| Some((pcm, ms))))
}

async fn run(setup: SpeakerSetup, mut rx: mpsc::UnboundedReceiver<String>) -> SpeechSummary {
    let mut splitter = SentenceSplitter::new(setup.splitter.clone());
    let mut waiting: std::collections::VecDeque<Prepared> = Default::default();
    let mut in_flight: FuturesOrdered<_> = FuturesOrdered::new();
    let mut next_index = 0u32;
    let mut delivered = 0u32;
    let mut last_play: Option<tokio::sync::oneshot::Receiver<Played>> = None;
    let mut input_open = true;
    let cancel = setup.cancel.clone();
    let mut failed_once = false;

    let interrupted = loop {
        while in_flight.len() < setup.parallel.max(1)
            && let Some(mut p) = waiting.pop_front()
        {
            if setup.player.is_none() && setup.listeners.count() == 0 {
                // No one would hear it.
                p.spoken.clear();
            }
            in_flight.push_back(synthesize(setup.tts.clone(), setup.voice.clone(), p));
        }
        if !input_open && in_flight.is_empty() && waiting.is_empty() {
            break false;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break true,
            delta = rx.recv(), if input_open => {
                let sentences = match delta {
                    Some(d) => splitter.push(&d),
                    None => {
                        input_open = false;
                        splitter.finish().into_iter().collect()
                    }
                };
                for s in sentences {
                    if let Some(p) = prepare(&s.raw, next_index, &setup) {
                        next_index += 1;
                        waiting.push_back(p);
                    }
                }
            }
            Some((p, result)) = in_flight.next(), if !in_flight.is_empty() => {
                let audio = match result {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(turn = setup.turn_id, "speech synthesis failed: {e}");
                        if !failed_once {
                            failed_once = true;
                            setup.bus.emit(Event::Error {
                                error: ErrorBody::new(ErrorCode::Model, format!("speech synthesis failed: {e}"))
                                    .with_hint(e.hint()),
                            });
                        }
                        None
                    }
                };
                let synth_ms = audio.as_ref().map_or(0, |(_, ms)| *ms);
                if let (Some(player), Some((pcm, _))) = (&setup.player, &audio) {
                    last_play = Some(player.play(pcm));
                }
                let audio = audio.map(|(pcm, _)| speech_audio(&pcm, setup.audio_to_clients));
                setup.bus.emit(Event::Sentence {
                    turn_id: setup.turn_id,
                    index: p.index,
                    text: p.display,
                    expressions: p.expressions,
                    audio,
                    synth_ms,
                });
                delivered += 1;
            }
        }
    };

    let interrupted = if interrupted {
        true
    } else if let Some(done) = last_play.take() {
        // Speech is over when the speaker has played the last sentence.
        tokio::select! {
            _ = cancel.cancelled() => true,
            r = done => matches!(r, Ok(Played::Stopped)),
        }
    } else {
        false
    };
    if interrupted && let Some(player) = &setup.player {
        player.stop();
    }
    setup.bus.emit(Event::SpeechFinished {
        turn_id: setup.turn_id,
        sentences: delivered,
        interrupted,
    });
    SpeechSummary {
        turn_id: setup.turn_id,
        sentences: delivered,
        interrupted,
    }
}

/// The wire form of synthesized audio; without the WAV when only the local speaker
/// plays it (clients still get duration and volumes for lip sync).
pub fn speech_audio(pcm: &Pcm, with_wav: bool) -> SpeechAudio {
    SpeechAudio {
        wav_base64: if with_wav {
            base64::engine::general_purpose::STANDARD.encode(pcm.to_wav())
        } else {
            String::new()
        },
        sample_rate: pcm.sample_rate,
        duration_ms: pcm.duration_ms(),
        volumes: pcm.volumes(SLICE_MS),
        slice_ms: SLICE_MS,
    }
}
