//! The shape of `conf.yaml`. Every field has a default, so an empty file (or none) is a
//! complete configuration running the embedded model.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub llm: LlmConfig,
    pub character: CharacterConfig,
    pub history: HistoryConfig,
    pub daemon: DaemonConfig,
    pub mcp: super::mcp::McpConfig,
    pub speech: SpeechConfig,
    pub audio: AudioConfig,
    pub web: WebConfig,
}

/// Which LLM implementation serves the character.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// A GGUF model run in process by llama.cpp.
    #[default]
    Embedded,
    /// Any server speaking OpenAI's `/v1/chat/completions` with SSE streaming.
    OpenaiCompatible,
    /// Anthropic's Messages API (`/v1/messages`).
    Anthropic,
    /// Google's Gemini API (`/v1beta/models/{model}:streamGenerateContent`).
    Gemini,
    /// Ollama's native API (`/api/chat`).
    Ollama,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::OpenaiCompatible => "openai_compatible",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
        }
    }

    /// The base URL this provider uses when `llm.base_url` is left at its default.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Embedded | Self::OpenaiCompatible => DEFAULT_BASE_URL,
            Self::Anthropic => "https://api.anthropic.com",
            Self::Gemini => "https://generativelanguage.googleapis.com",
            Self::Ollama => "http://127.0.0.1:11434",
        }
    }
}

/// `llm.base_url`'s default: a local OpenAI-compatible server (Ollama's `/v1`).
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434/v1";

/// `llm:` section. Keys that do not apply to the chosen provider are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    /// embedded: GGUF file. Default `$XDG_DATA_HOME/vtuber/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub model_path: Option<PathBuf>,
    /// embedded: context window in tokens (capped at the model's trained context).
    /// ollama: sent as `options.num_ctx`.
    pub context_size: u32,
    /// embedded: inference threads; default = available cores.
    pub threads: Option<u32>,
    /// openai_compatible: base URL up to and including `/v1`. anthropic, gemini, ollama:
    /// the server's root; left at the default, each uses its own (see
    /// [`LlmConfig::effective_base_url`]).
    pub base_url: String,
    /// openai_compatible: model name as the server knows it.
    pub model: Option<String>,
    /// openai_compatible: name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    pub temperature: Option<f32>,
    /// Upper bound on reply length in tokens.
    pub max_tokens: Option<u32>,
    /// Connect and first-byte timeout, and the longest silence mid-stream.
    pub timeout_secs: u64,
    /// Retries (with exponential backoff) on connection errors, 429 and 5xx before the
    /// first token.
    pub retries: u32,
    /// The daemon's own bound on one turn's reply, in streamed pieces (about tokens),
    /// whatever the server does with `max_tokens`. Unset: 4 × `max_tokens`.
    #[serde(deserialize_with = "at_least_one")]
    pub max_reply_tokens: Option<u64>,
    /// The same bound in bytes of reply text (tool-call arguments included). Unset:
    /// 16 × the token limit.
    #[serde(deserialize_with = "at_least_one")]
    pub max_reply_bytes: Option<u64>,
    /// Longest time one turn may spend receiving its reply (tool calls not counted).
    #[serde(deserialize_with = "secs_at_least_one")]
    pub max_reply_secs: u64,
}

/// What `max_reply_tokens` means when `max_tokens` is unset too.
const DEFAULT_MAX_TOKENS: u64 = 512;

/// A turn's effective reply limits (see [`LlmConfig::reply_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    pub tokens: u64,
    pub bytes: u64,
    pub time: std::time::Duration,
}

impl LlmConfig {
    /// The base URL the provider talks to, without a trailing `/`: `base_url` as set,
    /// or the provider's own default when `base_url` was left at the default (the
    /// OpenAI-compatible one). For `ollama` a trailing `/v1` (the OpenAI-compatible
    /// address of the same server) is dropped.
    pub fn effective_base_url(&self) -> String {
        let set = self.base_url.trim().trim_end_matches('/');
        let url = if set == DEFAULT_BASE_URL || set.is_empty() {
            self.provider.default_base_url()
        } else {
            set
        };
        let url = match self.provider {
            ProviderKind::Ollama => url.strip_suffix("/v1").unwrap_or(url),
            _ => url,
        };
        url.trim_end_matches('/').to_owned()
    }

