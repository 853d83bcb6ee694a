//! The speaker: an ordered queue of clips rendered block by block, by a cpal output
//! stream or by a virtual real-time sink (headless machines, tests, benchmarks).
//!
//! Stopping (barge-in) clears the queue and flips a flag the renderer checks on every
//! block, so silence starts with the next block the device asks for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::pcm::Pcm;

/// How a queued clip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Played {
    Finished,
    Stopped,
}

struct Clip {
    samples: Vec<f32>,
    pos: usize,
    done: Option<oneshot::Sender<Played>>,
}

#[derive(Default)]
struct Queue {
    clips: VecDeque<Clip>,
}

/// Called with each rendered block (mono, output rate): the echo canceller's reference.
pub type RenderTap = Box<dyn FnMut(&[f32]) + Send>;

pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Set by `stop()`, cleared by the renderer once it has rendered silence.
    stopping: AtomicBool,
    /// When the last stop was requested and when the renderer honoured it (µs since
    /// `epoch`), for measuring barge-in.
    stop_requested_us: AtomicU64,
    stop_honoured_us: AtomicU64,
    epoch: Instant,
    tap: Mutex<Option<RenderTap>>,
    pub(crate) rate: u32,
}

/// Handle to the speaker; cheap to clone.
#[derive(Clone)]
pub struct Player {
    shared: Arc<Shared>,
    name: String,
}

