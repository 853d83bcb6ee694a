//! Acoustic echo cancellation with WebRTC's audio processing module (the system's
//! `libwebrtc-audio-processing`), so the character's own voice from the speaker does not
//! reach voice detection as if someone spoke.
//!
//! The speaker's rendered blocks (the far end) are queued by the render tap and fed to
//! the canceller from the microphone side just before each capture frame, so the audio
//! thread never does the heavy work. Delay-agnostic mode finds the echo path delay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use webrtc_audio_processing as webrtc;

use super::output::RenderTap;

/// Samples per 10 ms frame at the canceller's rate (48 kHz).
pub const FRAME: usize = webrtc::NUM_SAMPLES_PER_FRAME as usize;

/// Most far-end audio kept waiting (2 s); older is dropped if the microphone stalls.
const MAX_FAR: usize = FRAME * 200;

/// Echo canceller for one microphone/speaker pair at 48 kHz mono.
pub struct EchoCanceller {
    processor: webrtc::Processor,
    far: Arc<Mutex<VecDeque<f32>>>,
    near: Vec<f32>,
}

impl EchoCanceller {
    pub fn new() -> Result<Self, String> {
        let init = webrtc::InitializationConfig {
            num_capture_channels: 1,
            num_render_channels: 1,
            ..Default::default()
        };
        let mut processor = webrtc::Processor::new(&init).map_err(|e| e.to_string())?;
        processor.set_config(webrtc::Config {
            echo_cancellation: Some(webrtc::EchoCancellation {
                suppression_level: webrtc::EchoCancellationSuppressionLevel::High,
                enable_extended_filter: true,
                enable_delay_agnostic: true,
                stream_delay_ms: None,
            }),
            noise_suppression: Some(webrtc::NoiseSuppression {
                suppression_level: webrtc::NoiseSuppressionLevel::Moderate,
            }),
            enable_high_pass_filter: true,
            ..Default::default()
        });
        Ok(Self {
            processor,
            far: Arc::new(Mutex::new(VecDeque::with_capacity(MAX_FAR))),
            near: Vec::with_capacity(FRAME * 4),
        })
    }

    /// A tap for [`super::Player::set_tap`]: queues what the speaker plays (48 kHz mono).
    pub fn far_end_tap(&self) -> RenderTap {
        let far = self.far.clone();
        Box::new(move |block: &[f32]| {
            if let Ok(mut q) = far.try_lock() {
                q.extend(block.iter().copied());
                let excess = q.len().saturating_sub(MAX_FAR);
                q.drain(..excess);
            }
        })
    }

    /// Queues far-end audio directly (what the speaker is about to play).
    pub fn push_far(&self, block: &[f32]) {
        if let Ok(mut q) = self.far.lock() {
            q.extend(block.iter().copied());
            let excess = q.len().saturating_sub(MAX_FAR);
            q.drain(..excess);
        }
    }

    /// Cleans microphone audio (48 kHz mono). Returns whole 10 ms frames; a partial frame
    /// waits for the next call.
    pub fn process(&mut self, near: &[f32]) -> Vec<f32> {
        self.near.extend_from_slice(near);
        let whole = self.near.len() / FRAME * FRAME;
        let mut out: Vec<f32> = self.near.drain(..whole).collect();
        for frame in out.chunks_mut(FRAME) {
            let mut far_frame = [0.0f32; FRAME];
            let have = match self.far.lock() {
                Ok(mut q) if q.len() >= FRAME => {
                    for (d, s) in far_frame.iter_mut().zip(q.drain(..FRAME)) {
                        *d = s;
                    }
                    true
                }
                _ => false,
            };
            if have && let Err(e) = self.processor.process_render_frame(&mut far_frame) {
                tracing::debug!("echo canceller (render): {e}");
            }
            if let Err(e) = self.processor.process_capture_frame(frame) {
                tracing::debug!("echo canceller (capture): {e}");
            }
        }
        out
    }
}
