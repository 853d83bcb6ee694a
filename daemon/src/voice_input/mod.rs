//! Voice input: the daemon's microphone and audio streamed by clients go through voice
//! activity detection; finished utterances are transcribed and become turns of the
//! conversation, and speech that starts while the character talks interrupts it
//! (barge-in). Also the voice status (`status.voice`, `voice_changed`).
//!
//! Voice input is one more client of the conversation: it drives it through the
//! [`Conversation`] handle, and the conversation never calls back into it (replies are
//! spoken through [`SpeechOut`]). One thread owns the VAD models (one detector state per
//! audio source) and does the per-frame work; transcription runs on the ASR engine's own
//! thread, and everything that touches the conversation goes back to the async runtime.

mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use vtuber_shared::{
    EngineStatus, ErrorBody, ErrorCode, Event, ImageInput, ModelLoad, VoiceStatus,
};

use crate::config::{BargeIn, Config, Playback};
use crate::conversation::Conversation;
use crate::events::EventBus;
use crate::pcm::Pcm;
use crate::sound::{self, AudioDevices};
use crate::speech::asr::Asr;
use crate::speech::listeners::Listeners;
use crate::speech::model_paths::ModelPaths;
use crate::speech::tts::Tts;
use crate::speech::vad::SegmenterSettings;
use crate::speech::{INPUT_RATE, SpeechError};
use crate::speech_out::{SpeechOut, speech_error};
use worker::{Input, InputWorker};

/// Handle to voice input; cheap to clone.
#[derive(Clone)]
pub struct VoiceInput {
    inner: Arc<Inner>,
}

struct Inner {
    conversation: Conversation,
    bus: EventBus,
    asr: Asr,
    /// Reported in the voice status, stopped on barge-in.
    speech: SpeechOut,
    barge_in: BargeIn,
    audio_status: String,
    input_device: Option<String>,
    echo: String,
    listening: AtomicBool,
    push_to_talk: AtomicBool,
    vad_load: Mutex<ModelLoad>,
    input: mpsc::Sender<Input>,
}

impl VoiceInput {
    /// Opens devices and starts loading engines; returns at once. `None` when speech is
    /// disabled in the config. Input starts with [`PreparedInput::attach`], once the
    /// conversation (which speaks through the [`SpeechOut`]) exists.
    /// `listeners`: the clients that play reply audio (see [`SpeechOut::listeners`]).
    pub fn prepare(
        config: &Config,
        listeners: &Listeners,
    ) -> Result<Option<(SpeechOut, PreparedInput)>, SpeechError> {
        if !config.speech.enabled {
            return Ok(None);
        }
        let paths = ModelPaths::new(&config.speech);
        let asr = Asr::new(&config.speech, &paths)?;
        let tts = Tts::new(&config.speech, &paths)?;
        let devices = sound::open(&config.audio);
        let out = SpeechOut {
            tts,
            // Replies play on the daemon's speaker unless they are for clients only.
            player: match config.audio.playback {
                Playback::Clients => None,
                _ => devices.player.clone(),
            },
            playback: config.audio.playback,
            listeners: listeners.clone(),
        };
        Ok(Some((
            out.clone(),
            PreparedInput {
                config: config.clone(),
                paths,
                asr,
                speech: out,
                devices,
            },
        )))
    }

    pub fn status(&self) -> VoiceStatus {
        let i = &self.inner;
        let voice = i.conversation.view().voice;
        VoiceStatus {
            audio: i.audio_status.clone(),
            input_device: i.input_device.clone(),
            output_device: i.speech.player.as_ref().map(|p| p.name().to_owned()),
            listening: i.listening.load(Ordering::SeqCst),
            push_to_talk: i.push_to_talk.load(Ordering::SeqCst),
            barge_in: barge_in_str(i.barge_in).into(),
            playback: playback_str(i.speech.playback).into(),
            echo_cancellation: i.echo.clone(),
            vad: EngineStatus {
                backend: "silero".into(),
                model: "silero_vad".into(),
                load: i
                    .vad_load
                    .lock()
                    .map(|l| l.clone())
                    .unwrap_or(ModelLoad::NotLoaded),
            },
            asr: i.asr.status(),
            tts: i.speech.tts.status(&voice),
        }
    }

    fn announce(&self) {
        self.inner.bus.emit(Event::VoiceChanged {
            voice: Box::new(self.status()),
        });
    }

