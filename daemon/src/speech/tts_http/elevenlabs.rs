//! ElevenLabs: `POST /v1/text-to-speech/{voice_id}/stream?output_format=...` with the
//! key in `xi-api-key`, a JSON body of `text`, `model_id` and `voice_settings`, and the
//! audio (MP3, or raw PCM for `pcm_*`) as a chunked body.

use serde_json::json;

use super::{Engine, Settings, Speak, SpeakRequest};
use crate::config::ElevenLabsConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;
use crate::speech::decode::AudioFormat;

super::settings!(ElevenLabsConfig, "ElevenLabs", "speech.tts.elevenlabs");

impl Speak for ElevenLabsConfig {
    async fn speak(engine: &Engine<Self>, req: SpeakRequest<'_>) -> Result<Pcm, SpeechError> {
        let (service, cfg) = (&engine.service, &engine.cfg);
        let format = audio_format(&cfg.output_format).map_err(|reason| {
            service.error(
                reason,
                format!(
                    "set {}.output_format to mp3_44100_128 or pcm_24000",
                    Self::SECTION
                ),
            )
        })?;
        let key = service.required_key()?;
        let mut body = json!({"text": req.text, "model_id": cfg.model_id});
        if (req.speed - 1.0).abs() > f32::EPSILON {
            // The API accepts 0.7..1.2.
            body["voice_settings"] = json!({"speed": req.speed.clamp(0.7, 1.2)});
        }
        let url = service.url(&format!(
            "/v1/text-to-speech/{}/stream",
            path_segment(engine.voice(&req))
        ));
        let build = || {
            service
                .client()
                .post(&url)
                .query(&[("output_format", cfg.output_format.as_str())])
                .header("xi-api-key", &key)
                .header(reqwest::header::ACCEPT, "audio/mpeg")
                .json(&body)
        };
        service.audio(build, format).await
    }
}

/// `mp3_*` or `pcm_<rate>`; the others (Opus, μ-law, A-law) have no decoder here.
fn audio_format(output_format: &str) -> Result<AudioFormat, String> {
    if output_format.starts_with("mp3_") {
        return Ok(AudioFormat::Mp3);
    }
    if let Some(rate) = output_format.strip_prefix("pcm_")
        && let Ok(rate) = rate.parse::<u32>()
        && rate > 0
    {
        return Ok(AudioFormat::Pcm16 { rate });
    }
    Err(format!(
        "output_format {output_format:?} cannot be decoded (use mp3_* or pcm_*)"
    ))
}

/// A voice ID as one URL path segment (IDs are alphanumeric; anything else is escaped
/// so it cannot change the path).
pub(super) fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_map_to_decoders() {
        assert_eq!(audio_format("mp3_44100_128"), Ok(AudioFormat::Mp3));
        assert_eq!(
            audio_format("pcm_24000"),
            Ok(AudioFormat::Pcm16 { rate: 24_000 })
        );
        assert!(audio_format("opus_48000_64").is_err());
        assert!(audio_format("pcm_").is_err());
    }

    #[test]
    fn voice_ids_cannot_leave_their_path_segment() {
        assert_eq!(path_segment("JBFqnCBsd6RMkjVDRZzb"), "JBFqnCBsd6RMkjVDRZzb");
        assert_eq!(path_segment("../x?y"), "..%2Fx%3Fy");
    }
}
