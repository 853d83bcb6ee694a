//! MiniMax: `POST /v1/t2a_v2?GroupId=...` with `Authorization: Bearer` and a JSON body of
//! `model`, `text`, `voice_setting` and `audio_setting`. The answer is JSON: the audio
//! hex-encoded in `data.audio`, and failures as `base_resp.status_code` ≠ 0 with HTTP
//! 200 (1002 and 1039 are rate limits, retried like a 429).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{Engine, Settings, Speak, SpeakRequest, mp3_wav_pcm};
use crate::config::MiniMaxConfig;
use crate::pcm::Pcm;
use crate::speech::SpeechError;

super::settings!(MiniMaxConfig, "MiniMax", "speech.tts.minimax");
/// `base_resp.status_code`s that mean "too many requests".
const RATE_LIMITED: [i64; 2] = [1002, 1039];
const RETRIES: u32 = 2;

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Data>,
    base_resp: BaseResp,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    audio: String,
}

#[derive(Deserialize)]
struct BaseResp {
    status_code: i64,
    #[serde(default)]
    status_msg: String,
}

impl Speak for MiniMaxConfig {
    async fn speak(engine: &Engine<Self>, req: SpeakRequest<'_>) -> Result<Pcm, SpeechError> {
        let (service, cfg) = (&engine.service, &engine.cfg);
        let format = service.format_of("format", &cfg.format, &mp3_wav_pcm(cfg.sample_rate))?;
        let key = service.required_key()?;
        let body = json!({
            "model": cfg.model,
            "text": req.text,
            "stream": false,
            "output_format": "hex",
            "voice_setting": {
                "voice_id": engine.voice(&req),
                "speed": req.speed.clamp(0.5, 2.0),
                "vol": 1.0,
                "pitch": 0,
            },
            "audio_setting": {
                "sample_rate": cfg.sample_rate,
                "format": cfg.format,
                "channel": 1,
            },
        });
        let url = service.url("/v1/t2a_v2");
        let build = || {
            let r = service.client().post(&url).bearer_auth(&key);
            let r = if cfg.group_id.is_empty() {
                r
            } else {
                r.query(&[("GroupId", cfg.group_id.as_str())])
            };
            r.json(&body)
        };
        let mut attempt = 0;
        loop {
            let resp = service.send(&build).await?;
            let answer: Answer = service.json(&service.body(resp).await?)?;
            let code = answer.base_resp.status_code;
            if code == 0 {
                let hex = answer.data.map(|d| d.audio).unwrap_or_default();
                let audio = hex_decode(&hex).ok_or_else(|| {
                    service.error(
                        "data.audio is not hex-encoded audio",
                        "see the service's status",
                    )
                })?;
                return service.decode(&audio, format);
            }
            if RATE_LIMITED.contains(&code) && attempt < RETRIES {
                tokio::time::sleep(Duration::from_millis(250) * 2u32.pow(attempt)).await;
                attempt += 1;
                continue;
            }
            return Err(service.error(
                format!("error {code}: {}", answer.base_resp.status_msg),
                hint(code),
            ));
        }
    }
}

fn hint(code: i64) -> String {
    match code {
        1004 | 2049 => format!(
            "the service refused the API key; check the variable {}.api_key_env names, and group_id",
            MiniMaxConfig::SECTION
        ),
        1002 | 1039 => "rate limited; wait, or check the account's plan".into(),
        1008 => "the account's balance is too low".into(),
        2013 => format!(
            "the service rejected a parameter; check the voice and {}",
            MiniMaxConfig::SECTION
        ),
        _ => "see MiniMax's error code list".into(),
    }
}

/// Hex text to bytes; `None` on an odd length or a non-hex digit.
fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().as_bytes();
    if s.len() % 2 == 1 {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_and_rejects_garbage() {
        assert_eq!(hex_decode("00ff10Ab"), Some(vec![0, 255, 16, 171]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
    }
}
