//! Characters: persona, greeting, avatar and voice, one TOML file each.
//!
//! Two built-ins are compiled in from the repository's `characters/` so a fresh install
//! has someone to talk to; files in the user's character folder add to them or replace
//! them by id (file stem). The folder is watched, so edits apply on save.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use vtuber_shared::CharacterInfo;

use crate::config::LlmOverrides;
use crate::speech::Voice;

/// Compiled-in characters: (id, TOML text).
const BUILT_IN: &[(&str, &str)] = &[
    ("mao", include_str!("../../characters/mao.toml")),
    ("sage", include_str!("../../characters/sage.toml")),
];

/// A character file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct CharacterFile {
    name: String,
    #[serde(default)]
    description: String,
    greeting: Option<String>,
    persona: String,
    #[serde(default)]
    avatar: Avatar,
    #[serde(default)]
    voice: Voice,
    #[serde(default)]
    llm: LlmOverrides,
    #[serde(default)]
    proactive: Proactive,
}

/// Speaking up after a silence (Open-LLM-VTuber's proactive speech). Off by default:
/// a character that talks unasked is a choice, not a surprise.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Proactive {
    /// Seconds of quiet (no turn, no speech, nobody talking) before speaking up; 0 is off.
    pub after_secs: u64,
    /// The instruction the model gets; it is not stored or shown as a message.
    pub prompt: String,
    /// How many times in a row it may speak up before the user says something.
    pub max_in_a_row: u32,
    /// Each unanswered attempt multiplies the wait by this, so silence is respected.
    pub backoff: f64,
}

impl Default for Proactive {
    fn default() -> Self {
        Self {
            after_secs: 0,
            prompt: "(Nobody has said anything for a while. Say one short thing, in character, \
                     that picks the conversation up again or asks the user something. Do not \
                     mention this note.)"
                .into(),
            max_in_a_row: 2,
            backoff: 2.0,
        }
    }
}

impl Proactive {
    /// The problem with these settings, if any.
    fn check(&self) -> Option<String> {
        if !(self.backoff.is_finite() && self.backoff >= 1.0) {
            return Some(format!(
                "proactive.backoff: expected a number of at least 1.0, got {}",
                self.backoff
            ));
        }
        if self.after_secs > 0 && self.prompt.trim().is_empty() {
            return Some(
                "proactive.prompt: empty; write the instruction, or remove the key for the default"
                    .into(),
            );
        }
        None
    }
}

/// What the browser page shows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Avatar {
    /// Live2D model name.
    pub model: String,
    /// The model shown instead when `model` is not installed: the default character
    /// wants the Cubism 3 sample (Haru), whose Cubism Core some machines lack, and
    /// should still have a face there.
    pub fallback: Option<String>,
    /// Expression tag (as in `[joy]`) → the model's expression index.
    pub emotions: BTreeMap<String, i64>,
}

impl Default for Avatar {
    fn default() -> Self {
        Self {
            model: "shizuku".into(),
            fallback: None,
            emotions: BTreeMap::new(),
        }
    }
}

/// A loaded character.
#[derive(Debug, Clone, PartialEq)]
pub struct Character {
    pub id: String,
    pub name: String,
    pub description: String,
    pub greeting: Option<String>,
    pub persona: String,
    pub avatar: Avatar,
    pub voice: Voice,
    pub llm: LlmOverrides,
    pub proactive: Proactive,
    /// The file it came from; `None` for a built-in.
    pub path: Option<PathBuf>,
}

impl Character {
    pub fn info(&self) -> CharacterInfo {
        CharacterInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            greeting: self.greeting.clone(),
            source: self
                .path
                .as_ref()
                .map_or_else(|| "built-in".to_owned(), |p| p.display().to_string()),
        }
    }

    /// The system prompt: persona plus, when the avatar has an emotion map, the list of
    /// expression tags the model may use.
    pub fn system_prompt(&self) -> String {
        let mut prompt = self.persona.trim().to_owned();
        if !self.avatar.emotions.is_empty() {
            let tags: Vec<String> = self
                .avatar
                .emotions
                .keys()
                .map(|k| format!("[{k}]"))
                .collect();
            prompt.push_str(&format!(
                "\n\nYou may show feelings by writing one of these tags before a sentence: {}.",
                tags.join(", ")
            ));
        }
        prompt
    }
}

/// A character file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CharacterProblem {
    pub path: String,
    pub message: String,
}