    /// Hands-free listening on the daemon's microphone.
    pub fn set_listening(&self, on: bool) -> Result<VoiceStatus, ErrorBody> {
        if on && self.inner.input_device.is_none() {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("cannot listen: {}", self.inner.audio_status),
            )
            .with_hint("set audio.input in conf.yaml to a microphone, or send audio from a client (`vtuber listen FILE.wav`, the browser page)"));
        }
        self.inner.listening.store(on, Ordering::SeqCst);
        self.inner.conversation.set_listening(on);
        self.announce();
        Ok(self.status())
    }

    /// Push-to-talk key down/up on the daemon's microphone.
    pub fn push_to_talk(&self, pressed: bool) -> Result<VoiceStatus, ErrorBody> {
        if self.inner.input_device.is_none() {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("cannot talk: {}", self.inner.audio_status),
            )
            .with_hint("set audio.input in conf.yaml to a microphone"));
        }
        self.inner.push_to_talk.store(pressed, Ordering::SeqCst);
        if pressed && self.inner.barge_in != BargeIn::Off {
            self.barge_in();
        }
        let _ = self.inner.input.try_send(Input::PushToTalk(pressed));
        self.announce();
        Ok(self.status())
    }

    /// Live audio from a client (16 kHz mono), through voice detection.
    pub fn stream(&self, client: u64, samples: Vec<f32>) -> Result<(), ErrorBody> {
        self.check_vad()?;
        self.inner
            .input
            .try_send(Input::Client(client, samples))
            .map_err(|_| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    "voice input is overloaded; audio dropped",
                )
                .with_hint("send audio in real time, not faster")
            })
    }

    /// The client says its utterance is complete (it did its own voice detection);
    /// `images` (a camera frame, a screenshot) go with what it said.
    pub fn stream_end(&self, client: u64, images: Vec<ImageInput>) {
        let _ = self.inner.input.try_send(Input::ClientEnd(client, images));
    }

    /// A client disconnected: forget its detector state.
    pub fn client_gone(&self, client: u64) {
        let _ = self.inner.input.try_send(Input::ClientGone(client));
    }

    fn check_vad(&self) -> Result<(), ErrorBody> {
        match self.inner.vad_load.lock().map(|l| l.clone()) {
            Ok(ModelLoad::Failed { reason }) => Err(ErrorBody::new(
                ErrorCode::Model,
                format!("voice detection is unavailable: {reason}"),
            )
            .with_hint("run scripts/fetch-model.sh (Silero VAD and ONNX Runtime)")),
            _ => Ok(()),
        }
    }

    /// Transcribes a whole utterance and starts a turn with it (and any pictures the
    /// client sent along), as if spoken.
    pub async fn utterance(
        &self,
        pcm: Pcm,
        origin: &str,
        images: Vec<ImageInput>,
    ) -> Result<(String, Option<(u64, i64)>), ErrorBody> {
        if pcm.samples.is_empty() {
            return Err(
                ErrorBody::new(ErrorCode::InvalidArgument, "the audio is empty")
                    .with_hint("record at least a word"),
            );
        }
        let pcm16 = pcm.resampled(INPUT_RATE).map_err(speech_error)?;
        let started = Instant::now();
        let text = self
            .inner
            .asr
            .transcribe(pcm16.samples)
            .await
            .map_err(speech_error)?;
        let asr_ms = started.elapsed().as_millis() as u32;
        let text = text.trim().to_owned();
        if is_blank_transcript(&text) {
            return Ok((String::new(), None));
        }
        let turn = self
            .inner
            .conversation
            .send_text_with_images(text.clone(), images, origin.to_owned())
            .await?;
        self.inner.bus.emit(Event::Transcript {
            text: text.clone(),
            turn_id: Some(turn.0),
            asr_ms,
        });
        Ok((text, Some(turn)))
    }

    /// Stops the character now: the speaker first (that is what the user hears), then
    /// the turn.
    pub fn barge_in(&self) {
        if let Some(p) = &self.inner.speech.player {
            p.stop();
        }
        let conversation = self.inner.conversation.clone();
        tokio::spawn(async move {
            let _ = conversation.interrupt().await;
        });
    }
}

/// Engines and devices made before the conversation exists.
pub struct PreparedInput {
    config: Config,
    paths: ModelPaths,
    asr: Asr,
    speech: SpeechOut,
    devices: AudioDevices,
}

