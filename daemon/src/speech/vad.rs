//! Voice activity detection: Silero VAD (v5/v6 ONNX) and a segmenter that turns a stream
//! of 16 kHz audio into utterances.
//!
//! The segmenter announces [`VadEvent::SpeechStart`] as soon as speech is confirmed, so the
//! daemon can stop the character talking over the user (barge-in), and hands over the whole
//! utterance at [`VadEvent::SpeechEnd`] for speech recognition.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::Tensor;

use super::{INPUT_RATE, SpeechError, onnx};

const WHAT: &str = "Silero VAD model";
const MISSING_HINT: &str = "run scripts/fetch-model.sh --only vad";
/// Samples of the previous frame that v5/v6 models expect in front of each frame at 16 kHz.
const CONTEXT: usize = 64;
/// Size of the recurrent state, `[2, 1, 128]`.
const STATE_LEN: usize = 2 * 128;

/// Silero VAD: speech probability for each 32 ms frame of 16 kHz audio. The model is
/// recurrent, so frames must be fed in order; [`SileroVad::reset`] between streams.
pub struct SileroVad {
    session: Session,
    state: Vec<f32>,
    /// `CONTEXT` samples carried from the previous frame, then the current frame.
    input: Vec<f32>,
    sr: Tensor<i64>,
    path: PathBuf,
}

impl SileroVad {
    /// Samples per frame at 16 kHz (32 ms), the only size the model is run with.
    pub const FRAME: usize = 512;

    /// Loads the model (one intra-op thread: a frame is far too small to split).
    pub fn load(model: &Path) -> Result<Self, SpeechError> {
        if !model.is_file() {
            return Err(SpeechError::Missing {
                what: WHAT,
                path: model.to_path_buf(),
                hint: MISSING_HINT.into(),
            });
        }
        let session = onnx::session(model, WHAT, 1)?;
        let names = onnx::input_names(&session);
        let load_error = |reason: String| SpeechError::Load {
            what: WHAT,
            path: model.to_path_buf(),
            reason,
        };
        for want in ["input", "state", "sr"] {
            if !names.iter().any(|n| n == want) {
                return Err(load_error(format!(
                    "not a Silero VAD v5/v6 model: no `{want}` input ({})",
                    onnx::describe_io(&session)
                )));
            }
        }
        let sr = Tensor::from_array(((), vec![i64::from(INPUT_RATE)]))
            .map_err(|e| load_error(e.to_string()))?;
        tracing::debug!(path = %model.display(), io = %onnx::describe_io(&session), "loaded Silero VAD");
        Ok(Self {
            session,
            state: vec![0.0; STATE_LEN],
            input: vec![0.0; CONTEXT + Self::FRAME],
            sr,
            path: model.to_path_buf(),
        })
    }

    /// Speech probability (0..1) of the next [`Self::FRAME`] samples of 16 kHz audio.
    pub fn probability(&mut self, frame: &[f32]) -> Result<f32, SpeechError> {
        if frame.len() != Self::FRAME {
            return Err(SpeechError::BadAudio(format!(
                "VAD frames are {} samples, got {}",
                Self::FRAME,
                frame.len()
            )));
        }
        self.input[CONTEXT..].copy_from_slice(frame);
        let fail = |e: ort::Error| SpeechError::inference("voice activity detection", e);
        let input = Tensor::from_array(([1usize, CONTEXT + Self::FRAME], self.input.clone()))
            .map_err(fail)?;
        let state = Tensor::from_array(([2usize, 1, 128], self.state.clone())).map_err(fail)?;
        let outputs = self
            .session
            .run(ort::inputs! {
                "input" => input,
                "state" => state,
                "sr" => &self.sr,
            })
            .map_err(fail)?;
        let missing = |name: &str| {
            SpeechError::inference(
                "voice activity detection",
                format!("model returned no `{name}` output"),
            )
        };
        let (_, prob) = outputs
            .get("output")
            .ok_or_else(|| missing("output"))?
            .try_extract_tensor::<f32>()
            .map_err(fail)?;
        let p = prob.first().copied().ok_or_else(|| missing("output"))?;
        let (_, state) = outputs
            .get("stateN")
            .ok_or_else(|| missing("stateN"))?
            .try_extract_tensor::<f32>()
            .map_err(fail)?;
        if state.len() == STATE_LEN {
            self.state.copy_from_slice(state);
        }
        drop(outputs);
        // The next frame sees the tail of this one, as Silero's own wrapper does.
        self.input.copy_within(Self::FRAME.., 0);
        Ok(p)
    }

