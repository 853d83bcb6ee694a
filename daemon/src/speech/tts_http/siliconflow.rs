//! SiliconFlow: OpenAI-like `POST /v1/audio/speech` with `Authorization: Bearer` and a
//! JSON body of `model`, `input`, `voice` (`model:voice` for the built-in voices, a
//! `speech:...` URI for uploaded ones), `response_format`, `sample_rate` and `speed`.

use serde_json::json;

use super::{Engine, Speak, SpeakRequest, mp3_wav_pcm};
use crate::config::SiliconFlowConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;

super::settings!(SiliconFlowConfig, "SiliconFlow", "speech.tts.siliconflow");

impl Speak for SiliconFlowConfig {
    async fn speak(engine: &Engine<Self>, req: SpeakRequest<'_>) -> Result<Pcm, SpeechError> {
        let (service, cfg) = (&engine.service, &engine.cfg);
        let format = service.format_of(
            "response_format",
            &cfg.response_format,
            &mp3_wav_pcm(cfg.sample_rate),
        )?;
        let key = service.required_key()?;
        let body = json!({
            "model": cfg.model,
            "input": req.text,
            "voice": full_voice(&cfg.model, engine.voice(&req)),
            "response_format": cfg.response_format,
            "sample_rate": cfg.sample_rate,
            "stream": false,
            "speed": req.speed.clamp(0.25, 4.0),
        });
        let url = service.url("/audio/speech");
        let build = || service.client().post(&url).bearer_auth(&key).json(&body);
        service.audio(build, format).await
    }
}

/// A built-in voice (`alex`) as the API names it (`FunAudioLLM/CosyVoice2-0.5B:alex`);
/// names that already have a `:` (`model:voice`, `speech:...` URIs) are kept.
fn full_voice(model: &str, voice: &str) -> String {
    if voice.contains(':') {
        voice.to_owned()
    } else {
        format!("{model}:{voice}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_voices_get_the_model_prefix() {
        let m = "FunAudioLLM/CosyVoice2-0.5B";
        assert_eq!(full_voice(m, "alex"), "FunAudioLLM/CosyVoice2-0.5B:alex");
        assert_eq!(full_voice(m, "speech:my-voice:abc"), "speech:my-voice:abc");
    }
}