    /// The per-turn bounds with their defaults filled in.
    pub fn reply_limits(&self) -> ReplyLimits {
        let tokens = self
            .max_reply_tokens
            .unwrap_or_else(|| 4 * self.max_tokens.map_or(DEFAULT_MAX_TOKENS, u64::from).max(1));
        ReplyLimits {
            tokens,
            bytes: self
                .max_reply_bytes
                .unwrap_or_else(|| tokens.saturating_mul(16)),
            time: std::time::Duration::from_secs(self.max_reply_secs.max(1)),
        }
    }
}

/// An optional count that must be at least 1 when given.
fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<u64>::deserialize(d)? {
        Some(0) => Err(serde::de::Error::custom(
            "must be a whole number of at least 1, or null for the default",
        )),
        other => Ok(other),
    }
}

/// A number of seconds that must be at least 1.
fn secs_at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "must be a whole number of seconds, at least 1 (default 300)",
        )),
        n => Ok(n),
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Embedded,
            model_path: None,
            context_size: 4096,
            threads: None,
            base_url: DEFAULT_BASE_URL.into(),
            model: None,
            api_key_env: None,
            temperature: None,
            max_tokens: Some(512),
            timeout_secs: 60,
            retries: 2,
            max_reply_tokens: None,
            max_reply_bytes: None,
            max_reply_secs: 300,
        }
    }
}

/// Per-character LLM overrides (`[llm]` in a character file); unset keys inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmOverrides {
    pub provider: Option<ProviderKind>,
    pub model_path: Option<PathBuf>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key_env: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

impl LlmOverrides {
    /// `base` with this character's overrides applied.
    pub fn apply(&self, base: &LlmConfig) -> LlmConfig {
        let mut out = base.clone();
        if let Some(p) = self.provider {
            out.provider = p;
        }
        if let Some(p) = &self.model_path {
            out.model_path = Some(p.clone());
        }
        if let Some(u) = &self.base_url {
            out.base_url = u.clone();
        }
        if let Some(m) = &self.model {
            out.model = Some(m.clone());
        }
        if let Some(k) = &self.api_key_env {
            out.api_key_env = Some(k.clone());
        }
        if self.temperature.is_some() {
            out.temperature = self.temperature;
        }
        if self.max_tokens.is_some() {
            out.max_tokens = self.max_tokens;
        }
        out
    }
}

/// `character:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CharacterConfig {
    /// Character id (file stem) to start with.
    pub default: String,
    /// Extra folder of character TOML files; default `$XDG_CONFIG_HOME/vtuber/characters`.
    pub dir: Option<PathBuf>,
}

impl Default for CharacterConfig {
    fn default() -> Self {
        Self {
            default: "mao".into(),
            dir: None,
        }
    }
}

/// `history:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// SQLite file; default `$XDG_DATA_HOME/vtuber/history.sqlite3`.
    pub database: Option<PathBuf>,
    /// Most prompt tokens spent on earlier messages; older ones drop out of the prompt
    /// (they stay in the database).
    pub token_budget: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            database: None,
            token_budget: 2048,
        }
    }
}

/// `daemon:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Events buffered per client before it is marked lagged.
    pub client_queue: usize,
    /// Longest orderly stop (store the reply in progress, tell clients, stop tool
    /// servers) before the daemon stops at once; a second signal does not wait either.
    #[serde(deserialize_with = "stop_secs")]
    pub stop_timeout_secs: u64,
    /// What the log shows: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// filter directives (`info,vtuberd::mcp=debug`). `--verbose`, `$VTUBER_LOG` and
    /// `$RUST_LOG` override it. Applied live on reload.
    #[serde(deserialize_with = "log_filter")]
    pub log_level: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            client_queue: 1024,
            stop_timeout_secs: 5,
            log_level: "info".to_owned(),
        }
    }
}

fn log_filter<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match tracing_subscriber::EnvFilter::builder().parse(&s) {
        Ok(_) => Ok(s),
        Err(e) => Err(serde::de::Error::custom(format!(
            "`{s}` is not a log filter ({e}): write a level such as info or debug, or directives such as info,vtuberd::mcp=debug"
        ))),
    }
}

