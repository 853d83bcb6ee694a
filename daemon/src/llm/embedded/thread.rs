//! The inference thread: loads the model, then serves jobs in order, keeping the KV
//! cache between turns so each turn evaluates only the new part of the prompt.

use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock, mpsc as std_mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vtuber_shared::Usage;

use super::native::backend;
use super::stop::{Filtered, StopFilter};
use super::utf8::Utf8Stream;
use super::{DEFAULT_TEMPERATURE, Job, Loaded, Phase, WorkerConfig};
use crate::llm::{ChatMessage, FinishReason, LlmError, LlmEvent, Role};

/// Most prompt tokens evaluated per `llama_decode` call.
const MAX_BATCH: u32 = 512;

pub(super) fn worker_main(
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
            warn!(
                "the model file carries no chat template: prompting it in ChatML, which it may not know \
                 (a base model rather than an instruct one?); template text it writes ends the reply"
            );
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
        let mut stop = StopFilter::new();
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
            // Template markers written as text end the reply and are never sent.
            let (text, marker) = match stop.push(&utf8.push(&piece)) {
                Filtered::Text(t) => (t, false),
                Filtered::Stop(t) => (t, true),
            };
            if !text.is_empty() && !Self::send(job, LlmEvent::TextDelta(text)) {
                return Ok(());
            }
            if marker {
                debug!("the model wrote a chat-template marker as text; reply ended there");
                break FinishReason::Stop;
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

        // Held back as a possible marker, but the reply ended first: it was text.
        let rest = stop.finish();
        if !rest.is_empty() && !Self::send(job, LlmEvent::TextDelta(rest)) {
            return Ok(());
        }
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
