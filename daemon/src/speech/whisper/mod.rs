//! Offline speech recognition with OpenAI's Whisper, run by candle on the CPU from the
//! CTranslate2 weights faster-whisper uses (so one model download serves both).
//!
//! Speed on small machines comes from not encoding silence: Whisper is trained on 30 s
//! windows, but the encoder is only fed the mel frames the audio covers plus 1 s of
//! padding (whisper.cpp's `audio_ctx`), ~7× less work for a 3 s utterance. On a set of
//! synthetic utterances this was as accurate as the full window, with one side effect:
//! having said everything, the model may start over, so a shortened window stops at the
//! first repeated phrase (and falls back to the full window if it runs out of tokens).
//!
//! Decoding is greedy, as OpenAI's `temperature=0` without timestamps, with its token
//! suppression and no-speech check. The encoder is candle-transformers'; the decoder is
//! our own ([`decoder`]), the same math with a self-attention key/value cache, so each
//! step runs only the new token (candle's re-runs the whole prefix, quadratic in the
//! text length).

pub mod ct2;
pub mod decoder;
pub mod mel;
pub mod tokens;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{
    Config,
    model::{AudioEncoder, Whisper},
};

use crate::speech::SpeechError;

use decoder::{DecoderCache, TextDecoder};
use mel::MelComputer;
use tokens::Vocabulary;

const WHAT: &str = "Whisper model";
/// Mel frames in one Whisper window (30 s).
const WINDOW_FRAMES: usize = 3000;
/// Silence frames (1 s) kept after the audio when the encoder input is shortened, so
/// the model hears the speech end.
const PAD_FRAMES: usize = 100;
/// Shortened encoder inputs are rounded up to this many frames.
const FRAME_QUANTUM: usize = 32;
/// A run of this many tokens said a second time ends decoding of a shortened window.
const RESTART_TOKENS: usize = 6;
/// Windows whose samples all stay below this (−60 dBFS) are silence, not decoded.
const SILENCE_PEAK: f32 = 1e-3;
/// OpenAI's thresholds for dropping a window as silence.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;

/// Whisper speech recognition on the CPU.
pub struct WhisperModel {
    encoder: AudioEncoder,
    decoder: TextDecoder,
    /// Decoder positions (`n_text_ctx`).
    text_ctx: usize,
    vocab: Vocabulary,
    mel: MelComputer,
    pool: rayon::ThreadPool,
    device: Device,
    /// Decoder prompt: `<|startoftranscript|>` [language, task] `<|notimestamps|>`.
    prompt: Vec<u32>,
    /// Multilingual model without a configured language: detect it in each window.
    detect: bool,
    /// Per token id: never sampled (non-speech symbols, every special token but EOT).
    suppress: Vec<bool>,
    /// Also not sampled as the first token (a bare space, EOT).
    suppress_begin: Vec<u32>,
    name: String,
}

/// Timings of the last transcription, for the benchmark test.
#[derive(Debug, Default, Clone, Copy)]
struct Timings {
    mel_ms: f64,
    encoder_ms: f64,
    decoder_ms: f64,
    steps: usize,
    encoder_frames: usize,
    retries: usize,
}

fn load_err(path: &Path, reason: impl std::fmt::Display) -> SpeechError {
    SpeechError::Load {
        what: WHAT,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn infer_err(e: candle_core::Error) -> SpeechError {
    SpeechError::inference("Whisper transcription", e)
}

/// The file, or `Missing` naming it.
fn required(dir: &Path, name: &str) -> Result<PathBuf, SpeechError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(SpeechError::Missing {
            what: WHAT,
            path,
            hint: "run scripts/fetch-model.sh or set speech.asr.model_dir".into(),
        })
    }
}

/// Whisper's size name from its width, and ".en" for the English-only vocabularies.
fn model_name(cfg: &Config, english_only: bool) -> String {
    let size = match (cfg.d_model, cfg.decoder_layers) {
        (384, _) => "tiny",
        (512, _) => "base",
        (768, _) => "small",
        (1024, _) => "medium",
        (1280, 4) => "large-v3-turbo",
        (1280, _) => "large",
        _ => "custom",
    };
    format!("{size}{}", if english_only { ".en" } else { "" })
}