impl PreparedInput {
    /// Starts voice input into `conversation`.
    pub fn attach(self, conversation: Conversation, bus: EventBus) -> VoiceInput {
        let PreparedInput {
            config,
            paths,
            asr,
            speech,
            mut devices,
        } = self;
        let (tx, rx) = mpsc::channel::<Input>(512);
        let input_device = devices.microphone.as_ref().map(|m| m.name().to_owned());
        let mic_rate = devices.microphone.as_ref().map(|m| m.sample_rate());
        // Echo cancellation needs the speaker's signal and both ends at 48 kHz.
        let mut echo_state = "off".to_owned();
        let mut canceller = None;
        if config.audio.echo_cancellation {
            match (&speech.player, mic_rate) {
                (Some(p), Some(rate))
                    if rate == sound::DEVICE_RATE && p.sample_rate() == sound::DEVICE_RATE =>
                {
                    match sound::echo::EchoCanceller::new() {
                        Ok(c) => {
                            p.set_tap(c.far_end_tap());
                            canceller = Some(c);
                            echo_state = "webrtc".into();
                        }
                        Err(e) => echo_state = format!("unavailable: {e}"),
                    }
                }
                (_, None) => echo_state = "off (no microphone)".into(),
                (None, _) => echo_state = "off (no local playback)".into(),
                _ => echo_state = "off (devices are not at 48 kHz)".into(),
            }
        }
        let listening = config.audio.listen_on_start && input_device.is_some();
        let voice = VoiceInput {
            inner: Arc::new(Inner {
                conversation: conversation.clone(),
                bus: bus.clone(),
                asr,
                speech,
                barge_in: config.audio.barge_in,
                audio_status: devices.status.clone(),
                input_device,
                echo: echo_state,
                listening: AtomicBool::new(listening),
                push_to_talk: AtomicBool::new(false),
                vad_load: Mutex::new(ModelLoad::Loading),
                input: tx.clone(),
            }),
        };
        conversation.set_listening(listening);
        if let Some(mic) = devices.microphone.as_mut()
            && let Some(mut blocks) = mic.take_blocks()
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(b) = blocks.recv().await {
                    if tx.send(Input::Device(b)).await.is_err() {
                        break;
                    }
                }
            });
        }
        let microphone = devices.microphone.take();
        let settings = SegmenterSettings {
            threshold: config.speech.vad.threshold,
            min_speech_ms: config.speech.vad.min_speech_ms,
            min_silence_ms: config.speech.vad.min_silence_ms,
            pre_roll_ms: config.speech.vad.pre_roll_ms,
            max_utterance_ms: config.speech.vad.max_utterance_secs.saturating_mul(1000),
        };
        let worker = InputWorker {
            voice: voice.clone(),
            runtime: tokio::runtime::Handle::current(),
            vad_path: paths.vad.clone(),
            onnxruntime: paths.onnxruntime.clone(),
            settings,
            mic_rate: mic_rate.unwrap_or(sound::DEVICE_RATE),
            canceller,
            _microphone: microphone,
        };
        if let Err(e) = std::thread::Builder::new()
            .name("voice-in".into())
            .spawn(move || worker.run(rx))
        {
            tracing::error!("cannot start the voice input thread: {e}");
        }
        // Load the current character's voice before its first sentence.
        let v = voice.clone();
        tokio::spawn(async move {
            let voice = v.inner.conversation.view().voice;
            v.inner.speech.tts.preload(&voice).await;
            v.announce();
        });
        voice
    }
}

/// Whisper writes these for silence or noise; they are not something the user said.
fn is_blank_transcript(text: &str) -> bool {
    let t = text
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_ascii_lowercase();
    t.is_empty()
        || matches!(
            t.as_str(),
            "blank_audio" | "silence" | "music" | "inaudible"
        )
}

fn barge_in_str(b: BargeIn) -> &'static str {
    match b {
        BargeIn::Off => "off",
        BargeIn::Voice => "voice",
        BargeIn::PushToTalk => "push_to_talk",
    }
}

fn playback_str(p: Playback) -> &'static str {
    match p {
        Playback::Local => "local",
        Playback::Clients => "clients",
        Playback::Both => "both",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_transcripts_are_recognised() {
        assert!(is_blank_transcript(" [BLANK_AUDIO] "));
        assert!(is_blank_transcript("..."));
        assert!(is_blank_transcript("(music)"));
        assert!(!is_blank_transcript("Hello."));
    }
}
