//! The daemon's microphone: a cpal input stream whose callback forwards mono blocks to
//! the voice loop over a bounded channel (a full channel drops the block and counts it,
//! so a stalled consumer never blocks the audio thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Blocks of mono samples at [`Microphone::sample_rate`].
pub type MicBlocks = mpsc::Receiver<Vec<f32>>;

/// An open microphone. Dropping it closes the stream.
pub struct Microphone {
    name: String,
    rate: u32,
    blocks: Option<MicBlocks>,
    alive: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl Microphone {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// The stream of blocks; can be taken once.
    pub fn take_blocks(&mut self) -> Option<MicBlocks> {
        self.blocks.take()
    }

    /// Blocks dropped because the consumer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

pub(crate) fn open_device(name: &str) -> Result<Microphone, super::DeviceError> {
    use cpal::traits::DeviceTrait;
    let device = super::find_device(name, true)?;
    let dev_name = super::device_name(&device);
    let supported = super::pick_config(&device, true)?;
    let format = supported.sample_format();
    let config: cpal::StreamConfig = supported.config();
    let channels = usize::from(config.channels).max(1);
    let rate = config.sample_rate;
    let (tx, rx) = mpsc::channel::<Vec<f32>>(256);
    let alive = Arc::new(AtomicBool::new(true));
    let dropped = Arc::new(AtomicU64::new(0));
    let thread_alive = alive.clone();
    let thread_dropped = dropped.clone();
    let thread_name = dev_name.clone();
    let build = move || {
        let err_cb = move |e: cpal::Error| tracing::warn!("microphone {thread_name}: {e}");
        let send = move |mono: Vec<f32>| {
            if tx.try_send(mono).is_err() {
                thread_dropped.fetch_add(1, Ordering::Relaxed);
            }
        };
        match format {
            cpal::SampleFormat::F32 => device.build_input_stream::<f32, _, _>(
                config,
                move |data: &[f32], _| {
                    send(data.chunks(channels).map(|f| f[0]).collect());
                },
                err_cb,
                None,
            ),
            cpal::SampleFormat::I16 => device.build_input_stream::<i16, _, _>(
                config,
                move |data: &[i16], _| {
                    send(
                        data.chunks(channels)
                            .map(|f| f32::from(f[0]) / f32::from(i16::MAX))
                            .collect(),
                    );
                },
                err_cb,
                None,
            ),
            other => return Err(format!("unsupported sample format {other:?}")),
        }
        .map_err(|e| e.to_string())
    };
    super::run_stream_thread("audio-in", &dev_name, build, move || {
        thread_alive.load(Ordering::SeqCst)
    })?;
    Ok(Microphone {
        name: dev_name,
        rate,
        blocks: Some(rx),
        alive,
        dropped,
    })
}