/// The decoder prompt for `language` on this vocabulary, and whether to detect the
/// language in each window (multilingual model, no language configured). The prompt
/// then holds English as a placeholder.
fn prompt_for(
    vocab: &Vocabulary,
    language: Option<&str>,
    name: &str,
) -> Result<(Vec<u32>, bool), SpeechError> {
    let s = &vocab.specials;
    let language = language.filter(|l| !l.eq_ignore_ascii_case("auto"));
    if vocab.english_only {
        return match language {
            Some(l) if !l.eq_ignore_ascii_case("en") => Err(SpeechError::Unsupported {
                what: WHAT,
                reason: format!(
                    "whisper {name} only transcribes English, but speech.asr.language is `{l}`"
                ),
                hint: "point speech.asr.model_dir at a multilingual Whisper model (a faster-whisper folder such as whisper-base), or set speech.asr.language to en or auto".into(),
            }),
            _ => Ok((vec![s.sot, s.no_timestamps], false)),
        };
    }
    let (language, detect) = match language {
        Some(code) => {
            let token = vocab
                .language_token(&code.to_ascii_lowercase())
                .ok_or_else(|| SpeechError::Unsupported {
                    what: WHAT,
                    reason: format!("whisper {name} does not know the language `{code}`"),
                    hint: "set speech.asr.language to an ISO 639-1 code the model knows (en, zh, ja, ko, es, de, fr, ...) or to auto".into(),
                })?;
            (token, false)
        }
        // Not English-only means `<|en|>` is there (see `Vocabulary`).
        None => match s.english {
            Some(en) => (en, !vocab.languages.is_empty()),
            None => return Ok((vec![s.sot, s.no_timestamps], false)),
        },
    };
    let mut prompt = vec![s.sot, language];
    prompt.extend(s.transcribe);
    prompt.push(s.no_timestamps);
    Ok((prompt, detect))
}

impl WhisperModel {
    /// `dir` holds CTranslate2 files: model.bin, config.json, vocabulary.txt (tokenizer.json may be there but is not needed).
    /// `threads`: CPU threads to use (0 = all cores).
    /// `language`: ISO 639-1 code to transcribe, or `None`/`auto` to detect it (multilingual
    /// models only; English-only ones accept `en`).
    pub fn load(dir: &Path, threads: usize, language: Option<&str>) -> Result<Self, SpeechError> {
        let model_path = required(dir, "model.bin")?;
        let config_path = required(dir, "config.json")?;
        let vocab_path = required(dir, "vocabulary.txt")?;

        let text = std::fs::read_to_string(&vocab_path).map_err(|e| load_err(&vocab_path, e))?;
        let vocab = Vocabulary::from_text(&text).map_err(|e| load_err(&vocab_path, e))?;

        let config: serde_json::Value = std::fs::read(&config_path)
            .map_err(|e| load_err(&config_path, e))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| load_err(&config_path, e)))?;
        let ids = |key: &str| -> Vec<u32> {
            config
                .get(key)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let suppress_ids = ids("suppress_ids");
        let mut suppress_begin = ids("suppress_ids_begin");
        if suppress_begin.is_empty() {
            suppress_begin.extend(vocab.specials.space);
            suppress_begin.push(vocab.specials.eot);
        }

        let bytes = std::fs::read(&model_path).map_err(|e| load_err(&model_path, e))?;
        let device = Device::Cpu;
        let (cfg, tensors) = {
            let file = ct2::parse(&bytes).map_err(|e| load_err(&model_path, e))?;
            let cfg = ct2::whisper_config(&file, suppress_ids.clone())
                .map_err(|e| load_err(&model_path, e))?;
            let tensors =
                ct2::whisper_tensors(&file, &cfg, &device).map_err(|e| load_err(&model_path, e))?;
            (cfg, tensors)
        };
        drop(bytes);
        if vocab.len() != cfg.vocab_size {
            return Err(load_err(
                &vocab_path,
                format!(
                    "{} tokens, but the model has {} embeddings",
                    vocab.len(),
                    cfg.vocab_size
                ),
            ));
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        // candle's decoder is dropped: ours shares its weights and caches self-attention.
        let Whisper { encoder, .. } =
            Whisper::load(&vb, cfg.clone()).map_err(|e| load_err(&model_path, e))?;
        let decoder = TextDecoder::load(vb.pp("model.decoder"), &cfg)
            .map_err(|e| load_err(&model_path, e))?;

        let name = model_name(&cfg, vocab.english_only);
        let (prompt, detect) = prompt_for(&vocab, language, &name)?;

        let mut suppress = vec![false; cfg.vocab_size];
        for &id in &suppress_ids {
            if let Some(x) = suppress.get_mut(id as usize) {
                *x = true;
            }
        }
        // Everything after EOT is a special token (start, language, task, no-speech,
        // timestamps): none of them is text.
        for x in suppress.iter_mut().skip(vocab.specials.eot as usize + 1) {
            *x = true;
        }

        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("whisper-{i}"))
            .build()
            .map_err(|e| load_err(dir, format!("cannot start {threads} threads: {e}")))?;

        Ok(Self {
            mel: MelComputer::new(cfg.num_mel_bins),
            encoder,
            decoder,
            text_ctx: cfg.max_target_positions,
            vocab,
            pool,
            device,
            prompt,
            detect,
            suppress,
            suppress_begin,
            name,
        })
    }

    /// Transcribes 16 kHz mono audio (any length; long audio is processed in 30 s windows). Returns trimmed text, "" when nothing was said.
    pub fn transcribe(&mut self, pcm_16k: &[f32]) -> Result<String, SpeechError> {
        self.transcribe_timed(pcm_16k).map(|(text, _)| text)
    }

    /// e.g. "whisper tiny.en (ctranslate2 weights, candle)"
    pub fn describe(&self) -> String {
        let language = match (self.vocab.english_only, self.detect, self.prompt.get(1)) {
            (true, ..) => String::new(),
            (false, true, _) => ", language detected".into(),
            (false, false, Some(&id)) => format!(", language {}", self.vocab.language_code(id)),
            (false, false, None) => String::new(),
        };
        format!(
            "whisper {}{language} (ctranslate2 weights, candle)",
            self.name
        )
    }

    fn transcribe_timed(&mut self, pcm: &[f32]) -> Result<(String, Timings), SpeechError> {
        // candle's matmuls (nearly all the work) run on the current rayon pool, so this caps
        // their threads; its large element-wise ops use a global pool of its own, sized by
        // CANDLE_NUM_THREADS (default: the physical cores).
        let (pool, mut this) = self.parts();
        pool.install(move || this.run(pcm))
    }

    /// The thread pool, and the rest borrowed for a transcription.
    fn parts(&mut self) -> (&rayon::ThreadPool, Worker<'_>) {
        let worker = Worker {
            encoder: &mut self.encoder,
            decoder: &self.decoder,
            text_ctx: self.text_ctx,
            vocab: &self.vocab,
            mel: &self.mel,
            device: &self.device,
            prompt: &self.prompt,
            detect: self.detect,
            suppress: &self.suppress,
            suppress_begin: &self.suppress_begin,
        };
        (&self.pool, worker)
    }
}

