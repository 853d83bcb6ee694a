//! `vtuber characters import FILE`: an Open-LLM-VTuber character (its `conf.yaml` or a
//! `characters/*.yaml`) as one of our character files, so its users keep their persona,
//! avatar and voice.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::Value;

/// The converted character: its id (file stem), the TOML text, and what did not map.
#[derive(Debug)]
pub struct Imported {
    pub id: String,
    pub toml: String,
    pub notes: Vec<String>,
}

#[derive(Serialize)]
struct CharacterOut {
    name: String,
    persona: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar: Option<AvatarOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    voice: Option<VoiceOut>,
}

#[derive(Serialize)]
struct AvatarOut {
    model: String,
}

#[derive(Serialize)]
struct VoiceOut {
    tts: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    voice: String,
}

/// Open-LLM-VTuber's `tts_model` → our engine, and the key of its settings that names
/// the voice.
const TTS: &[(&str, &str, &str)] = &[
    ("azure_tts", "azure", "voice"),
    ("openai_tts", "openai", "voice"),
    ("elevenlabs_tts", "elevenlabs", "voice_id"),
    ("fish_api_tts", "fish_audio", "reference_id"),
    ("gpt_sovits_tts", "gpt_sovits", "ref_audio_path"),
    ("cosyvoice_tts", "cosyvoice", "spk_id"),
    ("cosyvoice2_tts", "cosyvoice", "spk_id"),
    ("minimax_tts", "minimax", "voice_id"),
    ("siliconflow_tts", "siliconflow", "default_voice"),
    ("piper_tts", "piper", "model_path"),
];

/// Converts the YAML text of an Open-LLM-VTuber config or character file.
pub fn import(yaml: &str) -> Result<Imported> {
    let root: Value = serde_saphyr::from_str(yaml).context("the file is not valid YAML")?;
    let config = root
        .get("character_config")
        .unwrap_or(&root)
        .as_object()
        .ok_or_else(|| anyhow!("no `character_config` mapping (is this an Open-LLM-VTuber conf.yaml or characters/*.yaml?)"))?;
    let text = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let Some(persona) = text("persona_prompt") else {
        bail!(
            "`character_config.persona_prompt` is missing or empty: there is no persona to import"
        );
    };
    let name = text("character_name").unwrap_or_else(|| "Character".to_owned());
    let id = file_id(
        text("conf_uid")
            .or_else(|| text("conf_name"))
            .as_deref()
            .unwrap_or(&name),
    );
    let mut notes = Vec::new();
    if let Some(human) = text("human_name") {
        notes.push(format!(
            "human_name `{human}` is not used: the prompt does not name the user"
        ));
    }
    if config.get("agent_config").is_some() {
        notes.push(
            "agent_config (the LLM) is not imported: set llm.* in conf.yaml, or [llm] in the character file"
                .into(),
        );
    }
    let avatar = text("live2d_model_name").map(|model| AvatarOut { model });
    let voice = config
        .get("tts_config")
        .and_then(|tts| voice(tts, &mut notes));
    let out = CharacterOut {
        name,
        persona,
        avatar,
        voice,
    };
    let body = toml::to_string(&out).context("cannot write the character as TOML")?;
    let toml = format!(
        "# Imported from an Open-LLM-VTuber character by `vtuber characters import`.\n\n{body}"
    );
    Ok(Imported { id, toml, notes })
}

/// The `[voice]` for Open-LLM-VTuber's `tts_config`, or `None` (with a note) for an
/// engine we do not have.
fn voice(tts: &Value, notes: &mut Vec<String>) -> Option<VoiceOut> {
    let model = tts.get("tts_model").and_then(Value::as_str)?.trim();
    let Some((_, engine, key)) = TTS.iter().find(|(olv, _, _)| *olv == model) else {
        notes.push(format!(
            "tts_model `{model}` has no counterpart here; the character uses the default voice (see `speech.tts` in conf.yaml)"
        ));
        return None;
    };
    let raw = tts
        .get(model)
        .and_then(|settings| settings.get(*key))
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    // Piper names voices by model file stem.
    let voice = if *engine == "piper" {
        Path::new(raw)
            .file_stem()
            .map(|s| s.to_string_lossy().trim_end_matches(".onnx").to_owned())
            .unwrap_or_default()
    } else {
        raw.to_owned()
    };
    notes.push(format!(
        "voice engine `{engine}`: its connection settings (base_url, api_key_env) go under speech.tts.{engine} in conf.yaml"
    ));
    Some(VoiceOut {
        tts: (*engine).to_owned(),
        voice,
    })
}

