//! Deepgram pre-recorded transcription: `POST /v1/listen?model=...` with
//! `Authorization: Token <key>` and the WAV as the body; the text is
//! `results.channels[0].alternatives[0].transcript`, errors `{err_code, err_msg}`.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::HttpAsr;
use crate::config::DeepgramConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;
use crate::speech::net::Service;

const SECTION: &str = "speech.asr.deepgram";

pub struct Deepgram {
    service: Service,
    model: String,
    smart_format: bool,
    /// ISO 639-1 hint; `None` lets Deepgram use the model's default.
    language: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    results: Results,
}

#[derive(Deserialize)]
struct Results {
    channels: Vec<Channel>,
}

#[derive(Deserialize)]
struct Channel {
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    transcript: String,
}

impl Deepgram {
    pub fn new(
        cfg: &DeepgramConfig,
        language: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SpeechError> {
        Ok(Self {
            service: Service::new(
                "Deepgram",
                SECTION,
                &cfg.base_url,
                cfg.api_key_env.as_deref(),
                timeout,
            )?,
            model: cfg.model.clone(),
            smart_format: cfg.smart_format,
            language,
        })
    }

    async fn run(&self, pcm: &Pcm) -> Result<String, SpeechError> {
        let key = self.service.required_key()?;
        let wav = pcm.to_wav();
        let mut query = vec![
            ("model", self.model.clone()),
            ("smart_format", self.smart_format.to_string()),
        ];
        if let Some(lang) = &self.language {
            query.push(("language", lang.clone()));
        }
        let url = self.service.url("/v1/listen");
        let resp = self
            .service
            .send(|| {
                self.service
                    .client()
                    .post(&url)
                    .query(&query)
                    .header(reqwest::header::AUTHORIZATION, format!("Token {key}"))
                    .header(reqwest::header::CONTENT_TYPE, "audio/wav")
                    .body(wav.clone())
            })
            .await?;
        let body = self.service.body(resp).await?;
        let answer: Answer = self.service.json(&body)?;
        Ok(answer
            .results
            .channels
            .into_iter()
            .next()
            .and_then(|c| c.alternatives.into_iter().next())
            .map(|a| a.transcript.trim().to_owned())
            .unwrap_or_default())
    }
}

impl HttpAsr for Deepgram {
    fn transcribe<'a>(&'a self, pcm: &'a Pcm) -> BoxFuture<'a, Result<String, SpeechError>> {
        Box::pin(self.run(pcm))
    }

    fn describe(&self) -> (&'static str, String) {
        ("deepgram", self.model.clone())
    }
}