/// The model's parts borrowed for one transcription on the pool.
struct Worker<'a> {
    encoder: &'a mut AudioEncoder,
    decoder: &'a TextDecoder,
    text_ctx: usize,
    vocab: &'a Vocabulary,
    mel: &'a MelComputer,
    device: &'a Device,
    prompt: &'a [u32],
    detect: bool,
    suppress: &'a [bool],
    suppress_begin: &'a [u32],
}

/// One window's decoding result.
struct Decoded {
    tokens: Vec<u32>,
    avg_logprob: f32,
    no_speech_prob: f32,
    /// Ended with `<|endoftext|>` (not the token budget or a loop).
    finished: bool,
    /// Stopped because the text started repeating itself.
    looped: bool,
    /// Decoder steps run.
    steps: usize,
}

impl Worker<'_> {
    fn run(&mut self, pcm: &[f32]) -> Result<(String, Timings), SpeechError> {
        let mut t = Timings::default();
        let started = std::time::Instant::now();
        let mel = self.mel.compute(pcm);
        t.mel_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut text = String::new();
        let mut offset = 0;
        while offset < mel.content_frames {
            let seg = (mel.content_frames - offset).min(WINDOW_FRAMES);
            let frames = (seg + PAD_FRAMES)
                .div_ceil(FRAME_QUANTUM)
                .saturating_mul(FRAME_QUANTUM)
                .min(WINDOW_FRAMES);
            let budget = max_tokens(seg, self.text_ctx);
            // Digital silence: Whisper would hallucinate ("you"), and it costs nothing to skip.
            let samples = pcm.get(offset * mel::HOP..).unwrap_or_default();
            let samples = &samples[..samples.len().min(seg * mel::HOP)];
            if samples.iter().all(|s| s.abs() < SILENCE_PEAK) {
                offset += seg;
                continue;
            }
            let mut d = self.window(&mel, offset, frames, budget, &mut t)?;
            if frames < WINDOW_FRAMES && !d.finished && !d.looped {
                // Ran out of tokens without ending: try again as trained, on 30 s.
                d = self.window(&mel, offset, WINDOW_FRAMES, budget, &mut t)?;
                t.retries += 1;
            }
            let silent =
                d.no_speech_prob > NO_SPEECH_THRESHOLD && d.avg_logprob < LOGPROB_THRESHOLD;
            if !silent {
                let piece = self.vocab.decode(&d.tokens);
                let piece = piece.trim();
                if !piece.is_empty() {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(piece);
                }
            }
            offset += seg;
        }
        Ok((text, t))
    }

    /// Encodes `frames` mel frames from `offset` and decodes them.
    fn window(
        &mut self,
        mel: &mel::LogMel,
        offset: usize,
        frames: usize,
        budget: usize,
        t: &mut Timings,
    ) -> Result<Decoded, SpeechError> {
        let started = std::time::Instant::now();
        let features = self.encode(mel, offset, frames).map_err(infer_err)?;
        t.encoder_ms += started.elapsed().as_secs_f64() * 1e3;
        t.encoder_frames += frames;
        let started = std::time::Instant::now();
        let early = frames < WINDOW_FRAMES;
        let d = self.decode(&features, budget, early).map_err(infer_err)?;
        t.decoder_ms += started.elapsed().as_secs_f64() * 1e3;
        t.steps += d.steps;
        Ok(d)
    }

    /// The encoder's output for `frames` mel frames from `offset`.
    fn encode(
        &mut self,
        mel: &mel::LogMel,
        offset: usize,
        frames: usize,
    ) -> candle_core::Result<Tensor> {
        let n_mels = self.mel.n_mels();
        let input = Tensor::from_vec(mel.window(offset, frames), (1, n_mels, frames), self.device)?;
        self.encoder.forward(&input, true)
    }

    /// Greedy decoding of one window's encoder output.
    fn decode(
        &self,
        features: &Tensor,
        max_tokens: usize,
        early: bool,
    ) -> candle_core::Result<Decoded> {
        let mut step = Cached {
            decoder: self.decoder,
            cache: self.decoder.start(features)?,
        };
        let mut prompt = self.prompt.to_vec();
        let mut no_speech = None;
        if self.detect {
            // As OpenAI's detect_language: the most likely language token after
            // <|startoftranscript|>, whose position also gives P(no speech).
            let s = &self.vocab.specials;
            let hidden = step.run(&[s.sot])?;
            let logits = step.logits(&hidden, 0)?.to_vec1::<f32>()?;
            if let Some(&l) = s.no_speech.and_then(|ns| logits.get(ns as usize)) {
                no_speech = Some((l - log_sum_exp(&logits)).exp());
            }
            if let (Some(lang), Some(slot)) =
                (best_of(&logits, &self.vocab.languages), prompt.get_mut(1))
            {
                *slot = lang;
                tracing::debug!(
                    language = self.vocab.language_code(lang),
                    "whisper detected the language"
                );
            }
        }
        self.greedy(step, prompt, no_speech, max_tokens, early)
    }

    /// Greedy decoding, `decoder` run on the tokens so far.
    /// `no_speech`: P(no speech) when already read (language detection ran the first
    /// position); otherwise it is read at the first step.
    fn greedy(
        &self,
        mut decoder: impl Step,
        prompt: Vec<u32>,
        no_speech: Option<f32>,
        max_tokens: usize,
        early: bool,
    ) -> candle_core::Result<Decoded> {
        let eot = self.vocab.specials.eot;
        let mut tokens = prompt;
        let mut sampled = Vec::new();
        let mut sum_logprob = 0.0f32;
        let mut no_speech_prob = no_speech.unwrap_or(0.0);
        let mut finished = false;
        let mut looped = false;
        let mut steps = 0;
        for step in 0..max_tokens {
            steps += 1;
            // The whole prompt at the first step, then the last token; only the last
            // position is projected to logits.
            let hidden = decoder.run(&tokens)?;
            if let (0, None, Some(ns)) = (step, no_speech, self.vocab.specials.no_speech) {
                // OpenAI reads P(no speech) at the <|startoftranscript|> position.
                let first = decoder.logits(&hidden, 0)?;
                let probs = candle_nn::ops::softmax_last_dim(&first)?;
                no_speech_prob = probs.i(ns as usize)?.to_scalar::<f32>()?;
            }
            let last = hidden.dim(1)?.saturating_sub(1);
            let mut logits = decoder.logits(&hidden, last)?.to_vec1::<f32>()?;
            for (l, &s) in logits.iter_mut().zip(self.suppress) {
                if s {
                    *l = f32::NEG_INFINITY;
                }
            }
            if step == 0 {
                for &id in self.suppress_begin {
                    if let Some(l) = logits.get_mut(id as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            let (best, best_logit) = logits.iter().enumerate().fold(
                (eot as usize, f32::NEG_INFINITY),
                |acc, (i, &l)| {
                    if l > acc.1 { (i, l) } else { acc }
                },
            );
            // Log-probability after suppression, as OpenAI's decoder scores it.
            sum_logprob += best_logit - log_sum_exp(&logits);
            let best = best as u32;
            if best == eot {
                finished = true;
                break;
            }
            tokens.push(best);
            sampled.push(best);
            if let Some(keep) = loop_start(&sampled, early) {
                sampled.truncate(keep);
                looped = true;
                break;
            }
        }
        Ok(Decoded {
            avg_logprob: sum_logprob / (sampled.len() + 1) as f32,
            tokens: sampled,
            no_speech_prob,
            finished,
            looped,
            steps,
        })
    }
}

/// The id among `ids` with the highest logit.
fn best_of(logits: &[f32], ids: &[u32]) -> Option<u32> {
    ids.iter()
        .copied()
        .filter_map(|id| logits.get(id as usize).map(|&l| (id, l)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(id, _)| id)
}

/// A text decoder as greedy decoding drives it.
trait Step {
    /// Final hidden states (1, n, d) of the `tokens` (the prompt and those sampled so
    /// far) from the first the decoder has not run yet; at least the last one.
    fn run(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor>;
    /// Logits (vocabulary) at `position` of `hidden`, one of `run`'s results.
    fn logits(&self, hidden: &Tensor, position: usize) -> candle_core::Result<Tensor>;
}

/// Our decoder, running each token once.
struct Cached<'a> {
    decoder: &'a TextDecoder,
    cache: DecoderCache,
}

impl Step for Cached<'_> {
    fn run(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let new = tokens.get(self.cache.len()..).unwrap_or_default();
        self.decoder.forward(new, &mut self.cache)
    }

    fn logits(&self, hidden: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        self.decoder.logits(hidden, position)
    }
}

/// Token budget for a window of `frames` mel frames: generous for speech (~4 tokens/s
/// is typical) but short enough to cut a hallucination loop early; OpenAI's cap is half
/// the text context.
fn max_tokens(frames: usize, text_ctx: usize) -> usize {
    let secs = frames.div_ceil(100);
    (16 + secs * 12).min(text_ctx / 2)
}

fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    max + x.iter().map(|&v| (v - max).exp()).sum::<f32>().ln()
}

/// Whether `tokens` ends in a loop, the failure mode of greedy decoding; if so, how many
/// tokens to keep (through the first pass of the repeated phrase).
///
/// In a shortened window the model tends to start over once it has said everything, so
/// there (`early`) a phrase counts as looping once [`RESTART_TOKENS`] of it come again;
/// in a full window it must be said three times. Phrases shorter than that must repeat
/// over 12 tokens, so "no, no" and "ha ha ha" stay speech.
fn loop_start(tokens: &[u32], early: bool) -> Option<usize> {
    let n = tokens.len();
    (1..n).find_map(|p| {
        // Length of the suffix that repeats with period p.
        let mut len = p;
        while len < n && tokens[n - 1 - (len - p)] == tokens[n - 1 - len] {
            len += 1;
        }
        let need = if early {
            (p + RESTART_TOKENS).max(12)
        } else {
            (3 * p).max(12)
        };
        (len >= need).then_some(n - len + p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_loops_are_cut() {
        assert_eq!(loop_start(&[1, 2, 3], true), None);
        // A short phrase needs 12 tokens of repetition, either way.
        let mut t = vec![9, 8];
        for _ in 0..4 {
            t.extend([1, 2, 3]);
        }
        assert_eq!(loop_start(&t, true), Some(5));
        assert_eq!(loop_start(&t, false), Some(5));
        assert_eq!(loop_start(&t[..13], false), None);
        assert_eq!(loop_start(&[5; 11], true), None);
        assert_eq!(loop_start(&[5; 12], true), Some(1));
        // A sentence starting over: caught after 6 tokens of the second saying in a
        // shortened window; in a full window only a third saying is a loop.
        let s: Vec<u32> = (10..20).collect();
        let mut twice = s.clone();
        twice.extend(&s[..5]);
        assert_eq!(loop_start(&twice, true), None);
        twice.push(s[5]);
        assert_eq!(loop_start(&twice, true), Some(10));
        let mut thrice: Vec<u32> = [7, 7].into_iter().chain(s.iter().copied()).collect();
        thrice.extend(&s);
        assert_eq!(loop_start(&thrice, false), None);
        thrice.extend(&s);
        assert_eq!(loop_start(&thrice, false), Some(12));
    }

    #[test]
    fn model_can_move_to_its_thread() {
        fn send<T: Send>() {}
        send::<WhisperModel>();
    }

    #[test]
    fn token_budget() {
        assert_eq!(max_tokens(300, 448), 52);
        assert_eq!(max_tokens(3000, 448), 224);
    }

    #[test]
    fn missing_files_say_how_to_fetch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = WhisperModel::load(dir.path(), 1, None)
            .err()
            .expect("fails");
        assert!(matches!(err, SpeechError::Missing { .. }), "{err}");
        assert!(err.hint().contains("fetch-model.sh"));
    }

    #[test]
    fn malformed_model_is_a_load_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vocab: String = (0..10)
            .map(|i| format!("t{i}\n"))
            .chain(
                [
                    "<|endoftext|>\n",
                    "<|startoftranscript|>\n",
                    "<|notimestamps|>\n",
                ]
                .map(String::from),
            )
            .collect();
        std::fs::write(dir.path().join("vocabulary.txt"), vocab).expect("write");
        std::fs::write(dir.path().join("config.json"), "{}").expect("write");
        std::fs::write(dir.path().join("model.bin"), b"\x06\x00\x00\x00garbage").expect("write");
        let err = WhisperModel::load(dir.path(), 1, None)
            .err()
            .expect("fails");
        assert!(matches!(err, SpeechError::Load { .. }), "{err}");
        // A well-formed file that is not a complete Whisper model.
        let mut w = ct2::tests::Ct2Writer::new(6, "WhisperSpec");
        w.f32("encoder/conv1/weight", &[4, 2, 3], &[0.0; 24]);
        std::fs::write(dir.path().join("model.bin"), w.finish(&[])).expect("write");
        let err = WhisperModel::load(dir.path(), 1, None)
            .err()
            .expect("fails");
        assert!(
            matches!(&err, SpeechError::Load { reason, .. } if reason.contains("missing tensor")),
            "{err}"
        );
    }

    /// The model directory: `$VTUBER_DATA_DIR/models/whisper-tiny.en`, else the default
    /// data dir.
    fn model_dir() -> PathBuf {
        models_dir().join("whisper-tiny.en")
    }

    fn models_dir() -> PathBuf {
        let data = std::env::var_os("VTUBER_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/vtuber"))
            })
            .unwrap_or_default();
        data.join("models")
    }

    /// The multilingual base model (`scripts/fetch-model.sh --only asr-base`, which
    /// `scripts/setup.sh --for-tests` runs) detects the language, or uses the one set.
    #[test]
    fn multilingual_models_detect_or_take_the_language() {
        let dir = models_dir().join("whisper-base");
        let load = |language| match WhisperModel::load(&dir, 0, language) {
            Ok(m) => m,
            Err(e) => panic!(
                "cannot load the multilingual Whisper model from {} ({e}); run scripts/setup.sh --for-tests, which installs it",
                dir.display()
            ),
        };
        let spanish = speak_in(
            "es",
            "Buenos días, me gustaría comprar dos billetes de tren para Madrid.",
        );
        let mut auto = load(None);
        assert!(
            auto.describe().contains("base, language detected"),
            "{}",
            auto.describe()
        );
        let heard = words(&auto.transcribe(&spanish).expect("transcribes"));
        for w in ["buenos", "días", "gustaría", "comprar", "madrid"] {
            assert!(heard.iter().any(|h| h == w), "{w} not in {heard:?}");
        }
        // Told the language, it transcribes it; told another, the hint is English text.
        let mut es = load(Some("es"));
        let heard_es = words(&es.transcribe(&spanish).expect("transcribes"));
        assert!(heard_es.iter().any(|h| h == "madrid"), "{heard_es:?}");
        let english = speak("I would like two train tickets to Madrid, please.");
        let heard_en = words(&auto.transcribe(&english).expect("transcribes"));
        for w in ["train", "tickets", "madrid"] {
            assert!(heard_en.iter().any(|h| h == w), "{w} not in {heard_en:?}");
        }
    }

    fn vocabulary(multilingual: bool) -> Vocabulary {
        let mut t = vec!["a", "<|endoftext|>", "<|startoftranscript|>"];
        if multilingual {
            t.extend([
                "<|en|>",
                "<|es|>",
                "<|ja|>",
                "<|translate|>",
                "<|transcribe|>",
            ]);
        }
        t.push("<|notimestamps|>");
        Vocabulary::from_tokens(t.into_iter().map(String::from).collect()).expect("parses")
    }

    #[test]
    fn prompts_follow_the_configured_language() {
        let en = vocabulary(false);
        for l in [None, Some("auto"), Some("en"), Some("EN")] {
            assert_eq!(
                prompt_for(&en, l, "tiny.en").expect("ok"),
                (vec![2, 3], false)
            );
        }
        let err = prompt_for(&en, Some("ja"), "tiny.en").expect_err("English only");
        assert!(
            err.to_string().contains("only transcribes English"),
            "{err}"
        );
        assert!(
            err.hint().contains("speech.asr.model_dir"),
            "{}",
            err.hint()
        );

        let multi = vocabulary(true);
        // sot, language, transcribe, notimestamps
        assert_eq!(
            prompt_for(&multi, Some("ja"), "base").expect("ok"),
            (vec![2, 5, 7, 8], false)
        );
        assert_eq!(
            prompt_for(&multi, Some("Es"), "base").expect("ok"),
            (vec![2, 4, 7, 8], false)
        );
        // No language: detected per window, English until then.
        for l in [None, Some("auto")] {
            assert_eq!(
                prompt_for(&multi, l, "base").expect("ok"),
                (vec![2, 3, 7, 8], true)
            );
        }
        let err = prompt_for(&multi, Some("xx"), "base").expect_err("unknown");
        assert!(err.to_string().contains("`xx`"), "{err}");
        assert!(err.hint().contains("ISO 639-1"), "{}", err.hint());
    }

    #[test]
    fn the_likeliest_of_the_given_tokens_wins() {
        let logits = [9.0, 1.0, 3.0, 2.5, -1.0];
        assert_eq!(best_of(&logits, &[1, 2, 3]), Some(2));
        assert_eq!(best_of(&logits, &[4]), Some(4));
        assert_eq!(best_of(&logits, &[]), None);
        assert_eq!(best_of(&logits, &[99]), None);
    }

    fn load_real() -> WhisperModel {
        let dir = model_dir();
        match WhisperModel::load(&dir, 0, None) {
            Ok(m) => m,
            Err(e) => panic!(
                "cannot load the Whisper model from {} ({e}); run scripts/setup.sh, which installs it",
                dir.display()
            ),
        }
    }

    /// Speech from espeak-ng, at 16 kHz.
    fn speak(text: &str) -> Vec<f32> {
        speak_in("en-us", text)
    }

    /// Speech from espeak-ng in one of its voices (`es`, `de`, ...), at 16 kHz.
    fn speak_in(voice: &str, text: &str) -> Vec<f32> {
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("speech.wav");
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", voice, "-w"])
            .arg(&wav)
            .arg(text)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!(
                "espeak-ng failed or is missing ({other:?}); run scripts/setup.sh, which installs it"
            ),
        }
        let bytes = std::fs::read(&wav).expect("espeak-ng wrote the WAV");
        let pcm = crate::pcm::Pcm::from_wav(&bytes).expect("valid WAV");
        pcm.resampled(crate::speech::INPUT_RATE)
            .expect("resamples")
            .samples
    }

    fn words(s: &str) -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }

    #[test]
    fn transcribes_synthetic_speech() {
        let mut model = load_real();
        assert_eq!(
            model.describe(),
            "whisper tiny.en (ctranslate2 weights, candle)"
        );
        let expected = "Please turn on the lights in the kitchen";
        let text = model.transcribe(&speak(expected)).expect("transcribes");
        let got = words(&text);
        for w in words(expected) {
            assert!(got.contains(&w), "{w:?} missing from {text:?}");
        }
        // Silence and empty input say nothing.
        assert_eq!(model.transcribe(&[]).expect("empty ok"), "");
        assert_eq!(
            model.transcribe(&vec![0.0; 16_000]).expect("silence ok"),
            ""
        );
    }

    /// candle-transformers' Whisper, decoder included, from the same weights.
    fn candle_whisper() -> Whisper {
        let bytes = std::fs::read(model_dir().join("model.bin")).expect("model.bin reads");
        let file = ct2::parse(&bytes).expect("model.bin parses");
        let cfg = ct2::whisper_config(&file, Vec::new()).expect("a Whisper model");
        let tensors = ct2::whisper_tensors(&file, &cfg, &Device::Cpu).expect("tensors");
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Whisper::load(&vb, cfg).expect("candle loads it")
    }

    /// candle's decoder, fed the whole token prefix at each step.
    struct FullPrefix<'a> {
        decoder: &'a mut candle_transformers::models::whisper::model::TextDecoder,
        features: &'a Tensor,
        first: bool,
    }

    impl Step for FullPrefix<'_> {
        fn run(&mut self, tokens: &[u32]) -> candle_core::Result<Tensor> {
            let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
            let hidden = self.decoder.forward(&input, self.features, self.first)?;
            self.first = false;
            Ok(hidden)
        }

        fn logits(&self, hidden: &Tensor, position: usize) -> candle_core::Result<Tensor> {
            self.decoder
                .final_linear(&hidden.i((.., position..position + 1, ..))?)?
                .flatten_all()
        }
    }

    /// The cached decoder picks the tokens candle's full-prefix one does, with the same
    /// scores, on the same encoder output: shortened windows of real speech, and one
    /// full 30 s window.
    #[test]
    fn cached_decoder_matches_candles() {
        let mut model = load_real();
        let mut reference = candle_whisper();
        let clips = [
            (
                "Please turn on the lights in the kitchen, it is dark.",
                false,
            ),
            ("Can you remind me to call my mother at six o'clock?", true),
            (
                "Hello there, can you tell me what the weather will be like tomorrow afternoon in London? I would like to go for a walk in the park with my friends.",
                false,
            ),
        ];
        let (_, mut worker) = model.parts();
        for (text, full_window) in clips {
            let pcm = speak(text);
            let mel = worker.mel.compute(&pcm);
            let seg = mel.content_frames.min(WINDOW_FRAMES);
            let frames = if full_window {
                WINDOW_FRAMES
            } else {
                (seg + PAD_FRAMES).div_ceil(FRAME_QUANTUM) * FRAME_QUANTUM
            };
            let budget = max_tokens(seg, worker.text_ctx);
            let early = frames < WINDOW_FRAMES;
            let features = worker.encode(&mel, 0, frames).expect("encodes");
            let ours = worker.decode(&features, budget, early).expect("decodes");
            let full = FullPrefix {
                decoder: &mut reference.decoder,
                features: &features,
                first: true,
            };
            let theirs = worker
                .greedy(full, worker.prompt.to_vec(), None, budget, early)
                .expect("decodes");
            let said = worker.vocab.decode(&ours.tokens);
            eprintln!(
                "{text:?} ({frames} frames): {} tokens; avg log-prob {} vs {}, P(no speech) {} vs {}",
                ours.tokens.len(),
                ours.avg_logprob,
                theirs.avg_logprob,
                ours.no_speech_prob,
                theirs.no_speech_prob
            );
            assert_eq!(ours.tokens, theirs.tokens, "{text:?} heard as {said:?}");
            assert!(words(&said).len() >= words(text).len() / 2, "{said:?}");
            assert_eq!(
                (ours.finished, ours.looped, ours.steps),
                (theirs.finished, theirs.looped, theirs.steps)
            );
            assert!(
                (ours.avg_logprob - theirs.avg_logprob).abs() < 1e-3,
                "{} vs {}",
                ours.avg_logprob,
                theirs.avg_logprob
            );
            assert!(
                (ours.no_speech_prob - theirs.no_speech_prob).abs() < 1e-4,
                "{} vs {}",
                ours.no_speech_prob,
                theirs.no_speech_prob
            );
        }
    }

    /// The cache gives the hidden states of a full run, whether the tokens go in one by
    /// one or several at a time.
    #[test]
    fn cache_matches_one_pass() {
        let mut model = load_real();
        let (_, mut worker) = model.parts();
        let pcm = speak("Good morning, how are you today?");
        let mel = worker.mel.compute(&pcm);
        let features = worker.encode(&mel, 0, 320).expect("encodes");
        let tokens: Vec<u32> = worker
            .prompt
            .iter()
            .copied()
            .chain([50, 3000, 11, 7, 900, 123])
            .collect();
        let dec = worker.decoder;
        let mut cache = dec.start(&features).expect("starts");
        let whole = dec.forward(&tokens, &mut cache).expect("runs");
        assert_eq!(cache.len(), tokens.len());
        for split in [1, 2, 5] {
            let mut cache = dec.start(&features).expect("starts");
            let head = dec.forward(&tokens[..split], &mut cache).expect("runs");
            let mut parts = vec![head];
            for t in &tokens[split..] {
                parts.push(dec.forward(&[*t], &mut cache).expect("runs"));
            }
            let steps = Tensor::cat(&parts, 1).expect("cat");
            let diff = (&steps - &whole)
                .and_then(|d| d.abs())
                .and_then(|d| d.max_all())
                .and_then(|d| d.to_scalar::<f32>())
                .expect("diff");
            assert!(diff < 1e-4, "split {split}: max difference {diff}");
        }
        // Past the last position is an error, not a panic.
        let mut cache = dec.start(&features).expect("starts");
        assert!(dec.forward(&vec![50; 449], &mut cache).is_err());
        assert!(dec.forward(&[], &mut cache).is_err());
    }

    /// CPU time used so far by all of this process's threads, in ms (Linux schedstat),
    /// so timings on a busy machine can be told from contention.
    fn cpu_ms() -> f64 {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return 0.0;
        };
        dir.flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .sum::<f64>()
            / 1e6
    }

    /// Load time, per-clip timings and peak memory; `WHISPER_BENCH_THREADS` sets threads:
    /// `cargo test --release -p vtuberd --lib whisper::tests::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench() {
        let threads = std::env::var("WHISPER_BENCH_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let started = std::time::Instant::now();
        let mut model = WhisperModel::load(&model_dir(), threads, None).expect("model loads");
        eprintln!("load: {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
        let clips = [
            "Please turn on the lights in the kitchen, it is dark.",
            "Can you remind me to call my mother at six o'clock?",
            "Hello there, can you tell me what the weather will be like tomorrow afternoon in London? I would like to go for a walk in the park with my friends.",
            "Once upon a time, in a small village at the edge of a great forest, there lived an old woodcutter and his wife. Every morning the woodcutter walked into the forest with his axe, and every evening he came home tired and hungry. One day, while he was cutting an old oak tree, he heard a small voice calling for help.",
        ];
        for text in clips {
            let pcm = speak(text);
            let secs = pcm.len() as f64 / 16_000.0;
            for _ in 0..3 {
                let (started, cpu) = (std::time::Instant::now(), cpu_ms());
                let (out, t) = model.transcribe_timed(&pcm).expect("transcribes");
                let ms = started.elapsed().as_secs_f64() * 1e3;
                eprintln!(
                    "{secs:.2} s audio: {ms:.0} ms, RTF {:.3} (CPU {:.0} ms); mel {:.0} ms, encoder {:.0} ms ({} frames), decoder {:.0} ms ({} steps), {} retries: {out:?}",
                    ms / 1e3 / secs,
                    cpu_ms() - cpu,
                    t.mel_ms,
                    t.encoder_ms,
                    t.encoder_frames,
                    t.decoder_ms,
                    t.steps,
                    t.retries
                );
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines().filter(|l| l.starts_with("VmHWM")) {
                eprintln!("{line}");
            }
        }
    }
}
