//! Speech synthesis services over HTTP, one module each, all of the same shape: an
//! [`Engine`] built from its `speech.tts.<name>` section ([`Settings`]), whose
//! [`Speak`] turns one sentence into decoded audio. [`Engines`] holds one of each for
//! [`super::tts::Tts`], which picks by the character's `[voice] tts`.

pub mod azure;
pub mod cosyvoice;
pub mod elevenlabs;
pub mod fish_audio;
pub mod gpt_sovits;
pub mod minimax;
pub mod siliconflow;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::SpeechError;
use super::decode::AudioFormat;
use super::net::Service;
use crate::config::TtsConfig;
use crate::pcm::Pcm;

/// One sentence to say.
#[derive(Debug, Clone, Copy)]
pub struct SpeakRequest<'a> {
    pub text: &'a str,
    /// The character's voice, or the engine's configured one when that is empty.
    pub voice: &'a str,
    /// 1.0 is normal.
    pub speed: f32,
    /// The character's language (ISO 639-1), for engines that take one.
    pub language: &'a str,
}

/// A speech synthesis service.
pub trait HttpTts: Send + Sync {
    /// `text` spoken, decoded to mono samples at the service's rate.
    fn speak<'a>(&'a self, req: SpeakRequest<'a>) -> BoxFuture<'a, Result<Pcm, SpeechError>>;

    /// The voice used when a character names none.
    fn default_voice(&self) -> &str;
}

/// What every engine's `speech.tts.<name>` section has.
pub trait Settings: Clone + Send + Sync + 'static {
    /// The engine as errors name it (`ElevenLabs`).
    const ENGINE: &'static str;
    /// Its section (`speech.tts.elevenlabs`).
    const SECTION: &'static str;
    fn base_url(&self) -> String;
    fn api_key_env(&self) -> Option<&str>;
    fn timeout_secs(&self) -> u64;
    fn voice(&self) -> &str;
}

/// [`Settings`] read from the fields every section has.
/// `base_url(cfg) { ... }` computes the URL where it is not simply the field.
macro_rules! settings {
    ($cfg:ty, $engine:literal, $section:literal) => {
        $crate::speech::tts_http::settings!($cfg, $engine, $section, base_url(cfg) {
            cfg.base_url.clone()
        });
    };
    ($cfg:ty, $engine:literal, $section:literal, base_url($c:ident) $base:block) => {
        impl $crate::speech::tts_http::Settings for $cfg {
            const ENGINE: &'static str = $engine;
            const SECTION: &'static str = $section;
            fn base_url(&self) -> String {
                let $c = self;
                $base
            }
            fn api_key_env(&self) -> Option<&str> {
                self.api_key_env.as_deref()
            }
            fn timeout_secs(&self) -> u64 {
                self.timeout_secs
            }
            fn voice(&self) -> &str {
                &self.voice
            }
        }
    };
}
use settings;

/// How an engine turns one sentence into audio; implemented by its settings type.
pub trait Speak: Settings {
    fn speak<'a>(
        engine: &'a Engine<Self>,
        req: SpeakRequest<'a>,
    ) -> impl Future<Output = Result<Pcm, SpeechError>> + Send + 'a;
}

/// The `mp3` / `wav` / `pcm` choice most services offer, raw PCM at `pcm_rate`.
fn mp3_wav_pcm(pcm_rate: u32) -> [(&'static str, AudioFormat); 3] {
    [
        ("mp3", AudioFormat::Mp3),
        ("wav", AudioFormat::Wav),
        ("pcm", AudioFormat::Pcm16 { rate: pcm_rate }),
    ]
}

/// An engine: its service and its settings.
pub struct Engine<C> {
    service: Service,
    cfg: C,
}

impl<C: Settings> Engine<C> {
    pub fn new(cfg: &C) -> Result<Self, SpeechError> {
        Ok(Self {
            service: Service::new(
                C::ENGINE,
                C::SECTION,
                &cfg.base_url(),
                cfg.api_key_env(),
                Duration::from_secs(cfg.timeout_secs().max(1)),
            )?,
            cfg: cfg.clone(),
        })
    }

    /// The request's voice, or the configured one when it names none.
    fn voice<'a>(&'a self, req: &SpeakRequest<'a>) -> &'a str {
        if req.voice.trim().is_empty() {
            self.cfg.voice()
        } else {
            req.voice
        }
    }
}

impl<C: Speak> HttpTts for Engine<C> {
    fn speak<'a>(&'a self, req: SpeakRequest<'a>) -> BoxFuture<'a, Result<Pcm, SpeechError>> {
        Box::pin(C::speak(self, req))
    }

    fn default_voice(&self) -> &str {
        self.cfg.voice()
    }
}

/// Engine names, as `[voice] tts = ...` and `speech.tts.backend` take them.
pub const NAMES: &[&str] = &[
    "elevenlabs",
    "azure",
    "gpt_sovits",
    "fish_audio",
    "siliconflow",
    "minimax",
    "cosyvoice",
];

/// One of each engine, made from the configuration (nothing is contacted until a
/// character speaks).
#[derive(Clone, Default)]
pub struct Engines(BTreeMap<&'static str, Arc<dyn HttpTts>>);

impl Engines {
    pub fn new(cfg: &TtsConfig) -> Result<Self, SpeechError> {
        let engines: [(&'static str, Arc<dyn HttpTts>); 7] = [
            ("elevenlabs", Arc::new(Engine::new(&cfg.elevenlabs)?)),
            ("azure", Arc::new(Engine::new(&cfg.azure)?)),
            ("gpt_sovits", Arc::new(Engine::new(&cfg.gpt_sovits)?)),
            ("fish_audio", Arc::new(Engine::new(&cfg.fish_audio)?)),
            ("siliconflow", Arc::new(Engine::new(&cfg.siliconflow)?)),
            ("minimax", Arc::new(Engine::new(&cfg.minimax)?)),
            ("cosyvoice", Arc::new(Engine::new(&cfg.cosyvoice)?)),
        ];
        Ok(Self(engines.into_iter().collect()))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn HttpTts>> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_name_has_an_engine() {
        let engines = Engines::new(&TtsConfig::default()).expect("built");
        for name in NAMES {
            assert!(engines.get(name).is_some(), "{name}");
        }
        assert_eq!(engines.0.len(), NAMES.len());
    }
}
