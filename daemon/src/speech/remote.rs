//! Remote speech engines: OpenAI-compatible services over HTTP. `/v1/audio/transcriptions`
//! (faster-whisper-server, whisper.cpp's server, Groq, OpenAI) and `/v1/audio/speech`
//! (OpenAI, Kokoro-FastAPI and other compatible servers).

use std::time::Duration;

use super::SpeechError;
use super::decode::AudioFormat;
use super::net::Service;
use crate::pcm::Pcm;

/// Connection details shared by both directions.
#[derive(Clone, Debug)]
pub struct Endpoint {
    service: Service,
    model: String,
}

impl Endpoint {
    /// `engine` names it in errors (`speech recognition server`), `section` is where it
    /// is configured (`speech.asr`).
    pub fn new(
        engine: &'static str,
        section: &'static str,
        base_url: &str,
        model: &str,
        api_key_env: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            service: Service::new(engine, section, base_url, api_key_env, timeout)?,
            model: model.to_owned(),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.service.client().post(self.service.url(path));
        match self.service.api_key() {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Transcribes audio with `/audio/transcriptions`.
    pub async fn transcribe(
        &self,
        pcm: &Pcm,
        language: Option<&str>,
    ) -> Result<String, SpeechError> {
        let wav = pcm.to_wav();
        let resp = self
            .service
            .send(|| {
                let part = reqwest::multipart::Part::bytes(wav.clone())
                    .file_name("speech.wav")
                    .mime_str("audio/wav")
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(wav.clone()));
                let mut form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("model", self.model.clone())
                    .text("response_format", "json");
                if let Some(lang) = language {
                    form = form.text("language", lang.to_owned());
                }
                self.post("/audio/transcriptions").multipart(form)
            })
            .await?;
        let body = self.service.body(resp).await?;
        transcription_text(&body).ok_or_else(|| {
            self.service.error(
                format!(
                    "unexpected answer: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
                "the server must answer {\"text\": ...} (response_format json or verbose_json)",
            )
        })
    }

    /// Synthesizes `text` with `/audio/speech` as WAV.
    pub async fn speak(&self, text: &str, voice: &str, speed: f32) -> Result<Pcm, SpeechError> {
        let body = serde_json::json!({
            "model": self.model,
            "input": text,
            "voice": voice,
            "speed": speed,
            "response_format": "wav",
        });
        let resp = self
            .service
            .send(|| self.post("/audio/speech").json(&body))
            .await?;
        let bytes = self.service.body(resp).await?;
        // Some servers answer MP3 whatever was asked; the decoder tells by the bytes.
        self.service.decode(&bytes, AudioFormat::Sniff)
    }
}

/// The text of a transcription answer: `{"text": ...}` as `json` gives it, the same
/// with `segments`, `language` and `duration` as `verbose_json` (OpenAI, Groq) gives
/// it, or a plain-text body from servers that ignore `response_format`.
pub fn transcription_text(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Transcription {
        text: String,
    }
    match serde_json::from_slice::<Transcription>(body) {
        Ok(t) => Some(t.text.trim().to_owned()),
        Err(_) => {
            let text = std::str::from_utf8(body).ok()?.trim();
            let looks_json = text.starts_with('{') || text.starts_with('[');
            (!looks_json).then(|| text.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcriptions_read_json_verbose_json_and_plain_text() {
        assert_eq!(
            transcription_text(br#"{"text": " Hello there. "}"#).as_deref(),
            Some("Hello there.")
        );
        // Groq's verbose_json, trimmed.
        let groq = br#"{"task":"transcribe","language":"English","duration":1.52,
            "text":" Hello there.","segments":[{"id":0,"seek":0,"start":0,"end":1.52,
            "text":" Hello there.","tokens":[50365,2425],"temperature":0,
            "avg_logprob":-0.2,"compression_ratio":0.8,"no_speech_prob":0.01}],
            "x_groq":{"id":"req_01"}}"#;
        assert_eq!(transcription_text(groq).as_deref(), Some("Hello there."));
        assert_eq!(
            transcription_text(b"Hello there.\n").as_deref(),
            Some("Hello there.")
        );
        assert_eq!(transcription_text(br#"{"error": "x"}"#), None);
    }
}
