//! Remote speech engines: OpenAI-compatible services over HTTP. `/v1/audio/transcriptions`
//! (faster-whisper-server, whisper.cpp's server, Groq, OpenAI) and `/v1/audio/speech`
//! (OpenAI, Kokoro-FastAPI and other compatible servers).

use std::time::Duration;

use super::SpeechError;
use crate::pcm::Pcm;

/// Connection details shared by both directions.
#[derive(Clone)]
pub struct Endpoint {
    client: reqwest::Client,
    base_url: String,
    model: String,
    api_key_env: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key_env", &self.api_key_env)
            .finish()
    }
}

impl Endpoint {
    pub fn new(
        base_url: &str,
        model: &str,
        api_key_env: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| SpeechError::inference("HTTP client", e))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key_env: api_key_env.filter(|v| !v.is_empty()).map(str::to_owned),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self
            .api_key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty())
        {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    fn remote_error(&self, what: &'static str, e: reqwest::Error) -> SpeechError {
        let hint = if e.is_connect() {
            format!("is the server at {} running?", self.base_url)
        } else if e.is_timeout() {
            "the server did not answer in time; raise timeout_secs or check the server".into()
        } else {
            "check base_url and model in conf.yaml".into()
        };
        SpeechError::Remote {
            what,
            reason: e.without_url().to_string(),
            hint,
        }
    }

    /// Sends `req` with the API key, mapping failures and error statuses to errors
    /// that say what to check.
    async fn send(
        &self,
        what: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SpeechError> {
        let resp = self
            .authorize(req)
            .send()
            .await
            .map_err(|e| self.remote_error(what, e))?;
        self.check(what, resp).await
    }

    async fn check(
        &self,
        what: &'static str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, SpeechError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let detail: String = body.chars().take(300).collect();
        let hint = match status.as_u16() {
            401 | 403 => format!(
                "the server refused the API key; check the variable named by api_key_env ({})",
                self.api_key_env.as_deref().unwrap_or("unset")
            ),
            404 => format!(
                "no such endpoint or model at {}; check base_url and model",
                self.base_url
            ),
            429 => "rate limited by the server; wait and retry".into(),
            _ => "see the server's log".into(),
        };
        Err(SpeechError::Remote {
            what,
            reason: format!("HTTP {status}: {detail}"),
            hint,
        })
    }

    /// Transcribes audio with `/audio/transcriptions`.
    pub async fn transcribe(
        &self,
        pcm: &Pcm,
        language: Option<&str>,
    ) -> Result<String, SpeechError> {
        const WHAT: &str = "speech recognition server";
        let part = reqwest::multipart::Part::bytes(pcm.to_wav())
            .file_name("speech.wav")
            .mime_str("audio/wav")
            .map_err(|e| SpeechError::inference(WHAT, e))?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", self.model.clone())
            .text("response_format", "json");
        if let Some(lang) = language {
            form = form.text("language", lang.to_owned());
        }
        let req = self
            .client
            .post(format!("{}/audio/transcriptions", self.base_url))
            .multipart(form);
        let resp = self.send(WHAT, req).await?;
        #[derive(serde::Deserialize)]
        struct Transcription {
            text: String,
        }
        let body: Transcription = resp.json().await.map_err(|e| SpeechError::Remote {
            what: WHAT,
            reason: format!("unexpected answer: {e}"),
            hint: "the server must answer {\"text\": ...} (response_format json)".into(),
        })?;
        Ok(body.text.trim().to_owned())
    }

    /// Synthesizes `text` with `/audio/speech` as WAV.
    pub async fn speak(&self, text: &str, voice: &str, speed: f32) -> Result<Pcm, SpeechError> {
        const WHAT: &str = "speech synthesis server";
        let req = self
            .client
            .post(format!("{}/audio/speech", self.base_url))
            .json(&serde_json::json!({
                "model": self.model,
                "input": text,
                "voice": voice,
                "speed": speed,
                "response_format": "wav",
            }));
        let resp = self.send(WHAT, req).await?;
        let bytes = resp.bytes().await.map_err(|e| self.remote_error(WHAT, e))?;
        Pcm::from_wav(&fix_streamed_wav(&bytes)).map_err(|e| SpeechError::Remote {
            what: WHAT,
            reason: format!("the answer is not usable WAV audio: {e}"),
            hint: "the server must support response_format \"wav\"".into(),
        })
    }
}

/// Streaming servers (and espeak-ng) write WAV headers with placeholder lengths
/// (0 or 0xFFFFFFFF) because they do not know the length up front; put the real ones in.
pub fn fix_streamed_wav(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return bytes.into();
    }
    let mut out = bytes.to_vec();
    let riff_len = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff_len.to_le_bytes());
    let mut pos = 12;
    while pos + 8 <= out.len() {
        let id = [out[pos], out[pos + 1], out[pos + 2], out[pos + 3]];
        let len = u32::from_le_bytes([out[pos + 4], out[pos + 5], out[pos + 6], out[pos + 7]]);
        if &id == b"data" {
            let actual = (out.len() - pos - 8) as u32;
            if len == 0 || len > actual {
                out[pos + 4..pos + 8].copy_from_slice(&actual.to_le_bytes());
            }
            break;
        }
        pos += 8 + len as usize + (len as usize & 1);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_wav_lengths_are_fixed() {
        let pcm = Pcm::new(vec![0.25; 100], 16000);
        let mut wav = pcm.to_wav();
        wav[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let data = wav
            .windows(4)
            .position(|w| w == b"data")
            .expect("data chunk");
        wav[data + 4..data + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let back = Pcm::from_wav(&fix_streamed_wav(&wav)).expect("decodes");
        assert_eq!(back.samples.len(), 100);
    }
}
