//! The daemon's own microphone and speaker (cpal), and echo cancellation between them.
//!
//! Devices are optional: on a machine without a sound card the daemon runs with no
//! local audio and says so in `status`; voice still works through files and clients.
//! cpal streams are not `Send` on every platform, so each lives on a thread of its own
//! that keeps it alive until the handle is dropped.

pub mod alsa_log;
pub mod echo;
pub mod input;
pub mod output;

pub use input::Microphone;
pub use output::{Played, Player};

use crate::config::AudioConfig;

/// Rate the echo canceller works at; devices are opened at it when they support it.
pub const DEVICE_RATE: u32 = 48_000;

/// What [`open`] found.
pub struct AudioDevices {
    pub player: Option<Player>,
    pub microphone: Option<Microphone>,
    /// `ready`, or why local audio is missing or partial.
    pub status: String,
}

/// Opens the configured devices. `none` skips a device; `virtual` gives a speaker
/// that plays in real time into nothing (tests and headless benchmarks).
pub fn open(cfg: &AudioConfig) -> AudioDevices {
    alsa_log::install();
    let alsa_before = alsa_log::messages_seen();
    let mut problems = Vec::new();
    let player = match cfg.output.as_str() {
        "none" => None,
        "virtual" => Some(Player::virtual_sink(DEVICE_RATE, 10)),
        name => match output::open_device(name) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(format!("speaker: {e}"));
                None
            }
        },
    };
    let microphone = match cfg.input.as_str() {
        "none" | "virtual" => None,
        name => match input::open_device(name) {
            Ok(m) => Some(m),
            Err(e) => {
                problems.push(format!("microphone: {e}"));
                None
            }
        },
    };
    let status = if player.is_none() && microphone.is_none() && !problems.is_empty() {
        "no audio device".to_owned()
    } else if player.is_none() && microphone.is_none() {
        "off (audio.input and audio.output are none)".to_owned()
    } else if problems.is_empty() {
        "ready".to_owned()
    } else {
        problems.join("; ")
    };
    let alsa_messages = alsa_log::messages_seen() - alsa_before;
    if problems.is_empty() {
        if alsa_messages > 0 {
            tracing::debug!(
                alsa_messages,
                "local audio opened; ALSA complained on the way"
            );
        }
    } else {
        tracing::info!(
            "local audio: {} ({alsa_messages} ALSA messages hidden; VTUBER_LOG=alsa=debug shows them)",
            problems.join("; ")
        );
    }
    AudioDevices {
        player,
        microphone,
        status,
    }
}

/// Why a device could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no audio device")]
    NoDevice,
    #[error("no device named {0:?} (see `arecord -L` / `aplay -L` for names)")]
    NotFound(String),
    #[error("cannot open {device}: {reason}")]
    Open { device: String, reason: String },
}

fn find_device(name: &str, input: bool) -> Result<cpal::Device, DeviceError> {
    use cpal::traits::{DeviceTrait, HostTrait};
    let host = cpal::default_host();
    if name == "default" {
        let dev = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return dev.ok_or(DeviceError::NoDevice);
    }
    let devices = if input {
        host.input_devices()
    } else {
        host.output_devices()
    }
    .map_err(|_| DeviceError::NoDevice)?;
    for d in devices {
        if d.description().map(|x| x.name() == name).unwrap_or(false) || d.to_string() == name {
            return Ok(d);
        }
    }
    Err(DeviceError::NotFound(name.to_owned()))
}

/// Builds a cpal stream on a thread of its own (streams are not `Send`), starts it, and
/// keeps it alive while `keep()` is true. Returns once the stream plays, or why not.
fn run_stream_thread(
    thread: &str,
    device: &str,
    build: impl FnOnce() -> Result<cpal::Stream, String> + Send + 'static,
    keep: impl Fn() -> bool + Send + 'static,
) -> Result<(), DeviceError> {
    use cpal::traits::StreamTrait;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let stream = match build().and_then(|s| {
                s.play().map_err(|e| e.to_string())?;
                Ok(s)
            }) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while keep() {
                std::thread::park_timeout(std::time::Duration::from_millis(500));
            }
            drop(stream);
        })
        .map_err(|e| DeviceError::Open {
            device: device.to_owned(),
            reason: e.to_string(),
        })?;
    match ready_rx.recv_timeout(std::time::Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(DeviceError::Open {
            device: device.to_owned(),
            reason,
        }),
        Err(_) => Err(DeviceError::Open {
            device: device.to_owned(),
            reason: "the device did not start within 5 s".into(),
        }),
    }
}

/// Device name for messages.
fn device_name(d: &cpal::Device) -> String {
    use cpal::traits::DeviceTrait;
    d.description()
        .map(|x| x.name().to_owned())
        .unwrap_or_else(|_| d.to_string())
}

/// Picks a config at [`DEVICE_RATE`] when the device supports it, else its default.
fn pick_config(d: &cpal::Device, input: bool) -> Result<cpal::SupportedStreamConfig, DeviceError> {
    use cpal::traits::DeviceTrait;
    let err = |e: cpal::Error| DeviceError::Open {
        device: device_name(d),
        reason: e.to_string(),
    };
    let ranges: Vec<cpal::SupportedStreamConfigRange> = if input {
        d.supported_input_configs().map_err(err)?.collect()
    } else {
        d.supported_output_configs().map_err(err)?.collect()
    };
    let f32_first = ranges
        .iter()
        .filter(|r| r.sample_format() == cpal::SampleFormat::F32)
        .chain(ranges.iter())
        .filter(|r| r.min_sample_rate() <= DEVICE_RATE && r.max_sample_rate() >= DEVICE_RATE)
        .min_by_key(|r| r.channels());
    if let Some(r) = f32_first {
        return Ok(r.with_sample_rate(DEVICE_RATE));
    }
    if input {
        d.default_input_config().map_err(err)
    } else {
        d.default_output_config().map_err(err)
    }
}
