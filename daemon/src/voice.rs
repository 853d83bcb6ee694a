//! Voice input: the daemon's microphone and audio streamed by clients go through voice
//! activity detection; finished utterances are transcribed and become turns, and speech
//! that starts while the character talks interrupts it (barge-in).
//!
//! One thread owns the VAD models (one detector state per audio source) and does the
//! per-frame work; transcription runs on the ASR engine's own thread, and everything
//! that touches the stage goes back to the async runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use vtuber_shared::{EngineStatus, ErrorBody, ErrorCode, Event, ModelLoad, VoiceStatus};

use crate::config::{BargeIn, Config, Playback};
use crate::events::EventBus;
use crate::pcm::{Pcm, StreamResampler};
use crate::sound::{self, AudioDevices, Player};
use crate::speech::engines::{Asr, ModelPaths, Tts};
use crate::speech::vad::{Segmenter, SegmenterSettings, SileroVad, VadEvent};
use crate::speech::{INPUT_RATE, SpeechError};
use crate::stage::Stage;

/// Where audio came from; each source has its own detector state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The daemon's microphone.
    Device,
    /// A client streaming audio (browser microphone, scripts), by connection id.
    Client(u64),
}

enum Input {
    /// Microphone block at the device rate.
    Device(Vec<f32>),
    /// 16 kHz samples from a client.
    Client(u64, Vec<f32>),
    /// The client's utterance is complete (browser `mic-audio-end`): close it now.
    ClientEnd(u64),
    ClientGone(u64),
    PushToTalk(bool),
}

/// Handle to voice input and the speech engines; cheap to clone.
#[derive(Clone)]
pub struct Voice {
    inner: Arc<Inner>,
}

struct Inner {
    stage: Stage,
    bus: EventBus,
    asr: Asr,
    tts: Tts,
    player: Option<Player>,
    playback: Playback,
    barge_in: BargeIn,
    audio_status: String,
    input_device: Option<String>,
    echo: String,
    listening: AtomicBool,
    push_to_talk: AtomicBool,
    vad_load: Mutex<ModelLoad>,
    input: mpsc::Sender<Input>,
}

/// What the stage needs to speak replies.
#[derive(Clone)]
pub struct SpeechOut {
    pub tts: Tts,
    pub player: Option<Player>,
    pub playback: Playback,
}

impl Voice {
    /// Opens devices and starts loading engines; returns at once. `None` when speech is
    /// disabled in the config. The stage is attached with [`Voice::attach`].
    pub fn prepare(config: &Config) -> Result<Option<(SpeechOut, PreparedVoice)>, SpeechError> {
        if !config.speech.enabled {
            return Ok(None);
        }
        let paths = ModelPaths::new(&config.speech);
        let asr = Asr::new(&config.speech, &paths)?;
        let tts = Tts::new(&config.speech, &paths)?;
        let devices = sound::open(&config.audio);
        let out = SpeechOut {
            tts: tts.clone(),
            // Replies play on the daemon's speaker unless they are for clients only.
            player: match config.audio.playback {
                Playback::Clients => None,
                _ => devices.player.clone(),
            },
            playback: config.audio.playback,
        };
        let player = out.player.clone();
        Ok(Some((
            out,
            PreparedVoice {
                config: config.clone(),
                paths,
                asr,
                tts,
                player,
                devices,
            },
        )))
    }