impl Player {
    pub(crate) fn new(rate: u32, name: String) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                stopping: AtomicBool::new(false),
                stop_requested_us: AtomicU64::new(0),
                stop_honoured_us: AtomicU64::new(0),
                epoch: Instant::now(),
                tap: Mutex::new(None),
                rate,
            }),
            name,
        }
    }

    /// A speaker with no device behind it that consumes audio in real time on its own
    /// thread, in blocks of `block_ms`: the same queue, stop and tap paths as a device.
    pub fn virtual_sink(rate: u32, block_ms: u32) -> Self {
        let player = Self::new(rate, "virtual".into());
        let shared = Arc::downgrade(&player.shared);
        let block = (rate as usize * block_ms as usize / 1000).max(1);
        let period = Duration::from_millis(u64::from(block_ms.max(1)));
        let spawned = std::thread::Builder::new()
            .name("audio-virtual-out".into())
            .spawn(move || {
                let mut buf = vec![0.0f32; block];
                let mut next = Instant::now();
                while let Some(shared) = shared.upgrade() {
                    render(&shared, &mut buf, 1);
                    drop(shared);
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the virtual audio output thread: {e}");
        }
        player
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sample_rate(&self) -> u32 {
        self.shared.rate
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Queues `pcm` after what is already queued; the receiver says how it ended.
    pub fn play(&self, pcm: &Pcm) -> oneshot::Receiver<Played> {
        let (tx, rx) = oneshot::channel();
        let samples = match pcm.resampled(self.shared.rate) {
            Ok(p) => p.samples,
            Err(e) => {
                tracing::warn!("cannot resample audio for the speaker: {e}");
                let _ = tx.send(Played::Finished);
                return rx;
            }
        };
        if let Ok(mut q) = self.shared.queue.lock() {
            q.clips.push_back(Clip {
                samples,
                pos: 0,
                done: Some(tx),
            });
        }
        rx
    }

    /// Drops everything queued and silences the output at the next block.
    pub fn stop(&self) {
        let now = self.shared.epoch.elapsed().as_micros() as u64;
        self.shared.stop_requested_us.store(now, Ordering::SeqCst);
        self.shared.stopping.store(true, Ordering::SeqCst);
        let clips: Vec<Clip> = match self.shared.queue.lock() {
            Ok(mut q) => q.clips.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for mut c in clips {
            if let Some(done) = c.done.take() {
                let _ = done.send(Played::Stopped);
            }
        }
    }

    /// Whether anything is queued or playing.
    pub fn is_playing(&self) -> bool {
        self.shared
            .queue
            .lock()
            .map(|q| !q.clips.is_empty())
            .unwrap_or(false)
    }

    /// Time from the last `stop()` to the renderer producing silence, once it has.
    pub fn last_stop_latency(&self) -> Option<Duration> {
        let req = self.shared.stop_requested_us.load(Ordering::SeqCst);
        let done = self.shared.stop_honoured_us.load(Ordering::SeqCst);
        (req > 0 && done >= req).then(|| Duration::from_micros(done - req))
    }

    /// Receives every rendered block (the echo canceller's far-end reference).
    pub fn set_tap(&self, tap: RenderTap) {
        if let Ok(mut t) = self.shared.tap.lock() {
            *t = Some(tap);
        }
    }
}

/// Fills `out` (interleaved, `channels` wide) from the queue. Runs on the audio thread:
/// no allocation, and a contended lock renders silence rather than waiting.
pub(crate) fn render(shared: &Shared, out: &mut [f32], channels: usize) {
    let channels = channels.max(1);
    let frames = out.len() / channels;
    out.fill(0.0);
    if shared.stopping.swap(false, Ordering::SeqCst) {
        let now = shared.epoch.elapsed().as_micros() as u64;
        shared.stop_honoured_us.store(now, Ordering::SeqCst);
    }
    let mut mono_written = 0;
    if let Ok(mut q) = shared.queue.try_lock() {
        while mono_written < frames {
            let Some(clip) = q.clips.front_mut() else {
                break;
            };
            let n = (clip.samples.len() - clip.pos).min(frames - mono_written);
            for i in 0..n {
                let s = clip.samples[clip.pos + i];
                let f = (mono_written + i) * channels;
                out[f..f + channels].fill(s);
            }
            clip.pos += n;
            mono_written += n;
            if clip.pos >= clip.samples.len()
                && let Some(mut c) = q.clips.pop_front()
                && let Some(done) = c.done.take()
            {
                let _ = done.send(Played::Finished);
            }
        }
    }
    if let Ok(mut tap) = shared.tap.try_lock()
        && let Some(tap) = tap.as_mut()
    {
        if channels == 1 {
            tap(out);
        } else {
            let mono: Vec<f32> = out.chunks(channels).map(|f| f[0]).collect();
            tap(&mono);
        }
    }
}

/// Opens a cpal output device and renders the queue into it.
pub(crate) fn open_device(name: &str) -> Result<Player, super::DeviceError> {
    use cpal::traits::DeviceTrait;
    let device = super::find_device(name, false)?;
    let dev_name = super::device_name(&device);
    let supported = super::pick_config(&device, false)?;
    let format = supported.sample_format();
    let config: cpal::StreamConfig = supported.config();
    let channels = usize::from(config.channels);
    let player = Player::new(config.sample_rate, dev_name.clone());
    let shared = player.shared();
    let weak = Arc::downgrade(&shared);
    drop(shared);
    let thread_name = dev_name.clone();
    let w = weak.clone();
    let build = move || {
        let err_cb = move |e: cpal::Error| tracing::warn!("speaker {thread_name}: {e}");
        match format {
            cpal::SampleFormat::F32 => device.build_output_stream::<f32, _, _>(
                config,
                move |out: &mut [f32], _| {
                    if let Some(s) = w.upgrade() {
                        render(&s, out, channels);
                    }
                },
                err_cb,
                None,
            ),
            cpal::SampleFormat::I16 => {
                let mut scratch = Vec::new();
                device.build_output_stream::<i16, _, _>(
                    config,
                    move |out: &mut [i16], _| {
                        scratch.resize(out.len(), 0.0f32);
                        if let Some(s) = w.upgrade() {
                            render(&s, &mut scratch, channels);
                        }
                        for (o, s) in out.iter_mut().zip(&scratch) {
                            *o = (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
                        }
                    },
                    err_cb,
                    None,
                )
            }
            other => return Err(format!("unsupported sample format {other:?}")),
        }
        .map_err(|e| e.to_string())
    };
    // Keep the stream alive for as long as the player exists.
    super::run_stream_thread("audio-out", &dev_name, build, move || {
        weak.strong_count() > 0
    })?;
    Ok(player)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_order_and_reports_completion() {
        let p = Player::new(1000, "test".into());
        let mut a = p.play(&Pcm::new(vec![0.1; 15], 1000));
        let mut b = p.play(&Pcm::new(vec![0.2; 10], 1000));
        let mut buf = vec![0.0; 20];
        render(&p.shared, &mut buf, 1);
        assert_eq!(&buf[..15], &[0.1; 15]);
        assert_eq!(&buf[15..], &[0.2; 5]);
        assert_eq!(a.try_recv(), Ok(Played::Finished));
        assert!(b.try_recv().is_err());
        let mut stereo = vec![0.0; 20];
        render(&p.shared, &mut stereo, 2);
        assert_eq!(&stereo[..10], &[0.2; 10]);
        assert_eq!(&stereo[10..], &[0.0; 10]);
        assert_eq!(b.try_recv(), Ok(Played::Finished));
        assert!(!p.is_playing());
    }

    #[test]
    fn stop_silences_the_next_block() {
        let p = Player::new(1000, "test".into());
        let mut a = p.play(&Pcm::new(vec![0.5; 100], 1000));
        let mut buf = vec![0.0; 10];
        render(&p.shared, &mut buf, 1);
        assert!(buf.iter().all(|&s| s == 0.5));
        p.stop();
        assert_eq!(a.try_recv(), Ok(Played::Stopped));
        render(&p.shared, &mut buf, 1);
        assert!(buf.iter().all(|&s| s == 0.0));
        assert!(p.last_stop_latency().is_some());
    }
}