fn parse(id: &str, text: &str, path: Option<&Path>) -> Result<Character, CharacterProblem> {
    let shown = path.map_or_else(|| format!("built-in {id}"), |p| p.display().to_string());
    let file: CharacterFile = toml::from_str(text).map_err(|e| CharacterProblem {
        path: shown.clone(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    if file.name.trim().is_empty() {
        return Err(CharacterProblem {
            path: shown,
            message: "`name` is empty: give the character a display name".into(),
        });
    }
    if let Some(message) = file.proactive.check() {
        return Err(CharacterProblem {
            path: shown,
            message,
        });
    }
    Ok(Character {
        id: id.to_owned(),
        name: file.name,
        description: file.description,
        greeting: file.greeting,
        persona: file.persona,
        avatar: file.avatar,
        voice: file.voice,
        llm: file.llm,
        proactive: file.proactive,
        path: path.map(Path::to_path_buf),
    })
}

/// Every known character by id.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    characters: BTreeMap<String, Character>,
}

impl Roster {
    /// Built-ins plus the `*.toml` files in `dir` (which may not exist). Broken files are
    /// skipped and returned as problems, so one typo never takes the others down.
    pub fn load(dir: Option<&Path>) -> (Self, Vec<CharacterProblem>) {
        let mut characters = BTreeMap::new();
        let mut problems = Vec::new();
        for (id, text) in BUILT_IN {
            match parse(id, text, None) {
                Ok(c) => {
                    characters.insert((*id).to_owned(), c);
                }
                Err(p) => problems.push(p),
            }
        }
        if let Some(dir) = dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for path in paths {
                let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                match std::fs::read_to_string(&path) {
                    Ok(text) => match parse(id, &text, Some(&path)) {
                        Ok(c) => {
                            characters.insert(id.to_owned(), c);
                        }
                        Err(p) => problems.push(p),
                    },
                    Err(e) => problems.push(CharacterProblem {
                        path: path.display().to_string(),
                        message: format!("cannot read: {e}"),
                    }),
                }
            }
        }
        (Self { characters }, problems)
    }

    pub fn get(&self, id: &str) -> Option<&Character> {
        self.characters.get(id)
    }

    /// Finds by id, or by display name ignoring case.
    pub fn find(&self, name: &str) -> Option<&Character> {
        self.characters.get(name).or_else(|| {
            self.characters
                .values()
                .find(|c| c.name.eq_ignore_ascii_case(name))
        })
    }

    pub fn infos(&self) -> Vec<CharacterInfo> {
        self.characters.values().map(Character::info).collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.characters.keys().cloned().collect()
    }
}

/// Watches `dir` and sends `()` (debounced) whenever a character file changes. The
/// returned watcher must be kept alive.
pub fn watch(dir: &Path) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::{RecursiveMode, Watcher};
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev
                .paths
                .iter()
                .any(|p| p.extension().is_some_and(|x| x == "toml"))
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        // Editors write in several steps (truncate, write, rename): wait for quiet.
        while raw_rx.recv().await.is_some() {
            while let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(150), raw_rx.recv()).await
            {}
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok((watcher, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_load() {
        let (roster, problems) = Roster::load(None);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(roster.ids().len() >= 2);
        let mao = roster.get("mao").unwrap();
        assert_eq!(mao.name, "Mao");
        assert!(mao.system_prompt().contains("[joy]"));
        assert_eq!(roster.find("SAGE").map(|c| c.id.as_str()), Some("sage"));
        assert_eq!(roster.get("sage").unwrap().llm.temperature, Some(0.3));
    }

    #[test]
    fn a_character_may_pick_a_native_provider() {
        use crate::config::{LlmConfig, ProviderKind};
        for (name, kind) in [
            ("anthropic", ProviderKind::Anthropic),
            ("gemini", ProviderKind::Gemini),
            ("ollama", ProviderKind::Ollama),
        ] {
            let text = format!(
                "name = \"Ada\"\npersona = \"p\"\n[llm]\nprovider = \"{name}\"\nmodel = \"m\"\n"
            );
            let c = parse("ada", &text, None).unwrap();
            let effective = c.llm.apply(&LlmConfig::default());
            assert_eq!(effective.provider, kind);
            assert_eq!(effective.effective_base_url(), kind.default_base_url());
        }
    }

    #[test]
    fn user_files_add_and_override_and_bad_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mao.toml"),
            "name = \"Mao 2\"\npersona = \"p\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("new.toml"),
            "name = \"New\"\npersona = \"x\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "name = \"B\"\npersonna = \"x\"\n",
        )
        .unwrap();
        let (roster, problems) = Roster::load(Some(dir.path()));
        assert_eq!(roster.get("mao").unwrap().name, "Mao 2");
        assert!(roster.get("new").is_some());
        assert!(roster.get("bad").is_none());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("personna"),
            "{:?}",
            problems[0]
        );
    }
}