    /// Forgets the audio seen so far (start of a new stream).
    pub fn reset(&mut self) {
        self.state.fill(0.0);
        self.input.fill(0.0);
    }

    pub fn model_path(&self) -> &Path {
        &self.path
    }
}

/// Tuning for [`Segmenter`]. Durations are in milliseconds of audio.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmenterSettings {
    /// Speech probability at which speech starts; it ends below `threshold − 0.15`.
    pub threshold: f32,
    /// Speech must last this long before it counts (filters clicks and coughs).
    pub min_speech_ms: u32,
    /// Silence that ends an utterance (the end of the user's turn).
    pub min_silence_ms: u32,
    /// Audio kept before the detected start (and after the detected end) so the first and
    /// last sounds of the utterance are not clipped.
    pub pre_roll_ms: u32,
    /// Longer speech is cut into several utterances.
    pub max_utterance_ms: u32,
}

impl Default for SegmenterSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 600,
            pre_roll_ms: 300,
            max_utterance_ms: 30_000,
        }
    }
}

/// What the segmenter found. Sample positions count 16 kHz samples since the segmenter was
/// created or reset.
#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// Speech was confirmed; it began at `at_sample` (not counting pre-roll). Sent as soon
    /// as it is known, before the utterance ends.
    SpeechStart { at_sample: u64 },
    /// An utterance ended. `utterance` is exactly the input from `start_sample` to
    /// `end_sample`, pre-roll and trailing padding included.
    SpeechEnd {
        utterance: Vec<f32>,
        start_sample: u64,
        end_sample: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Silence,
    /// A frame crossed the threshold at `onset`; waiting for `min_speech_ms` of it.
    Candidate {
        onset: u64,
    },
    /// In an utterance whose audio starts at `start`; `silence` is where the current run of
    /// non-speech frames began, if one is running.
    Speech {
        start: u64,
        silence: Option<u64>,
    },
}

/// Turns arbitrary-length chunks of 16 kHz audio into speech start/end events, with
/// hysteresis like Silero's `VADIterator`. Memory stays bounded: while nobody speaks only
/// the pre-roll window is kept; an utterance is capped by `max_utterance_ms`.
pub struct Segmenter {
    settings: SegmenterSettings,
    state: State,
    /// Samples not yet making up a whole frame.
    pending: Vec<f32>,
    /// Recent audio outside an utterance (pre-roll and a speech candidate), bounded.
    ring: VecDeque<f32>,
    /// Audio of the current utterance.
    utterance: Vec<f32>,
    /// Samples run through the VAD so far (the position of the next frame).
    position: u64,
    last_probability: f32,
}

impl Segmenter {
    pub fn new(settings: SegmenterSettings) -> Self {
        Self {
            settings,
            state: State::Silence,
            pending: Vec::with_capacity(SileroVad::FRAME),
            ring: VecDeque::new(),
            utterance: Vec::new(),
            position: 0,
            last_probability: 0.0,
        }
    }

    pub fn settings(&self) -> &SegmenterSettings {
        &self.settings
    }

    /// Feeds audio; returns the events it completed, in order.
    pub fn push(
        &mut self,
        vad: &mut SileroVad,
        samples: &[f32],
    ) -> Result<Vec<VadEvent>, SpeechError> {
        self.push_with(samples, |frame| vad.probability(frame))
    }