fn stop_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "must be a whole number of seconds, at least 1 (default 5)",
        )),
        n => Ok(n),
    }
}

/// `speech:` section: voice detection, recognition and synthesis engines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// `false`: text only; no speech model is loaded.
    pub enabled: bool,
    /// Folder of model files; default `$XDG_DATA_HOME/vtuber/models`.
    pub models_dir: Option<PathBuf>,
    /// ONNX Runtime shared library (VAD, Piper); default
    /// `<models_dir>/onnxruntime/libonnxruntime.so`, or `$ORT_DYLIB_PATH`.
    pub onnxruntime: Option<PathBuf>,
    pub vad: VadConfig,
    pub asr: AsrConfig,
    pub tts: TtsConfig,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            models_dir: None,
            onnxruntime: None,
            vad: VadConfig::default(),
            asr: AsrConfig::default(),
            tts: TtsConfig::default(),
        }
    }
}

/// `speech.vad:` Silero voice activity detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// Silero ONNX model; default `<models_dir>/silero_vad.onnx`.
    pub model: Option<PathBuf>,
    /// Speech probability (0..1) above which a frame counts as speech.
    pub threshold: f32,
    /// Speech shorter than this is ignored (coughs, clicks).
    pub min_speech_ms: u32,
    /// Silence that ends the utterance (end of turn).
    pub min_silence_ms: u32,
    /// Audio kept from before speech was detected, so first syllables are not cut.
    pub pre_roll_ms: u32,
    /// Longest utterance; longer speech is cut and sent.
    pub max_utterance_secs: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            model: None,
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 600,
            pre_roll_ms: 300,
            max_utterance_secs: 30,
        }
    }
}

/// Speech recognition engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AsrBackend {
    /// Whisper run in process (CTranslate2-format weights, candle).
    #[default]
    Whisper,
    /// A server with OpenAI's `/v1/audio/transcriptions` API.
    OpenaiCompatible,
    /// Deepgram's `/v1/listen` (`speech.asr.deepgram`).
    Deepgram,
    /// Azure AI Speech short-audio REST (`speech.asr.azure`).
    Azure,
}

/// `speech.asr:` speech recognition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsrConfig {
    pub backend: AsrBackend,
    /// whisper: folder with model.bin, config.json, vocabulary.txt (faster-whisper /
    /// CTranslate2 format); default `<models_dir>/whisper-tiny.en`.
    pub model_dir: Option<PathBuf>,
    /// whisper: CPU threads; unset means all available cores.
    pub threads: Option<u32>,
    /// openai_compatible: base URL up to and including `/v1`.
    pub base_url: String,
    /// openai_compatible: model name (`whisper-1`, `Systran/faster-whisper-small`, ...).
    pub model: String,
    /// openai_compatible: NAME of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Spoken language (ISO 639-1). Multilingual Whisper models transcribe it, or detect
    /// it per utterance when unset or `auto`; remote backends get it as a hint.
    pub language: Option<String>,
    pub timeout_secs: u64,
    pub deepgram: DeepgramConfig,
    pub azure: AzureAsrConfig,
}

/// `speech.asr.deepgram:` Deepgram pre-recorded transcription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepgramConfig {
    pub base_url: String,
    /// NAME of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// `nova-3`, `nova-2`, `whisper-large`, ...
    pub model: String,
    /// Punctuation and formatting of numbers and dates.
    pub smart_format: bool,
}

impl Default for DeepgramConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.deepgram.com".into(),
            api_key_env: Some("DEEPGRAM_API_KEY".into()),
            model: "nova-3".into(),
            smart_format: true,
        }
    }
}

/// `speech.asr.azure:` Azure AI Speech, short audio (up to 60 s) over REST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureAsrConfig {
    /// Unset means `https://{region}.stt.speech.microsoft.com`.
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub region: String,
    /// A full locale (`en-US`, `ja-JP`): the service needs one.
    pub language: String,
}

impl Default for AzureAsrConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key_env: Some("AZURE_SPEECH_KEY".into()),
            region: "eastus".into(),
            language: "en-US".into(),
        }
    }
}

