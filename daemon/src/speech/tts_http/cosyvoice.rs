//! CosyVoice's FastAPI server (`runtime/python/fastapi/server.py`): form fields to
//! `/inference_sft` (`tts_text`, `spk_id`: a built-in speaker) or, with a reference
//! recording, `/inference_zero_shot` (`tts_text`, `prompt_text`, the `prompt_wav` file);
//! the answer is headerless 16-bit PCM at the model's rate, streamed as it is made.

use super::{Engine, Settings, Speak, SpeakRequest};
use crate::config::CosyVoiceConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;
use crate::speech::decode::AudioFormat;

super::settings!(CosyVoiceConfig, "CosyVoice", "speech.tts.cosyvoice");

impl Speak for CosyVoiceConfig {
    async fn speak(engine: &Engine<Self>, req: SpeakRequest<'_>) -> Result<Pcm, SpeechError> {
        let (service, cfg) = (&engine.service, &engine.cfg);
        // The reference recording is read once per sentence: it is small, and a changed
        // file is picked up without a restart.
        let prompt = match &cfg.prompt_wav {
            Some(path) => Some(tokio::fs::read(path).await.map_err(|e| {
                service.error(
                    format!("cannot read {}: {e}", path.display()),
                    format!(
                        "set {}.prompt_wav to a WAV file on this machine",
                        Self::SECTION
                    ),
                )
            })?),
            None => None,
        };
        let speaker = engine.voice(&req);
        let url = service.url(if prompt.is_some() {
            "/inference_zero_shot"
        } else {
            "/inference_sft"
        });
        let build = || {
            let f = reqwest::multipart::Form::new().text("tts_text", req.text.to_owned());
            let f = match &prompt {
                Some(wav) => f.text("prompt_text", cfg.prompt_text.clone()).part(
                    "prompt_wav",
                    reqwest::multipart::Part::bytes(wav.clone()).file_name("prompt.wav"),
                ),
                None => f.text("spk_id", speaker.to_owned()),
            };
            service.client().post(&url).multipart(f)
        };
        let format = AudioFormat::Pcm16 {
            rate: cfg.sample_rate,
        };
        service.audio(build, format).await
    }
}