    pub fn status(&self) -> VoiceStatus {
        let i = &self.inner;
        let voice = i.stage.view().voice;
        VoiceStatus {
            audio: i.audio_status.clone(),
            input_device: i.input_device.clone(),
            output_device: i.player.as_ref().map(|p| p.name().to_owned()),
            listening: i.listening.load(Ordering::SeqCst),
            push_to_talk: i.push_to_talk.load(Ordering::SeqCst),
            barge_in: barge_in_str(i.barge_in).into(),
            playback: playback_str(i.playback).into(),
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
            tts: i.tts.status(&voice),
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
        self.inner.stage.set_listening(on);
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

    /// The client says its utterance is complete (it did its own voice detection).
    pub fn stream_end(&self, client: u64) {
        let _ = self.inner.input.try_send(Input::ClientEnd(client));
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

    /// Transcribes a whole utterance and starts a turn with it, as if spoken.
    pub async fn utterance(
        &self,
        pcm: Pcm,
        origin: &str,
    ) -> Result<(String, Option<(u64, i64)>), ErrorBody> {
        if pcm.samples.is_empty() {
            return Err(
                ErrorBody::new(ErrorCode::InvalidArgument, "the audio is empty")
                    .with_hint("record at least a word"),
            );
        }
        let pcm16 = pcm
            .resampled(INPUT_RATE)
            .map_err(|e| speech_error(e.into()))?;
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
            .stage
            .send_text(text.clone(), origin.to_owned())
            .await?;
        self.inner.bus.emit(Event::Transcript {
            text: text.clone(),
            turn_id: Some(turn.0),
            asr_ms,
        });
        Ok((text, Some(turn)))
    }

    /// `text` in the current character's voice.
    pub async fn speak(&self, text: &str) -> Result<Pcm, ErrorBody> {
        let voice = self.inner.stage.view().voice;
        let clean = crate::speech::text::clean_for_speech(
            &crate::speech::text::extract_expressions(text, &Default::default()).0,
            &voice.clean,
        );
        if clean.trim().is_empty() {
            return Err(ErrorBody::new(ErrorCode::InvalidArgument, "nothing to say")
                .with_hint("give some words; markup, code and tags are not read aloud"));
        }
        self.inner
            .tts
            .synthesize(&clean, &voice)
            .await
            .map_err(speech_error)
    }

    /// Stops the character now: the speaker first (that is what the user hears), then
    /// the turn.
    pub fn barge_in(&self) {
        if let Some(p) = &self.inner.player {
            p.stop();
        }
        let stage = self.inner.stage.clone();
        tokio::spawn(async move {
            let _ = stage.interrupt().await;
        });
    }

    pub fn tts(&self) -> &Tts {
        &self.inner.tts
    }

    pub fn player(&self) -> Option<&Player> {
        self.inner.player.as_ref()
    }
}

/// Engines and devices made before the stage exists.
pub struct PreparedVoice {
    config: Config,
    paths: ModelPaths,
    asr: Asr,
    tts: Tts,
    /// The speaker replies play on ([`SpeechOut::player`]).
    player: Option<Player>,
    devices: AudioDevices,
}

impl PreparedVoice {
    /// Starts voice input for `stage`.
    pub fn attach(self, stage: Stage, bus: EventBus) -> Voice {
        let PreparedVoice {
            config,
            paths,
            asr,
            tts,
            player,
            mut devices,
        } = self;
        let (tx, rx) = mpsc::channel::<Input>(512);
        let input_device = devices.microphone.as_ref().map(|m| m.name().to_owned());
        let mic_rate = devices.microphone.as_ref().map(|m| m.sample_rate());
        // Echo cancellation needs the speaker's signal and both ends at 48 kHz.
        let mut echo_state = "off".to_owned();
        let mut canceller = None;
        if config.audio.echo_cancellation {
            match (&player, mic_rate) {
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
        let voice = Voice {
            inner: Arc::new(Inner {
                stage: stage.clone(),
                bus: bus.clone(),
                asr,
                tts,
                player,
                playback: config.audio.playback,
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
        stage.set_listening(listening);
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
            let voice = v.inner.stage.view().voice;
            v.inner.tts.preload(&voice).await;
            v.announce();
        });
        voice
    }
}

/// The voice-input thread's state.
struct InputWorker {
    voice: Voice,
    runtime: tokio::runtime::Handle,
    vad_path: std::path::PathBuf,
    onnxruntime: Option<std::path::PathBuf>,
    settings: SegmenterSettings,
    mic_rate: u32,
    canceller: Option<sound::echo::EchoCanceller>,
    _microphone: Option<sound::Microphone>,
}

struct SourceState {
    vad: SileroVad,
    segmenter: Segmenter,
}

impl InputWorker {
    fn new_source(&self) -> Result<SourceState, SpeechError> {
        Ok(SourceState {
            vad: SileroVad::load(&self.vad_path)?,
            segmenter: Segmenter::new(self.settings.clone()),
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let loaded = crate::speech::onnx::init_runtime(self.onnxruntime.as_deref())
            .and_then(|_| self.new_source());
        let mut device = match loaded {
            Ok(s) => {
                self.set_vad_load(ModelLoad::Ready);
                Some(s)
            }
            Err(e) => {
                tracing::warn!("voice detection unavailable: {e} ({})", e.hint());
                self.set_vad_load(ModelLoad::Failed {
                    reason: format!("{e} ({})", e.hint()),
                });
                None
            }
        };
        self.voice.announce();
        let mut clients: HashMap<u64, SourceState> = HashMap::new();
        let mut resampler = StreamResampler::new(self.mic_rate, INPUT_RATE);
        let mut ptt_buffer: Option<Vec<f32>> = None;
        let mut level = LevelMeter::default();
        while let Some(input) = rx.blocking_recv() {
            match input {
                Input::Device(block) => {
                    let block = match self.canceller.as_mut() {
                        Some(c) => c.process(&block),
                        None => block,
                    };
                    let samples = match resampler.as_mut() {
                        Some(r) => r.push(&block),
                        None => block,
                    };
                    let listening = self.voice.inner.listening.load(Ordering::SeqCst);
                    if let Some(buf) = ptt_buffer.as_mut() {
                        buf.extend_from_slice(&samples);
                    }
                    if (listening || ptt_buffer.is_some())
                        && let Some(l) = level.push(&samples)
                    {
                        self.voice.inner.bus.emit(Event::InputLevel { level: l });
                    }
                    if listening
                        && ptt_buffer.is_none()
                        && let Some(src) = device.as_mut()
                    {
                        self.detect(Source::Device, src, &samples);
                    }
                }
                Input::PushToTalk(true) => {
                    ptt_buffer = Some(Vec::new());
                    if let Some(src) = device.as_mut() {
                        src.segmenter.reset();
                    }
                }
                Input::PushToTalk(false) => {
                    if let Some(buf) = ptt_buffer.take() {
                        self.finish_utterance(Source::Device, buf);
                    }
                }
                Input::Client(id, samples) => {
                    let src = match clients.entry(id) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => match self.new_source() {
                            Ok(s) => e.insert(s),
                            Err(err) => {
                                tracing::warn!("voice detection for client {id}: {err}");
                                continue;
                            }
                        },
                    };
                    self.detect(Source::Client(id), src, &samples);
                }
                Input::ClientEnd(id) => {
                    if let Some(src) = clients.get_mut(&id)
                        && let Some(VadEvent::SpeechEnd { utterance, .. }) = src.segmenter.flush()
                    {
                        self.voice
                            .inner
                            .bus
                            .emit(Event::VoiceActivity { speaking: false });
                        self.finish_utterance(Source::Client(id), utterance);
                    }
                }
                Input::ClientGone(id) => {
                    clients.remove(&id);
                }
            }
        }
    }

    fn set_vad_load(&self, load: ModelLoad) {
        if let Ok(mut l) = self.voice.inner.vad_load.lock() {
            *l = load;
        }
    }

    fn detect(&self, source: Source, src: &mut SourceState, samples: &[f32]) {
        let events = match src.segmenter.push(&mut src.vad, samples) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("voice detection failed: {e}");
                return;
            }
        };
        for ev in events {
            match ev {
                VadEvent::SpeechStart { .. } => {
                    let inner = &self.voice.inner;
                    inner.bus.emit(Event::VoiceActivity { speaking: true });
                    let _guard = self.runtime.enter();
                    if inner.barge_in == BargeIn::Voice && inner.stage.is_busy() {
                        self.voice.barge_in();
                    }
                    inner.stage.set_hearing(true);
                }
                VadEvent::SpeechEnd { utterance, .. } => {
                    self.voice
                        .inner
                        .bus
                        .emit(Event::VoiceActivity { speaking: false });
                    self.finish_utterance(source, utterance);
                }
            }
        }
    }

    fn finish_utterance(&self, source: Source, samples: Vec<f32>) {
        let voice = self.voice.clone();
        self.runtime.spawn(async move {
            voice.inner.stage.set_hearing(false);
            if samples.is_empty() {
                return;
            }
            let origin = match source {
                Source::Device => "voice".to_owned(),
                Source::Client(id) => format!("voice:{id}"),
            };
            let started = Instant::now();
            match voice.utterance(Pcm::new(samples, INPUT_RATE), &origin).await {
                Ok((text, _)) => {
                    tracing::debug!(ms = started.elapsed().as_millis() as u64, %text, "utterance transcribed");
                }
                Err(e) => {
                    tracing::warn!("utterance: {e}");
                    voice.inner.bus.emit(Event::Error { error: e });
                }
            }
        });
    }
}

/// Level events about ten times a second: RMS mapped from −60..0 dBFS to 0..1.
#[derive(Default)]
struct LevelMeter {
    sum_sq: f64,
    count: usize,
}

impl LevelMeter {
    const WINDOW: usize = (INPUT_RATE / 10) as usize;

    fn push(&mut self, samples: &[f32]) -> Option<f32> {
        for &s in samples {
            self.sum_sq += f64::from(s) * f64::from(s);
        }
        self.count += samples.len();
        if self.count < Self::WINDOW {
            return None;
        }
        let rms = (self.sum_sq / self.count as f64).sqrt();
        self.sum_sq = 0.0;
        self.count = 0;
        let db = 20.0 * rms.max(1e-9).log10();
        Some((((db + 60.0) / 60.0).clamp(0.0, 1.0)) as f32)
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

pub fn speech_error(e: SpeechError) -> ErrorBody {
    let code = match &e {
        SpeechError::BadAudio(_) => ErrorCode::InvalidArgument,
        _ => ErrorCode::Model,
    };
    ErrorBody::new(code, e.to_string()).with_hint(e.hint())
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

    #[test]
    fn level_meter_maps_decibels() {
        let mut m = LevelMeter::default();
        assert_eq!(m.push(&vec![0.0; 100]), None);
        let l = m.push(&vec![0.0; 2000]).expect("a level");
        assert_eq!(l, 0.0);
        let l = m.push(&vec![0.5; 1600]).expect("a level");
        assert!((l - (1.0 - 6.02 / 60.0)).abs() < 0.01, "{l}");
    }
}
