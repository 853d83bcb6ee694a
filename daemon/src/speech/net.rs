//! What every speech service over HTTP shares: one client with timeouts, the API key
//! read from the environment variable the configuration names (never stored, never
//! logged), retries with backoff on 429 and 5xx, and errors that name the engine and
//! say what to fix.

use std::time::Duration;

use super::SpeechError;

/// Attempts after the first on 429 / 5xx / a dropped connection.
const RETRIES: u32 = 2;
/// First backoff; doubled each retry. A `Retry-After` the service sends wins, capped.
const BACKOFF: Duration = Duration::from_millis(250);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// One speech service: its engine name, base URL and API key variable.
#[derive(Clone)]
pub struct Service {
    /// The engine as users name it in errors (`ElevenLabs`, `Azure Speech`, ...).
    pub engine: &'static str,
    /// The config section to fix (`speech.tts.elevenlabs`).
    pub section: &'static str,
    client: reqwest::Client,
    base_url: String,
    api_key_env: Option<String>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The variable's name only, never its value.
        f.debug_struct("Service")
            .field("engine", &self.engine)
            .field("base_url", &self.base_url)
            .field("api_key_env", &self.api_key_env)
            .finish()
    }
}

impl Service {
    pub fn new(
        engine: &'static str,
        section: &'static str,
        base_url: &str,
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
            engine,
            section,
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key_env: api_key_env.filter(|v| !v.is_empty()).map(str::to_owned),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The API key, if the configuration names a variable and it is set.
    pub fn api_key(&self) -> Option<String> {
        self.api_key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty())
    }

    /// The API key of a service that always needs one, or an error saying which
    /// variable to set.
    pub fn required_key(&self) -> Result<String, SpeechError> {
        self.api_key().ok_or_else(|| SpeechError::Remote {
            what: self.engine,
            reason: "no API key".into(),
            hint: match &self.api_key_env {
                Some(v) => format!("set the environment variable {v} for the daemon"),
                None => format!(
                    "set {}.api_key_env to the name of the variable that holds the key",
                    self.section
                ),
            },
        })
    }

    /// An error of this engine.
    pub fn error(&self, reason: impl std::fmt::Display, hint: impl Into<String>) -> SpeechError {
        SpeechError::Remote {
            what: self.engine,
            reason: reason.to_string(),
            hint: hint.into(),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> SpeechError {
        let hint = if e.is_connect() {
            format!(
                "is the server at {} running? (check {}.base_url)",
                self.base_url, self.section
            )
        } else if e.is_timeout() {
            format!(
                "the server did not answer in time; raise {}.timeout_secs or check the server",
                self.section
            )
        } else {
            format!("check {} in conf.yaml", self.section)
        };
        // Without the URL: some services take keys in the query.
        self.error(e.without_url(), hint)
    }

    /// Sends the request `build` makes, again after a backoff on 429, 5xx or a failed
    /// connection, and maps a final failure to an error that says what to check.
    /// `build` runs once per attempt, since a sent request is consumed.
    pub async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SpeechError> {
        let mut attempt = 0;
        loop {
            let last = attempt >= RETRIES;
            let backoff = BACKOFF * 2u32.pow(attempt);
            attempt += 1;
            match build().send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if !last && retryable(resp.status()) => {
                    let wait = retry_after(&resp).unwrap_or(backoff);
                    tracing::info!(
                        engine = self.engine,
                        status = %resp.status(),
                        "speech service busy; retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => return Err(self.status_error(resp).await),
                Err(e) if !last && (e.is_connect() || e.is_request()) && !e.is_timeout() => {
                    tracing::info!(engine = self.engine, "{}; retrying", e.without_url());
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(self.transport_error(e)),
            }
        }
    }

    /// An error status with the service's own message (first 300 characters).
    async fn status_error(&self, resp: reqwest::Response) -> SpeechError {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let detail: String = body.trim().chars().take(300).collect();
        let hint = match status.as_u16() {
            401 | 403 => format!(
                "the service refused the API key; check the variable {} names ({})",
                self.section,
                self.api_key_env
                    .as_deref()
                    .unwrap_or("api_key_env is unset")
            ),
            404 => format!(
                "no such endpoint, model or voice at {}; check {}",
                self.base_url, self.section
            ),
            400 | 422 => format!(
                "the service rejected the request; check the voice and {}",
                self.section
            ),
            429 => "rate limited or out of quota; wait, or check the account's plan".into(),
            _ => "the service failed; see its status page or log".into(),
        };
        self.error(format!("HTTP {status}: {detail}"), hint)
    }

    /// The whole body of a successful response.
    pub async fn body(&self, resp: reqwest::Response) -> Result<bytes::Bytes, SpeechError> {
        resp.bytes().await.map_err(|e| self.transport_error(e))
    }

    /// Sends the request `build` makes (as [`send`](Self::send)) and decodes the audio
    /// that comes back as `format`.
    pub async fn audio(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        format: super::decode::AudioFormat,
    ) -> Result<crate::pcm::Pcm, SpeechError> {
        let resp = self.send(build).await?;
        let bytes = self.body(resp).await?;
        self.decode(&bytes, format)
    }

    /// A JSON answer as `T`; anything else is an error naming the engine.
    pub fn json<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SpeechError> {
        serde_json::from_slice(bytes).map_err(|e| {
            self.error(
                format!("unexpected answer: {e}"),
                format!("check that {}.base_url points at the service", self.section),
            )
        })
    }

    /// The decoder for setting `key` = `value` among `choices`, or an error listing them.
    pub fn format_of(
        &self,
        key: &str,
        value: &str,
        choices: &[(&str, super::decode::AudioFormat)],
    ) -> Result<super::decode::AudioFormat, SpeechError> {
        choices
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.error(
                    format!("{key} {value:?} cannot be decoded"),
                    format!("set {}.{key} to one of {}", self.section, names.join(", ")),
                )
            })
    }

    /// Audio `bytes` sent as `format`, decoded; a decoding failure names the engine.
    pub fn decode(
        &self,
        bytes: &[u8],
        format: super::decode::AudioFormat,
    ) -> Result<crate::pcm::Pcm, SpeechError> {
        super::decode::decode(bytes, format).map_err(|e| {
            self.error(
                format!("the answer is not usable audio: {e}"),
                format!("check the audio format set in {}", self.section),
            )
        })
    }
}

fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A `Retry-After` in seconds, capped so a sentence is not held for minutes.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}
