//! `vtuber models pull [NAME]`: downloads a model into the Ollama server the config
//! names, through its `/api/pull` (a stream of JSON lines: `status`, and `total` /
//! `completed` bytes while a layer downloads), with a progress line.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use vtuber_shared::units::human_size;

use crate::launcher::{self, Target};

const DEFAULT_BASE: &str = "http://127.0.0.1:11434";

/// One line of `/api/pull`'s stream.
#[derive(Debug, Default, Deserialize, PartialEq)]
struct PullLine {
    #[serde(default)]
    status: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    completed: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

pub fn pull(target: &Target, name: Option<String>, base_url: Option<String>) -> Result<ExitCode> {
    let (name, base) = match (name, base_url) {
        (Some(n), Some(b)) => (n, b),
        (name, base_url) => {
            let vtuberd = launcher::find_vtuberd()?;
            let config = super::config::effective_json(&vtuberd, target.config.as_deref())?;
            let llm = &config["llm"];
            let name = name
                .or_else(|| llm["model"].as_str().map(str::to_owned))
                .ok_or_else(|| {
                    anyhow!(
                        "no model named: give one (`vtuber models pull qwen3:8b`) or set llm.model"
                    )
                })?;
            let base = base_url.unwrap_or_else(|| ollama_base(&config));
            (name, base)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(&name, &base))?;
    Ok(ExitCode::SUCCESS)
}

/// Ollama's address: `llm.base_url` when the provider is `ollama` (an OpenAI-style
/// `/v1` suffix dropped), else the default local server.
fn ollama_base(config: &serde_json::Value) -> String {
    let llm = &config["llm"];
    let base = llm["base_url"].as_str().unwrap_or(DEFAULT_BASE);
    if llm["provider"].as_str() != Some("ollama") && base == "http://127.0.0.1:11434/v1" {
        return DEFAULT_BASE.to_owned();
    }
    let base = base.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base).to_owned()
}

async fn run(name: &str, base: &str) -> Result<()> {
    let url = format!("{}/api/pull", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot make an HTTP client")?;
    let mut resp = client
        .post(&url)
        .json(&serde_json::json!({ "model": name, "stream": true }))
        .send()
        .await
        .with_context(|| {
            format!("cannot reach Ollama at {base}: is it running (`ollama serve`)? (--base-url sets another address)")
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let why = serde_json::from_str::<PullLine>(&body)
            .ok()
            .and_then(|l| l.error)
            .unwrap_or(body);
        bail!("Ollama refused to pull `{name}` ({status}): {}", why.trim());
    }
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let mut buffer = Vec::new();
    let mut done = false;
    while let Some(chunk) = resp.chunk().await.with_context(|| {
        format!("the download of `{name}` broke off; run the same command again to resume")
    })? {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            done |= handle_line(&line, &mut progress, name)?;
        }
    }
    if !buffer.is_empty() {
        done |= handle_line(&buffer, &mut progress, name)?;
    }
    progress.finish();
    if !done {
        bail!(
            "Ollama's answer ended before it said `success`; run the same command again to resume"
        );
    }
    println!("pulled {name} into {base}");
    Ok(())
}

/// Shows one stream line; `Ok(true)` on `success`, an error on `error`.
fn handle_line(line: &[u8], progress: &mut Progress, name: &str) -> Result<bool> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Ok(false);
    }
    let line: PullLine = serde_json::from_str(text)
        .with_context(|| format!("Ollama sent something that is not a pull status: {text}"))?;
    if let Some(error) = line.error {
        progress.finish();
        bail!("Ollama could not pull `{name}`: {error}");
    }
    progress.show(&line);
    Ok(line.status == "success")
}

/// The progress line: rewritten in place on a terminal, one line per new status elsewhere.
struct Progress {
    tty: bool,
    last: String,
    drawn: bool,
}

impl Progress {
    fn new(tty: bool) -> Self {
        Self {
            tty,
            last: String::new(),
            drawn: false,
        }
    }

    fn show(&mut self, line: &PullLine) {
        let text = describe(line);
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{text}");
            self.drawn = true;
        } else if line.status != self.last {
            let _ = writeln!(err, "{}", line.status);
        }
        let _ = err.flush();
        self.last = line.status.clone();
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}

/// `pulling 3f2a…  42%  1.1 GB / 2.6 GB`, or the status alone.
fn describe(line: &PullLine) -> String {
    match (line.total, line.completed) {
        (Some(total), completed) if total > 0 => {
            let done = completed.unwrap_or(0).min(total);
            let pct = done * 100 / total;
            let status = match &line.digest {
                Some(d) if !line.status.contains(d.as_str()) => {
                    format!("{} {}", line.status, short_digest(d))
                }
                _ => line.status.clone(),
            };
            format!(
                "{status}  {pct:>3}%  {} / {}",
                human_size(done),
                human_size(total)
            )
        }
        _ => line.status.clone(),
    }
}

fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text() {
        let l = PullLine {
            status: "pulling 3f2a".into(),
            digest: Some("sha256:3f2a00112233445566".into()),
            total: Some(2_600_000_000),
            completed: Some(1_100_000_000),
            ..Default::default()
        };
        assert_eq!(
            describe(&l),
            "pulling 3f2a 3f2a00112233   42%  1.1 GB / 2.6 GB"
        );
        let l = PullLine {
            status: "verifying sha256 digest".into(),
            ..Default::default()
        };
        assert_eq!(describe(&l), "verifying sha256 digest");
    }

    #[test]
    fn the_ollama_address_comes_from_the_config() {
        let cfg = |provider: &str, base: &str| serde_json::json!({"llm": {"provider": provider, "base_url": base}});
        assert_eq!(
            ollama_base(&cfg("ollama", "http://box:11434/v1/")),
            "http://box:11434"
        );
        assert_eq!(
            ollama_base(&cfg("embedded", "http://127.0.0.1:11434/v1")),
            DEFAULT_BASE
        );
        assert_eq!(ollama_base(&cfg("ollama", "http://h:1")), "http://h:1");
    }
}