    /// [`Segmenter::push`] with any frame classifier (tests drive the state machine with
    /// scripted probabilities).
    fn push_with(
        &mut self,
        mut samples: &[f32],
        mut probability: impl FnMut(&[f32]) -> Result<f32, SpeechError>,
    ) -> Result<Vec<VadEvent>, SpeechError> {
        let mut events = Vec::new();
        let frame_len = SileroVad::FRAME;
        if !self.pending.is_empty() {
            let take = (frame_len - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() < frame_len {
                return Ok(events);
            }
            let frame = std::mem::take(&mut self.pending);
            let p = probability(&frame)?;
            self.step(&frame, p, &mut events);
            self.pending = frame;
            self.pending.clear();
        }
        let mut frames = samples.chunks_exact(frame_len);
        for frame in frames.by_ref() {
            let p = probability(frame)?;
            self.step(frame, p, &mut events);
        }
        self.pending.extend_from_slice(frames.remainder());
        Ok(events)
    }

    /// End of input: closes an open utterance (with the unclassified tail of the audio).
    /// A speech candidate too short to count is dropped. Positions keep counting.
    pub fn flush(&mut self) -> Option<VadEvent> {
        let tail = std::mem::take(&mut self.pending);
        let tail_end = self.position + tail.len() as u64;
        let event = match self.state {
            State::Speech { start, silence } => {
                self.utterance.extend_from_slice(&tail);
                let end = match silence {
                    Some(s) => (s + self.samples(self.settings.pre_roll_ms)).min(tail_end),
                    None => tail_end,
                };
                Some(self.finish(start, end))
            }
            State::Silence | State::Candidate { .. } => None,
        };
        self.position = tail_end;
        self.state = State::Silence;
        self.ring.clear();
        self.utterance = Vec::new();
        event
    }

    /// Back to the start: no utterance, positions from zero. (Reset the VAD too.)
    pub fn reset(&mut self) {
        self.state = State::Silence;
        self.pending.clear();
        self.ring.clear();
        self.utterance = Vec::new();
        self.position = 0;
        self.last_probability = 0.0;
    }

    /// Whether an utterance is open (speech confirmed, end not yet found).
    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Speech probability of the last frame (for level meters and logs).
    pub fn last_probability(&self) -> f32 {
        self.last_probability
    }

    /// Samples held in memory (outside the current utterance), for diagnostics.
    pub fn buffered_samples(&self) -> usize {
        self.ring.len() + self.pending.len()
    }

    fn samples(&self, ms: u32) -> u64 {
        u64::from(ms) * u64::from(INPUT_RATE) / 1000
    }

    /// Longest stretch the ring must hold: pre-roll before a candidate plus the candidate.
    fn ring_capacity(&self) -> usize {
        (self.samples(self.settings.pre_roll_ms) + self.samples(self.settings.min_speech_ms))
            as usize
            + SileroVad::FRAME
    }

    /// Advances the state machine by one classified frame.
    fn step(&mut self, frame: &[f32], p: f32, events: &mut Vec<VadEvent>) {
        self.last_probability = p;
        let frame_start = self.position;
        let frame_end = frame_start + frame.len() as u64;
        self.position = frame_end;
        let threshold = self.settings.threshold;
        let low = (threshold - 0.15).max(0.01);
        let min_speech = self.samples(self.settings.min_speech_ms);

        match self.state {
            State::Silence | State::Candidate { .. } => {
                self.ring.extend(frame);
                let overflow = self.ring.len().saturating_sub(self.ring_capacity());
                self.ring.drain(..overflow);
                let onset = match self.state {
                    State::Candidate { onset } if p >= low => Some(onset),
                    State::Silence if p >= threshold => Some(frame_start),
                    _ => None,
                };
                self.state = match onset {
                    Some(onset) if frame_end - onset >= min_speech => {
                        self.start_utterance(onset);
                        events.push(VadEvent::SpeechStart { at_sample: onset });
                        self.state
                    }
                    Some(onset) => State::Candidate { onset },
                    None => State::Silence,
                };
            }
            State::Speech { start, silence } => {
                self.utterance.extend_from_slice(frame);
                let silence = if p >= threshold {
                    None
                } else if p < low {
                    silence.or(Some(frame_start))
                } else {
                    silence
                };
                let max_len = self
                    .samples(self.settings.max_utterance_ms)
                    .max(frame.len() as u64);
                let min_silence = self.samples(self.settings.min_silence_ms);
                match silence {
                    Some(s) if frame_end - s >= min_silence || frame_end - start >= max_len => {
                        let end = (s + self.samples(self.settings.pre_roll_ms)).min(frame_end);
                        events.push(self.finish(start, end));
                        self.state = State::Silence;
                    }
                    None if frame_end - start >= max_len => {
                        // Still talking at the cap: cut here and carry on in a new utterance.
                        events.push(self.finish(start, frame_end));
                        events.push(VadEvent::SpeechStart {
                            at_sample: frame_end,
                        });
                        self.state = State::Speech {
                            start: frame_end,
                            silence: None,
                        };
                    }
                    _ => self.state = State::Speech { start, silence },
                }
            }
        }
    }

    /// Moves the candidate and its pre-roll from the ring into a new utterance.
    fn start_utterance(&mut self, onset: u64) {
        let ring_start = self.position - self.ring.len() as u64;
        let start = onset
            .saturating_sub(self.samples(self.settings.pre_roll_ms))
            .max(ring_start);
        self.ring.drain(..(start - ring_start) as usize);
        self.utterance = self.ring.drain(..).collect();
        self.state = State::Speech {
            start,
            silence: None,
        };
    }

    /// Ends the utterance at `end`; audio after it goes back to the ring as pre-roll for
    /// the next one.
    fn finish(&mut self, start: u64, end: u64) -> VadEvent {
        let keep = (end.saturating_sub(start) as usize).min(self.utterance.len());
        let after = self.utterance.split_off(keep);
        let utterance = std::mem::take(&mut self.utterance);
        self.ring.clear();
        self.ring.extend(after);
        let end_sample = start + utterance.len() as u64;
        VadEvent::SpeechEnd {
            utterance,
            start_sample: start,
            end_sample,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcm::{resample, rms};
    use crate::speech::espeak::EspeakTts;

    fn model_path() -> PathBuf {
        vtuber_shared::paths::models_dir().join("silero_vad.onnx")
    }

    /// Tests need the real model and runtime; CI installs them, so missing means broken.
    fn load_vad() -> SileroVad {
        if let Err(e) = onnx::init_runtime(None) {
            panic!("ONNX Runtime missing ({e}); run scripts/setup.sh");
        }
        match SileroVad::load(&model_path()) {
            Ok(v) => v,
            Err(e) => panic!("Silero VAD unavailable ({e}); run scripts/setup.sh"),
        }
    }

    fn settings(pre_roll_ms: u32) -> SegmenterSettings {
        SegmenterSettings {
            pre_roll_ms,
            ..SegmenterSettings::default()
        }
    }

    /// Feeds `audio` in uneven chunks (as a microphone would) and collects all events.
    fn run(seg: &mut Segmenter, vad: &mut SileroVad, audio: &[f32]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        for chunk in audio.chunks(1234) {
            events.extend(seg.push(vad, chunk).expect("vad runs"));
        }
        events.extend(seg.flush());
        events
    }

    /// 1 s silence + espeak speech + 1 s silence at 16 kHz, with the true speech bounds
    /// (measured from 10 ms energy).
    fn speech_clip() -> (Vec<f32>, u64, u64) {
        let tts = EspeakTts::default();
        let pcm = match tts.synthesize("Hello there, this is a test of the voice detector.") {
            Ok(p) => p,
            Err(e) => panic!("espeak-ng unavailable ({e}); run scripts/setup.sh"),
        };
        let speech = resample(&pcm.samples, pcm.sample_rate, INPUT_RATE).expect("resample");
        let pad = INPUT_RATE as usize;
        let mut clip = vec![0.0; pad];
        clip.extend_from_slice(&speech);
        clip.extend(std::iter::repeat_n(0.0, pad));
        let win = 160;
        let loud: Vec<usize> = clip
            .chunks(win)
            .enumerate()
            .filter(|(_, c)| rms(c) > 0.01)
            .map(|(i, _)| i)
            .collect();
        let first = *loud.first().expect("speech has energy") as u64 * win as u64;
        let last = (*loud.last().expect("speech has energy") as u64 + 1) * win as u64;
        (clip, first, last)
    }

    #[test]
    fn missing_model_is_reported() {
        let err = SileroVad::load(Path::new("/nonexistent/silero_vad.onnx"))
            .err()
            .expect("missing");
        assert!(
            matches!(err, SpeechError::Missing { what: WHAT, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_frame_size_is_bad_audio() {
        let mut vad = load_vad();
        assert!(matches!(
            vad.probability(&[0.0; 100]),
            Err(SpeechError::BadAudio(_))
        ));
    }

    #[test]
    fn finds_one_utterance_within_bounds() {
        let mut vad = load_vad();
        let (clip, first, last) = speech_clip();
        let mut seg = Segmenter::new(settings(0));
        let events = run(&mut seg, &mut vad, &clip);
        let tol = 150 * u64::from(INPUT_RATE) / 1000;
        let (starts, ends): (Vec<_>, Vec<_>) = events
            .iter()
            .partition(|e| matches!(e, VadEvent::SpeechStart { .. }));
        assert_eq!((starts.len(), ends.len()), (1, 1), "{events:?}");
        let VadEvent::SpeechStart { at_sample } = starts[0] else {
            unreachable!()
        };
        let VadEvent::SpeechEnd {
            utterance,
            start_sample,
            end_sample,
        } = ends[0]
        else {
            unreachable!()
        };
        eprintln!("true {first}..{last}, found {start_sample}..{end_sample}");
        assert_eq!(*at_sample, *start_sample);
        assert!(
            first.abs_diff(*start_sample) <= tol,
            "start {start_sample} vs {first}"
        );
        assert!(
            last.abs_diff(*end_sample) <= tol,
            "end {end_sample} vs {last}"
        );
        assert_eq!(utterance.len() as u64, end_sample - start_sample);
        assert_eq!(
            &utterance[..],
            &clip[*start_sample as usize..*end_sample as usize]
        );
    }

    #[test]
    fn pre_roll_is_included() {
        let mut vad = load_vad();
        let (clip, _, _) = speech_clip();
        let mut seg = Segmenter::new(settings(300));
        let events = run(&mut seg, &mut vad, &clip);
        let onset = events
            .iter()
            .find_map(|e| match e {
                VadEvent::SpeechStart { at_sample } => Some(*at_sample),
                _ => None,
            })
            .expect("speech found");
        let Some(VadEvent::SpeechEnd {
            utterance,
            start_sample,
            end_sample,
        }) = events.last()
        else {
            panic!("no end: {events:?}")
        };
        assert_eq!(onset - start_sample, 4800, "300 ms of pre-roll");
        assert_eq!(utterance.len() as u64, end_sample - start_sample);
        // The pre-roll is the (silent) audio before the onset.
        assert_eq!(
            &utterance[..4800],
            &clip[*start_sample as usize..onset as usize]
        );
    }

    #[test]
    fn start_is_announced_before_the_end() {
        let mut vad = load_vad();
        let (clip, first, _) = speech_clip();
        let mut seg = Segmenter::new(SegmenterSettings::default());
        // Feed up to 0.5 s past the speech onset: the start must already be out.
        let upto = first as usize + INPUT_RATE as usize / 2;
        let events = seg.push(&mut vad, &clip[..upto]).expect("vad runs");
        assert!(
            matches!(events[..], [VadEvent::SpeechStart { .. }]),
            "{events:?}"
        );
        assert!(seg.in_speech());
        assert!(seg.last_probability() > 0.5);
    }

    #[test]
    fn silence_and_quiet_noise_find_nothing() {
        let mut vad = load_vad();
        let mut seg = Segmenter::new(SegmenterSettings::default());
        assert!(run(&mut seg, &mut vad, &vec![0.0; 5 * INPUT_RATE as usize]).is_empty());
        // Deterministic white noise around −50 dBFS.
        let mut x: u32 = 12345;
        let noise: Vec<f32> = (0..5 * INPUT_RATE as usize)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x as f32 / u32::MAX as f32 - 0.5) * 0.01
            })
            .collect();
        vad.reset();
        seg.reset();
        assert!(run(&mut seg, &mut vad, &noise).is_empty());
    }

    #[test]
    fn ring_stays_bounded_on_long_silence() {
        let mut vad = load_vad();
        let mut seg = Segmenter::new(SegmenterSettings::default());
        let cap = seg.ring_capacity() + SileroVad::FRAME;
        let chunk = vec![0.0; 1600];
        for _ in 0..600 {
            // One minute of silence in 100 ms chunks.
            assert!(seg.push(&mut vad, &chunk).expect("vad runs").is_empty());
            assert!(seg.buffered_samples() <= cap, "{}", seg.buffered_samples());
        }
        assert!(seg.buffered_samples() >= 4800, "pre-roll is kept");
    }

    /// Scripted probabilities: one value per frame.
    fn scripted(seg: &mut Segmenter, probs: &[f32]) -> Vec<VadEvent> {
        let audio: Vec<f32> = (0..probs.len() * SileroVad::FRAME)
            .map(|i| i as f32)
            .collect();
        let mut frames = probs.iter();
        seg.push_with(&audio, |_| Ok(frames.next().copied().unwrap_or(0.0)))
            .expect("scripted")
    }

    #[test]
    fn short_blips_do_not_start_speech() {
        let mut seg = Segmenter::new(SegmenterSettings::default());
        // 5 frames (160 ms) above threshold, shorter than 250 ms.
        let mut probs = vec![0.0; 20];
        probs.extend([0.9; 5]);
        probs.extend([0.0; 40]);
        assert!(scripted(&mut seg, &probs).is_empty());
        assert!(seg.flush().is_none());
    }

    #[test]
    fn hysteresis_and_max_length() {
        let mut seg = Segmenter::new(SegmenterSettings {
            max_utterance_ms: 1024,
            pre_roll_ms: 0,
            ..SegmenterSettings::default()
        });
        // Speech for 8 frames, a dip into the hysteresis band (not silence), then speech
        // until past the 1024 ms (32 frame) cap.
        let mut probs = vec![0.9; 8];
        probs.extend([0.4; 30]);
        probs.extend([0.9; 10]);
        let events = scripted(&mut seg, &probs);
        let f = SileroVad::FRAME as u64;
        assert_eq!(
            events.iter().map(std::mem::discriminant).count(),
            3,
            "{events:?}"
        );
        assert!(matches!(events[0], VadEvent::SpeechStart { at_sample: 0 }));
        assert!(matches!(
            events[1],
            VadEvent::SpeechEnd { start_sample: 0, end_sample, .. } if end_sample == 32 * f
        ));
        assert!(matches!(events[2], VadEvent::SpeechStart { at_sample } if at_sample == 32 * f));
        let Some(VadEvent::SpeechEnd {
            utterance,
            start_sample,
            end_sample,
        }) = seg.flush()
        else {
            panic!("open utterance is closed by flush")
        };
        assert_eq!((start_sample, end_sample), (32 * f, 48 * f));
        assert_eq!(utterance.first().copied(), Some((32 * f) as f32));
    }
}
