//! Azure AI Speech text to speech over REST: `POST /cognitiveservices/v1` on
//! `https://{region}.tts.speech.microsoft.com` with the key in
//! `Ocp-Apim-Subscription-Key`, an SSML body, and the audio format named in
//! `X-Microsoft-OutputFormat` (RIFF or raw PCM, or MP3).

use super::{Engine, Settings, Speak, SpeakRequest};
use crate::config::AzureTtsConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;
use crate::speech::decode::AudioFormat;

// The region's endpoint unless `base_url` is set.
super::settings!(AzureTtsConfig, "Azure Speech", "speech.tts.azure", base_url(cfg) {
    if cfg.base_url.trim().is_empty() {
        format!("https://{}.tts.speech.microsoft.com", cfg.region.trim())
    } else {
        cfg.base_url.clone()
    }
});

impl Speak for AzureTtsConfig {
    async fn speak(engine: &Engine<Self>, req: SpeakRequest<'_>) -> Result<Pcm, SpeechError> {
        let (service, cfg) = (&engine.service, &engine.cfg);
        let format = audio_format(&cfg.output_format).map_err(|reason| {
            service.error(
                reason,
                format!(
                    "set {}.output_format to riff-24khz-16bit-mono-pcm",
                    Self::SECTION
                ),
            )
        })?;
        let key = service.required_key()?;
        let ssml = ssml(req.text, engine.voice(&req), req.speed);
        let url = service.url("/cognitiveservices/v1");
        let build = || {
            service
                .client()
                .post(&url)
                .header("Ocp-Apim-Subscription-Key", &key)
                .header(reqwest::header::CONTENT_TYPE, "application/ssml+xml")
                .header("X-Microsoft-OutputFormat", &cfg.output_format)
                .header(reqwest::header::USER_AGENT, "vtuberd")
                .body(ssml.clone())
        };
        service.audio(build, format).await
    }
}

/// The SSML document for one sentence: the voice's locale (`en-US` of
/// `en-US-AvaNeural`), the voice, and the speed as a relative prosody rate.
fn ssml(text: &str, voice: &str, speed: f32) -> String {
    let lang: String = voice.splitn(3, '-').take(2).collect::<Vec<_>>().join("-");
    let lang = if lang.len() >= 4 {
        lang
    } else {
        "en-US".into()
    };
    let body = if (speed - 1.0).abs() > f32::EPSILON && speed > 0.0 {
        let pct = ((speed - 1.0) * 100.0).round() as i32;
        format!("<prosody rate='{pct:+}%'>{}</prosody>", xml_escape(text))
    } else {
        xml_escape(text)
    };
    format!(
        "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='{}'><voice name='{}'>{body}</voice></speak>",
        xml_escape(&lang),
        xml_escape(voice)
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `riff-*` is WAV, `raw-<rate>-16bit-mono-pcm` headerless PCM, `*-mp3` MP3; Opus,
/// WebM, A-law and μ-law have no decoder here.
fn audio_format(name: &str) -> Result<AudioFormat, String> {
    let bad = || {
        format!(
            "output format {name:?} cannot be decoded (use riff-*-pcm, raw-*-16bit-mono-pcm or *-mp3)"
        )
    };
    let parts: Vec<&str> = name.split('-').collect();
    if parts.last() == Some(&"mp3") {
        return Ok(AudioFormat::Mp3);
    }
    if parts.last() != Some(&"pcm") || !parts.contains(&"16bit") {
        return Err(bad());
    }
    match parts.first() {
        Some(&"riff") => Ok(AudioFormat::Wav),
        Some(&"raw") => {
            let rate = parts.get(1).and_then(|r| {
                r.strip_suffix("khz")
                    .and_then(|k| k.parse::<u32>().ok())
                    .map(|k| k * 1000)
                    .or_else(|| r.strip_suffix("hz").and_then(|h| h.parse().ok()))
            });
            rate.map(|rate| AudioFormat::Pcm16 { rate }).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_map_to_decoders() {
        assert_eq!(
            audio_format("riff-24khz-16bit-mono-pcm"),
            Ok(AudioFormat::Wav)
        );
        assert_eq!(
            audio_format("raw-24khz-16bit-mono-pcm"),
            Ok(AudioFormat::Pcm16 { rate: 24_000 })
        );
        assert_eq!(
            audio_format("raw-22050hz-16bit-mono-pcm"),
            Ok(AudioFormat::Pcm16 { rate: 22_050 })
        );
        assert_eq!(
            audio_format("audio-24khz-48kbitrate-mono-mp3"),
            Ok(AudioFormat::Mp3)
        );
        assert!(audio_format("ogg-24khz-16bit-mono-opus").is_err());
        assert!(audio_format("raw-8khz-8bit-mono-mulaw").is_err());
    }

    #[test]
    fn ssml_escapes_text_and_carries_voice_locale_and_rate() {
        let s = ssml("Tom & <Jerry>", "ja-JP-NanamiNeural", 1.2);
        assert!(s.contains("xml:lang='ja-JP'"), "{s}");
        assert!(s.contains("<voice name='ja-JP-NanamiNeural'>"), "{s}");
        assert!(
            s.contains("<prosody rate='+20%'>Tom &amp; &lt;Jerry&gt;</prosody>"),
            "{s}"
        );
        assert!(!ssml("hi", "en-US-AvaNeural", 1.0).contains("prosody"));
    }
}
