//! GPT-SoVITS' `api_v2.py`: `POST /tts` with a JSON body of `text`, `text_lang`,
//! `ref_audio_path` (a reference recording on the server), `prompt_text`, `prompt_lang`,
//! `media_type` and `streaming_mode`; audio back, or `400 {"message", "Exception"}`.

use serde_json::json;

use super::{Engine, Settings, Speak, SpeakRequest};
use crate::config::GptSovitsConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;
use crate::speech::decode::AudioFormat;

super::settings!(GptSovitsConfig, "GPT-SoVITS", "speech.tts.gpt_sovits");

/// What `media_type: raw` is: the 32 kHz of the v2 models' vocoder.
const RAW_RATE: u32 = 32_000;

impl Speak for GptSovitsConfig {
    async fn speak(engine: &Engine<Self>, req: SpeakRequest<'_>) -> Result<Pcm, SpeechError> {
        let (service, cfg) = (&engine.service, &engine.cfg);
        let format = service.format_of(
            "media_type",
            &cfg.media_type,
            &[
                ("wav", AudioFormat::Wav),
                ("ogg", AudioFormat::Ogg),
                ("raw", AudioFormat::Pcm16 { rate: RAW_RATE }),
            ],
        )?;
        let ref_audio = engine.voice(&req);
        if ref_audio.trim().is_empty() {
            return Err(service.error(
                "no reference audio",
                format!(
                    "set {}.voice (or the character's [voice] voice) to the reference recording's path on the GPT-SoVITS server",
                    Self::SECTION
                ),
            ));
        }
        let body = json!({
            "text": req.text,
            "text_lang": cfg.text_lang,
            "ref_audio_path": ref_audio,
            "prompt_text": cfg.prompt_text,
            "prompt_lang": cfg.prompt_lang,
            "text_split_method": cfg.text_split_method,
            "batch_size": 1,
            "speed_factor": req.speed,
            "media_type": cfg.media_type,
            "streaming_mode": cfg.streaming_mode,
        });
        let url = service.url("/tts");
        // The server has no authentication of its own; a proxy in front may.
        let key = service.api_key();
        let build = || {
            let r = service.client().post(&url).json(&body);
            match &key {
                Some(k) => r.bearer_auth(k),
                None => r,
            }
        };
        service.audio(build, format).await
    }
}
