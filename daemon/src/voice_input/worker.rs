//! The voice-input thread: per-source voice detection (the daemon's microphone, each
//! streaming client), push-to-talk, echo cancellation and input levels; finished
//! utterances go back to the async runtime to be transcribed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;
use vtuber_shared::{Event, ModelLoad};

use super::VoiceInput;
use crate::config::BargeIn;
use crate::pcm::Pcm;
use crate::pcm::StreamResampler;
use crate::sound;
use crate::speech::vad::{Segmenter, SegmenterSettings, SileroVad, VadEvent};
use crate::speech::{INPUT_RATE, SpeechError};

/// Where audio came from; each source has its own detector state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// The daemon's microphone.
    Device,
    /// A client streaming audio (browser microphone, scripts), by connection id.
    Client(u64),
}

pub(super) enum Input {
    /// Microphone block at the device rate.
    Device(Vec<f32>),
    /// 16 kHz samples from a client.
    Client(u64, Vec<f32>),
    /// The client's utterance is complete (browser `mic-audio-end`): close it now.
    ClientEnd(u64, Vec<vtuber_shared::ImageInput>),
    ClientGone(u64),
    PushToTalk(bool),
}

/// The voice-input thread's state.
pub(super) struct InputWorker {
    pub(super) voice: VoiceInput,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) vad_path: std::path::PathBuf,
    pub(super) onnxruntime: Option<std::path::PathBuf>,
    pub(super) settings: SegmenterSettings,
    pub(super) mic_rate: u32,
    pub(super) canceller: Option<sound::echo::EchoCanceller>,
    pub(super) _microphone: Option<sound::Microphone>,
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

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Input>) {
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
                        self.finish_utterance(Source::Device, buf, Vec::new());
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
                Input::ClientEnd(id, images) => {
                    if let Some(src) = clients.get_mut(&id)
                        && let Some(VadEvent::SpeechEnd { utterance, .. }) = src.segmenter.flush()
                    {
                        self.voice
                            .inner
                            .bus
                            .emit(Event::VoiceActivity { speaking: false });
                        self.finish_utterance(Source::Client(id), utterance, images);
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
                    if inner.barge_in == BargeIn::Voice && inner.conversation.is_busy() {
                        self.voice.barge_in();
                    }
                    inner.conversation.set_hearing(true);
                }
                VadEvent::SpeechEnd { utterance, .. } => {
                    self.voice
                        .inner
                        .bus
                        .emit(Event::VoiceActivity { speaking: false });
                    self.finish_utterance(source, utterance, Vec::new());
                }
            }
        }
    }

    fn finish_utterance(
        &self,
        source: Source,
        samples: Vec<f32>,
        images: Vec<vtuber_shared::ImageInput>,
    ) {
        let voice = self.voice.clone();
        self.runtime.spawn(async move {
            voice.inner.conversation.set_hearing(false);
            if samples.is_empty() {
                return;
            }
            let origin = match source {
                Source::Device => "voice".to_owned(),
                Source::Client(id) => format!("voice:{id}"),
            };
            let started = Instant::now();
            match voice
                .utterance(Pcm::new(samples, INPUT_RATE), &origin, images)
                .await {
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

#[cfg(test)]
mod tests {
    use super::*;

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
