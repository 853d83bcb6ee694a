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
    pub mcp: crate::mcp::config::McpConfig,
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
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::OpenaiCompatible => "openai_compatible",
        }
    }
}

/// `llm:` section. Keys that do not apply to the chosen provider are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    /// embedded: GGUF file. Default `$XDG_DATA_HOME/vtuber/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub model_path: Option<PathBuf>,
    /// embedded: context window in tokens (capped at the model's trained context).
    pub context_size: u32,
    /// embedded: inference threads; default = available cores.
    pub threads: Option<u32>,
    /// openai_compatible: base URL up to and including `/v1`.
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
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Embedded,
            model_path: None,
            context_size: 4096,
            threads: None,
            base_url: "http://127.0.0.1:11434/v1".into(),
            model: None,
            api_key_env: None,
            temperature: None,
            max_tokens: Some(512),
            timeout_secs: 60,
            retries: 2,
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
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self { client_queue: 1024 }
    }
}