impl Default for AsrConfig {
    fn default() -> Self {
        Self {
            backend: AsrBackend::Whisper,
            model_dir: None,
            threads: None,
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: "whisper-1".into(),
            api_key_env: None,
            language: None,
            timeout_secs: 30,
            deepgram: DeepgramConfig::default(),
            azure: AzureAsrConfig::default(),
        }
    }
}

/// `speech.tts:` speech synthesis. Each character picks its engine and voice in its
/// `[voice]` table; this section says where those live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsConfig {
    /// piper: folder of voices (`<voice>.onnx` + `<voice>.onnx.json`); default
    /// `<models_dir>/piper`.
    pub piper_dir: Option<PathBuf>,
    /// piper: CPU threads for one synthesis; unset means planned from the cores (see
    /// `cpu_plan`).
    pub threads: Option<u32>,
    /// openai: base URL up to and including `/v1`.
    pub base_url: String,
    /// openai: model name (`tts-1`, `kokoro`, ...).
    pub model: String,
    /// openai: NAME of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    pub timeout_secs: u64,
    /// The first sentence may be cut at a comma once it is this long, to speak sooner.
    pub first_sentence_min_chars: usize,
    /// Longer sentences are cut at a word boundary.
    pub max_sentence_chars: usize,
    /// Sentences synthesized at once (audio still leaves in order); 0 sizes it to the
    /// engine: 4 for a network service, 2 for an engine running here (one synthesizes
    /// while the next is queued).
    pub parallel: u32,
    /// The engine of characters whose `[voice]` names none.
    pub backend: String,
    /// `elevenlabs`: ElevenLabs' streaming text-to-speech API.
    pub elevenlabs: ElevenLabsConfig,
    /// `azure`: Azure AI Speech, SSML over REST.
    pub azure: AzureTtsConfig,
    /// `gpt_sovits`: a GPT-SoVITS `api_v2.py` server.
    pub gpt_sovits: GptSovitsConfig,
    /// `fish_audio`: Fish Audio's `/v1/tts`.
    pub fish_audio: FishAudioConfig,
    /// `siliconflow`: SiliconFlow's OpenAI-like `/v1/audio/speech`.
    pub siliconflow: SiliconFlowConfig,
    /// `minimax`: MiniMax `t2a_v2`.
    pub minimax: MiniMaxConfig,
    /// `cosyvoice`: CosyVoice's FastAPI server.
    pub cosyvoice: CosyVoiceConfig,
}

impl Default for TtsConfig {
    fn default() -> Self {
        Self {
            piper_dir: None,
            threads: None,
            base_url: "http://127.0.0.1:8880/v1".into(),
            model: "tts-1".into(),
            api_key_env: None,
            timeout_secs: 30,
            first_sentence_min_chars: 24,
            max_sentence_chars: 240,
            parallel: 0,
            backend: "piper".into(),
            elevenlabs: ElevenLabsConfig::default(),
            azure: AzureTtsConfig::default(),
            gpt_sovits: GptSovitsConfig::default(),
            fish_audio: FishAudioConfig::default(),
            siliconflow: SiliconFlowConfig::default(),
            minimax: MiniMaxConfig::default(),
            cosyvoice: CosyVoiceConfig::default(),
        }
    }
}

/// Declares a network TTS engine's settings: `base_url`, `api_key_env`, `voice` (used
/// when the character's `[voice] voice` is empty), `timeout_secs`, then its own keys;
/// all with defaults, unknown keys refused.
macro_rules! tts_engine_config {
    (
        $(#[$meta:meta])* $name:ident {
            base_url: $base:expr, api_key_env: $key:expr, voice: $voice:expr,
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// Where the service is.
            pub base_url: String,
            /// NAME of the environment variable holding the API key.
            pub api_key_env: Option<String>,
            /// The voice of characters whose `[voice] voice` is empty.
            pub voice: String,
            pub timeout_secs: u64,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    base_url: $base.into(),
                    api_key_env: $key.map(Into::into),
                    voice: $voice.into(),
                    timeout_secs: 30,
                    $( $field: $default, )*
                }
            }
        }
    };
}