/// A file stem of lowercase letters, digits, `-` and `_`.
fn file_id(raw: &str) -> String {
    let id: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let id = id.trim_matches('_').to_owned();
    if id.is_empty() {
        "imported".to_owned()
    } else {
        id
    }
}

/// Prints the converted character, or with `dir` writes `<dir>/<id>.toml` (never over an
/// existing file).
pub fn import_command(file: &Path, dir: Option<PathBuf>) -> Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let imported = import(&yaml).with_context(|| format!("cannot import {}", file.display()))?;
    match dir {
        None => print!("{}", imported.toml),
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(format!("{}.toml", imported.id));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| {
                    format!(
                        "cannot create {} (a character with that id exists? remove it or print with no --write)",
                        path.display()
                    )
                })?;
            std::io::Write::write_all(&mut f, imported.toml.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {}; a running vtuberd picks it up at once: `vtuber characters switch {}`",
                path.display(),
                imported.id
            );
        }
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open-LLM-VTuber's own `characters/en_unhelpful_ai.yaml` shape.
    const OLV: &str = r#"
character_config:
  conf_name: 'Mao Pro'
  conf_uid: 'mao_pro_001'
  live2d_model_name: 'mao_pro'
  character_name: 'Mao'
  human_name: 'Human'
  avatar: 'mao.png'
  persona_prompt: |
    You are Mao, a "cheerful" streamer.
    Keep it short.
  agent_config:
    conversation_agent_choice: 'basic_memory_agent'
  tts_config:
    tts_model: 'azure_tts'
    azure_tts:
      api_key: 'secret-key'
      region: 'eastus'
      voice: 'en-US-AshleyNeural'
"#;

    #[test]
    fn an_open_llm_vtuber_character_becomes_a_character_file() {
        let imported = import(OLV).unwrap();
        assert_eq!(imported.id, "mao_pro_001");
        assert!(
            !imported.toml.contains("secret-key"),
            "keys are never copied"
        );
        let back: toml::Table = toml::from_str(&imported.toml).unwrap();
        assert_eq!(back["name"].as_str(), Some("Mao"));
        assert_eq!(
            back["persona"].as_str(),
            Some("You are Mao, a \"cheerful\" streamer.\nKeep it short.")
        );
        assert_eq!(back["avatar"]["model"].as_str(), Some("mao_pro"));
        assert_eq!(back["voice"]["tts"].as_str(), Some("azure"));
        assert_eq!(back["voice"]["voice"].as_str(), Some("en-US-AshleyNeural"));
        assert!(imported.notes.iter().any(|n| n.contains("agent_config")));
        assert!(
            imported
                .notes
                .iter()
                .any(|n| n.contains("speech.tts.azure"))
        );
    }

    #[test]
    fn unknown_engines_and_piper_paths_and_bad_files() {
        let edge = "character_config:\n  character_name: Aoi\n  persona_prompt: hi\n  tts_config:\n    tts_model: edge_tts\n";
        let imported = import(edge).unwrap();
        assert_eq!(imported.id, "aoi");
        assert!(!imported.toml.contains("[voice]"));
        assert!(imported.notes.iter().any(|n| n.contains("edge_tts")));

        let piper = "character_config:\n  character_name: P\n  persona_prompt: hi\n  tts_config:\n    tts_model: piper_tts\n    piper_tts:\n      model_path: models/piper/zh_CN-huayan-medium.onnx\n";
        let back: toml::Table = toml::from_str(&import(piper).unwrap().toml).unwrap();
        assert_eq!(back["voice"]["voice"].as_str(), Some("zh_CN-huayan-medium"));

        let no_persona = import("character_config:\n  character_name: X\n").unwrap_err();
        assert!(format!("{no_persona:#}").contains("persona_prompt"));
        assert!(import("- a list").is_err());
        assert!(import(": : :").is_err());
    }
}
