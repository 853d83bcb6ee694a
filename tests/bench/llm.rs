//! Speed of the embedded model through [`EmbeddedProvider`], the path the daemon uses.
//!
//! Timed like `scripts/bench-llama-cpp.sh` times llama.cpp itself, so the two numbers
//! compare: prompt evaluation is from the request to the first token, generation is the
//! gaps between the first and the last token. Greedy decoding keeps runs repeatable.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use vtuberd::config::LlmConfig;
use vtuberd::llm::embedded::EmbeddedProvider;
use vtuberd::llm::{ChatMessage, ChatRequest, LlmEvent, LlmProvider, Role};

/// One measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSpeed {
    pub threads: u32,
    pub load_secs: f64,
    pub prompt_tokens: u64,
    pub prompt_secs: f64,
    /// Tokens after the first; the first comes out of prompt evaluation.
    pub generated_tokens: u64,
    pub generation_secs: f64,
    pub reply: String,
}

impl LlmSpeed {
    pub fn prompt_tokens_per_sec(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_secs
    }

    pub fn generation_tokens_per_sec(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_secs
    }
}

impl fmt::Display for LlmSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "prompt {} tokens at {:.1} tokens/s, generation {} tokens at {:.1} tokens/s ({} threads, load {:.2} s)",
            self.prompt_tokens,
            self.prompt_tokens_per_sec(),
            self.generated_tokens,
            self.generation_tokens_per_sec(),
            self.threads,
            self.load_secs
        )
    }
}

/// Loads `model`, then generates up to `n_tokens` greedily for `prompt` (one user
/// message, through the model's chat template) and times both phases. The load is not
/// part of either figure.
pub async fn embedded_tokens_per_sec(
    model: &Path,
    prompt: &str,
    n_tokens: u32,
    threads: Option<u32>,
) -> anyhow::Result<LlmSpeed> {
    let threads = match threads {
        Some(t) => t,
        None => std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1),
    };
    let cfg = LlmConfig {
        model_path: Some(model.to_path_buf()),
        threads: Some(threads),
        context_size: 4096,
        ..LlmConfig::default()
    };
    let load_started = Instant::now();
    let provider = EmbeddedProvider::new(&cfg, model.to_path_buf());
    provider
        .wait_loaded()
        .await
        .with_context(|| format!("loading {}", model.display()))?;
    let load_secs = load_started.elapsed().as_secs_f64();

    let request = ChatRequest {
        messages: vec![ChatMessage::new(Role::User, prompt)],
        temperature: Some(0.0),
        max_tokens: Some(n_tokens),
        ..ChatRequest::default()
    };
    let started = Instant::now();
    let mut rx = provider.stream(request, CancellationToken::new());
    let mut first = None;
    let mut last = started;
    let mut reply = String::new();
    let mut usage = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let item = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .context("generation took over 10 minutes")?;
        match item {
            Some(Ok(LlmEvent::TextDelta(text))) => {
                last = Instant::now();
                first.get_or_insert(last);
                reply.push_str(&text);
            }
            Some(Ok(LlmEvent::Usage(u))) => usage = Some(u),
            Some(Ok(LlmEvent::Finish(_))) => break,
            Some(Ok(LlmEvent::ToolCallDelta { .. })) => {}
            Some(Err(e)) => return Err(e).context("generation failed"),
            None => bail!("the provider closed the stream without finishing"),
        }
    }
    let usage = usage.context("the provider reported no usage")?;
    let Some(first) = first else {
        bail!("the model generated no text");
    };
    if usage.completion_tokens < 2 {
        bail!("the model stopped after one token; use a prompt that asks for more");
    }
    Ok(LlmSpeed {
        threads,
        load_secs,
        prompt_tokens: usage.prompt_tokens,
        prompt_secs: first.duration_since(started).as_secs_f64(),
        generated_tokens: usage.completion_tokens - 1,
        generation_secs: last.duration_since(first).as_secs_f64(),
        reply,
    })
}