tts_engine_config!(
    /// `speech.tts.elevenlabs:`; `voice` is a voice ID.
    ElevenLabsConfig {
        base_url: "https://api.elevenlabs.io", api_key_env: Some("ELEVENLABS_API_KEY"),
        voice: "JBFqnCBsd6RMkjVDRZzb",
        model_id: String = "eleven_flash_v2_5".into(),
        /// `mp3_44100_128`, `mp3_22050_32`, `pcm_24000`, ... (`opus_*` and `ulaw_*` cannot be decoded).
        output_format: String = "mp3_44100_128".into(),
    }
);

tts_engine_config!(
    /// `speech.tts.azure:`; `voice` is a neural voice name.
    AzureTtsConfig {
        base_url: "", api_key_env: Some("AZURE_SPEECH_KEY"),
        voice: "en-US-AvaMultilingualNeural",
        /// Region of the Speech resource; the URL is `https://{region}.tts.speech.microsoft.com`
        /// unless `base_url` is set.
        region: String = "eastus".into(),
        /// `X-Microsoft-OutputFormat`: `riff-*-pcm`, `raw-*-pcm` or `*-mp3`.
        output_format: String = "riff-24khz-16bit-mono-pcm".into(),
    }
);

tts_engine_config!(
    /// `speech.tts.gpt_sovits:`; `voice` is the reference audio path on the server.
    GptSovitsConfig {
        base_url: "http://127.0.0.1:9880", api_key_env: None::<&str>, voice: "",
        /// Language of the text: `auto`, `en`, `zh`, `ja`, `ko`, `yue`, `all_zh`, ...
        text_lang: String = "auto".into(),
        /// What the reference audio says, and its language.
        prompt_text: String = String::new(),
        prompt_lang: String = "en".into(),
        /// `cut0`..`cut5`: how the server itself splits text.
        text_split_method: String = "cut5".into(),
        /// `wav`, `ogg` or `raw` (32 kHz 16-bit).
        media_type: String = "wav".into(),
        /// Ask the server to stream the audio as it is made.
        streaming_mode: bool = false,
    }
);

tts_engine_config!(
    /// `speech.tts.fish_audio:`; `voice` is a reference (voice model) ID.
    FishAudioConfig {
        base_url: "https://api.fish.audio", api_key_env: Some("FISH_API_KEY"), voice: "",
        /// The `model` header: `s1`, `speech-1.6`, `speech-1.5`.
        model: String = "s1".into(),
        /// `mp3`, `wav` or `pcm` (opus cannot be decoded).
        format: String = "mp3".into(),
        /// `normal` or `balanced` (faster, lower quality).
        latency: String = "normal".into(),
    }
);

tts_engine_config!(
    /// `speech.tts.siliconflow:`; `voice` is `model:voice` or a voice of `model`.
    SiliconFlowConfig {
        base_url: "https://api.siliconflow.cn/v1", api_key_env: Some("SILICONFLOW_API_KEY"),
        voice: "alex",
        model: String = "FunAudioLLM/CosyVoice2-0.5B".into(),
        /// `mp3`, `wav` or `pcm` (opus cannot be decoded).
        response_format: String = "mp3".into(),
        sample_rate: u32 = 32_000,
    }
);

tts_engine_config!(
    /// `speech.tts.minimax:`; `voice` is a voice ID.
    MiniMaxConfig {
        base_url: "https://api.minimax.io", api_key_env: Some("MINIMAX_API_KEY"),
        voice: "male-qn-qingse",
        /// The account's GroupId (the `GroupId` query parameter).
        group_id: String = String::new(),
        model: String = "speech-02-turbo".into(),
        /// `mp3`, `wav` or `pcm`.
        format: String = "mp3".into(),
        sample_rate: u32 = 32_000,
    }
);

tts_engine_config!(
    /// `speech.tts.cosyvoice:`; `voice` is a built-in speaker (`中文女`, `英文男`, ...), used
    /// when no `prompt_wav` is set.
    CosyVoiceConfig {
        base_url: "http://127.0.0.1:50000", api_key_env: None::<&str>, voice: "英文女",
        /// A reference recording on this machine: clone it with `inference_zero_shot`.
        prompt_wav: Option<PathBuf> = None,
        /// What the reference recording says.
        prompt_text: String = String::new(),
        /// The model's output rate (22050 for CosyVoice 1, 24000 for CosyVoice 2).
        sample_rate: u32 = 22_050,
    }
);

