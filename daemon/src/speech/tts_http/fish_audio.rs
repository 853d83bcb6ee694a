//! Fish Audio: `POST /v1/tts` with `Authorization: Bearer`, the model in a `model`
//! header, and a JSON body of `text`, `reference_id` (the voice), `format` and
//! `latency`; MP3, WAV or raw PCM back.

use serde_json::json;

use super::{Engine, Speak, SpeakRequest, mp3_wav_pcm};
use crate::config::FishAudioConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;
use crate::speech::decode::AudioFormat;

super::settings!(FishAudioConfig, "Fish Audio", "speech.tts.fish_audio");

/// The rate asked for with `format: pcm` / `wav` (and what the API defaults to).
const PCM_RATE: u32 = 44_100;

impl Speak for FishAudioConfig {
    async fn speak(engine: &Engine<Self>, req: SpeakRequest<'_>) -> Result<Pcm, SpeechError> {
        let (service, cfg) = (&engine.service, &engine.cfg);
        let format = service.format_of("format", &cfg.format, &mp3_wav_pcm(PCM_RATE))?;
        let key = service.required_key()?;
        let mut body = json!({
            "text": req.text,
            "format": cfg.format,
            "latency": cfg.latency,
            "normalize": true,
        });
        let reference = engine.voice(&req);
        if !reference.trim().is_empty() {
            body["reference_id"] = json!(reference);
        }
        if format != AudioFormat::Mp3 {
            body["sample_rate"] = json!(PCM_RATE);
        }
        if (req.speed - 1.0).abs() > f32::EPSILON {
            body["prosody"] = json!({"speed": req.speed});
        }
        let url = service.url("/v1/tts");
        let build = || {
            service
                .client()
                .post(&url)
                .bearer_auth(&key)
                .header("model", &cfg.model)
                .json(&body)
        };
        service.audio(build, format).await
    }
}
