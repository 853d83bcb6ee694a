//! Azure AI Speech short-audio REST: `POST
//! /speech/recognition/conversation/cognitiveservices/v1?language=en-US&format=simple`
//! with the key in `Ocp-Apim-Subscription-Key` and 16 kHz WAV as the body. The answer's
//! `RecognitionStatus` says whether `DisplayText` holds speech: `NoMatch` and the
//! timeouts mean nothing was said, `Error` is a failure.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::HttpAsr;
use crate::config::AzureAsrConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;
use crate::speech::net::Service;

const SECTION: &str = "speech.asr.azure";

pub struct AzureAsr {
    service: Service,
    language: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    recognition_status: String,
    #[serde(default)]
    display_text: String,
}

impl AzureAsr {
    pub fn new(cfg: &AzureAsrConfig, timeout: Duration) -> Result<Self, SpeechError> {
        let base_url = if cfg.base_url.trim().is_empty() {
            format!("https://{}.stt.speech.microsoft.com", cfg.region.trim())
        } else {
            cfg.base_url.clone()
        };
        Ok(Self {
            service: Service::new(
                "Azure Speech recognition",
                SECTION,
                &base_url,
                cfg.api_key_env.as_deref(),
                timeout,
            )?,
            language: cfg.language.clone(),
        })
    }

    async fn run(&self, pcm: &Pcm) -> Result<String, SpeechError> {
        let key = self.service.required_key()?;
        let wav = pcm.resampled(crate::speech::INPUT_RATE)?.to_wav();
        let url = self
            .service
            .url("/speech/recognition/conversation/cognitiveservices/v1");
        let resp = self
            .service
            .send(|| {
                self.service
                    .client()
                    .post(&url)
                    .query(&[("language", self.language.as_str()), ("format", "simple")])
                    .header("Ocp-Apim-Subscription-Key", &key)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "audio/wav; codecs=audio/pcm; samplerate=16000",
                    )
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(wav.clone())
            })
            .await?;
        let body = self.service.body(resp).await?;
        let answer: Answer = self.service.json(&body)?;
        match answer.recognition_status.as_str() {
            "Success" => Ok(answer.display_text.trim().to_owned()),
            "NoMatch" | "InitialSilenceTimeout" | "BabbleTimeout" => Ok(String::new()),
            other => Err(self.service.error(
                format!("recognition failed: {other}"),
                format!(
                    "check {SECTION}.language is a locale the service knows (en-US, ja-JP, ...)"
                ),
            )),
        }
    }
}

impl HttpAsr for AzureAsr {
    fn transcribe<'a>(&'a self, pcm: &'a Pcm) -> BoxFuture<'a, Result<String, SpeechError>> {
        Box::pin(self.run(pcm))
    }

    fn describe(&self) -> (&'static str, String) {
        ("azure", self.language.clone())
    }
}