/// Where replies are played.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Playback {
    /// The daemon's speaker only.
    Local,
    /// Clients only (browser page, scripts); the daemon stays silent.
    Clients,
    /// Both.
    #[default]
    Both,
}

/// What may interrupt the character while it speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BargeIn {
    Off,
    /// Any detected speech.
    #[default]
    Voice,
    /// Only pressing the push-to-talk key.
    PushToTalk,
}

/// `audio:` section: the daemon's own microphone and speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Microphone: `default`, a device name, or `none`.
    pub input: String,
    /// Speaker: `default`, a device name, `none`, or `virtual` (plays into nothing in
    /// real time: headless tests and benchmarks).
    pub output: String,
    pub playback: Playback,
    /// Start listening hands-free as soon as the daemon starts.
    pub listen_on_start: bool,
    pub barge_in: BargeIn,
    /// Cancel the daemon's own voice from the microphone (WebRTC audio processing), so
    /// the character does not interrupt itself without headphones.
    pub echo_cancellation: bool,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            input: "default".into(),
            output: "default".into(),
            playback: Playback::Both,
            listen_on_start: true,
            barge_in: BargeIn::Voice,
            echo_cancellation: true,
        }
    }
}

/// `web:` section: the browser page and its WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    pub enabled: bool,
    /// Address to bind. Anything but loopback requires `tls` and `auth: token`.
    pub host: String,
    /// 0 picks a free port (reported in the log and `vtuber status --json`).
    pub port: u16,
    /// Extra origins allowed to open the WebSocket (the page's own origin always is).
    pub allowed_origins: Vec<String>,
    /// `token` (the default): the page's WebSocket needs the access token; `none`: no
    /// token (any local user can drive the character; warned in the log and `status`).
    pub auth: WebAuth,
    /// The access token clients must present (`?token=`, the page's cookie, or
    /// `Authorization: Bearer`); may be `${VAR}` or `secret:NAME`. Unset: a random one
    /// kept in `<data dir>/private/web-token`.
    pub token: Option<String>,
    pub tls: Option<TlsConfig>,
    /// Folder of installed web assets (Live2D runtime, pixi, models); default
    /// `$XDG_DATA_HOME/vtuber/web`.
    pub assets_dir: Option<PathBuf>,
    /// Folder of background images, served at `/bg/` and listed by `fetch-backgrounds`
    /// (Open-LLM-VTuber's `backgrounds/`); default `<assets_dir>/bg`.
    pub backgrounds_dir: Option<PathBuf>,
    /// Where the page loads Live2D's Cubism Core from for Cubism 3+ models, instead of
    /// the installed `<assets_dir>/libs/live2dcubismcore.min.js` (Core 4.2.2, which cannot
    /// read Cubism 5 models): e.g. Live2D's own
    /// `https://cubism.live2d.com/sdk-web/cubismcore/live2dcubismcore.min.js`. An
    /// `https://` or `http://` address (its origin is added to the page's script policy)
    /// or a path on this server.
    pub live2d_core_url: Option<String>,
    /// The Live2D models, served at `/live2d-models/`; default `<assets_dir>/live2d-models`.
    /// May be an Open-LLM-VTuber checkout's `live2d-models/`: its `model_dict.json` (in
    /// that folder or the one above it) is read as is.
    pub live2d_models_dir: Option<PathBuf>,
    /// Largest WebSocket message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Messages per second one connection may send (bursts up to twice that).
    pub max_messages_per_sec: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 12393,
            allowed_origins: Vec::new(),
            auth: WebAuth::Token,
            token: None,
            tls: None,
            assets_dir: None,
            backgrounds_dir: None,
            live2d_core_url: None,
            live2d_models_dir: None,
            max_message_bytes: 4 * 1024 * 1024,
            max_messages_per_sec: 200,
        }
    }
}

/// `web.auth`: whether the page's WebSocket needs the access token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebAuth {
    /// `web.token`, else a generated one kept in the data folder.
    #[default]
    Token,
    /// No token: anyone who can reach the port drives the character.
    None,
}

impl WebAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::None => "none",
        }
    }
}

/// `web.tls:` certificate and key (PEM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}
