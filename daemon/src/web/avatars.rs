//! The characters' avatars as the page needs them (Live2D model and expression map):
//! a roster of the web server's own, reloaded when the character files change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use vtuber_shared::CharacterInfo;

use super::olv_messages::ServerMessage;
use crate::characters::Roster;

/// A character as the page needs it: the `set-model-and-conf` contents, minus the
/// per-connection `client_uid`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConf {
    pub conf_uid: String,
    pub conf_name: String,
    pub model_info: Value,
}

impl ModelConf {
    pub fn message(&self, client_uid: &str) -> ServerMessage {
        ServerMessage::SetModelAndConf {
            model_info: self.model_info.clone(),
            conf_name: self.conf_name.clone(),
            conf_uid: self.conf_uid.clone(),
            client_uid: client_uid.to_owned(),
        }
    }
}

/// The characters' avatars (the conversation only shares names): a roster of our own, reloaded
/// when the character files change.
pub struct Characters {
    roster: RwLock<Roster>,
    dir: Option<PathBuf>,
    assets_dir: PathBuf,
    /// `web.live2d_models_dir`: the models, and maybe Open-LLM-VTuber's model_dict.json.
    models_dir: PathBuf,
    /// `web.live2d_core_url`: with it, a Cubism 3+ model needs no installed Core.
    core_url: Option<String>,
    /// Cubism 2 model URLs already warned about (once each).
    warned: Mutex<BTreeSet<String>>,
}

impl Characters {
    pub fn load(
        dir: Option<PathBuf>,
        assets_dir: PathBuf,
        models_dir: PathBuf,
        core_url: Option<String>,
    ) -> Self {
        let (roster, _) = Roster::load(dir.as_deref());
        Self {
            roster: RwLock::new(roster),
            dir,
            assets_dir,
            models_dir,
            core_url,
            warned: Mutex::new(BTreeSet::new()),
        }
    }

    /// Reads the character files again (off the async workers).
    pub async fn reload(self: &Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let (roster, _) = Roster::load(me.dir.as_deref());
            if let Ok(mut r) = me.roster.write() {
                *r = roster;
            }
        })
        .await;
    }

    fn with<T>(&self, f: impl FnOnce(&Roster) -> T) -> T {
        match self.roster.read() {
            Ok(r) => f(&r),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// Tag → expression index of a character (empty when unknown).
    pub fn emotions(&self, id: &str) -> BTreeMap<String, i64> {
        self.with(|r| {
            r.get(id)
                .map(|c| c.avatar.emotions.clone())
                .unwrap_or_default()
        })
    }

    /// Display name of a character by id (the id when unknown).
    pub fn name(&self, id: &str) -> String {
        self.with(|r| r.get(id).map_or_else(|| id.to_owned(), |c| c.name.clone()))
    }

    pub fn model_conf(&self, info: &CharacterInfo) -> ModelConf {
        let (avatar, emotions) = self.with(|r| {
            r.get(&info.id).map_or_else(
                || (crate::characters::Avatar::default(), BTreeMap::new()),
                |c| (c.avatar.clone(), c.avatar.emotions.clone()),
            )
        });
        let (model, url) = self.pick_model(&avatar);
        let file = self.model_file(&url);
        // The model's own group, spelled as the model spells it (`Idle` in most Cubism 3+
        // models, `idle` in shizuku); `idle` when the file is missing or has none.
        let idle = file
            .as_deref()
            .and_then(idle_motion_group)
            .unwrap_or_else(|| "idle".to_owned());
        let mut model_info = serde_json::json!({
                "name": model,
                "url": url,
                "kScale": k_scale(&url),
                "initialXshift": 0,
                "initialYshift": 0,
                "kXOffset": 1150,
                "idleMotionGroupName": idle,
                "emotionMap": emotions,
                "tapMotions": {},
        });
        // Open-LLM-VTuber's model_dict.json entry, as is: its fields win, but the
        // character's own emotion map (the tags its prompt lists) wins over the entry's.
        if let (Some(entry), Some(out)) = (
            model_dict_entry(&self.models_dir, &model),
            model_info.as_object_mut(),
        ) {
            for key in MODEL_DICT_KEYS {
                let Some(v) = entry.get(*key) else { continue };
                let taken = match *key {
                    "emotionMap" => {
                        v.is_object() && out["emotionMap"].as_object().is_none_or(|m| m.is_empty())
                    }
                    "tapMotions" => v.is_object(),
                    "idleMotionGroupName" => v.is_string(),
                    _ => v.is_number(),
                };
                if taken {
                    out.insert((*key).to_owned(), v.clone());
                }
            }
        }
        ModelConf {
            conf_uid: info.id.clone(),
            conf_name: info.name.clone(),
            model_info,
        }
    }
}

impl Characters {
    /// The avatar's model, or its fallback when the model (or the runtime its kind needs)
    /// is not installed and the fallback is; the model when neither is, so the page says
    /// what is missing. Returns the name and the page's URL for it.
    fn pick_model(&self, avatar: &crate::characters::Avatar) -> (String, String) {
        let url = self.url_of(&avatar.model);
        if let Some(fallback) = &avatar.fallback
            && !self.installed(&url)
        {
            let other = self.url_of(fallback);
            if self.installed(&other) {
                tracing::debug!(model = %avatar.model, fallback = %fallback, "the character's model is not installed: showing its fallback");
                return (fallback.clone(), other);
            }
        }
        (avatar.model.clone(), url)
    }

    /// The page's URL for a model: its `model_dict.json` entry's `url` when it has one
    /// under `/live2d-models/`, else where [`model_url`] finds its file.
    fn url_of(&self, model: &str) -> String {
        model_dict_entry(&self.models_dir, model)
            .and_then(|e| e.get("url").and_then(Value::as_str).map(str::to_owned))
            .filter(|u| u.starts_with("/live2d-models/"))
            .unwrap_or_else(|| model_url(&self.models_dir, model))
    }

    /// Whether the model at `url` and the runtime its kind needs are installed: Cubism 3+
    /// (`.model3.json`) needs the plugin's Cubism 4 build and a Cubism Core (installed,
    /// or `web.live2d_core_url`); Cubism 2 the Cubism 2 build and runtime.
    fn installed(&self, url: &str) -> bool {
        let libs = self.assets_dir.join("libs");
        let runtime = if url.ends_with(".model3.json") {
            libs.join("cubism4.min.js").is_file()
                && (self.core_url.is_some() || libs.join(CUBISM_CORE).is_file())
        } else {
            libs.join("cubism2.min.js").is_file() && libs.join(CUBISM2_RUNTIME).is_file()
        };
        runtime && self.model_file(url).is_some_and(|f| f.is_file())
    }

    /// The file behind a `/live2d-models/` URL.
    fn model_file(&self, url: &str) -> Option<PathBuf> {
        url.strip_prefix("/live2d-models/")
            .and_then(|rel| super::safe_join(&self.models_dir, rel))
    }

    /// For a client that is not our own page (another origin, or none: maybe
    /// Open-LLM-VTuber's own frontend): that frontend (web build 1.2.1) loads
    /// `<dir>/<name>.model3.json` only (given `shizuku.model.json` it asks for
    /// `shizuku.model.json.model3.json`), so an installed Cubism 2 model shows in our
    /// page only. Said once per model, and not faked: the URL stays the real one.
    /// Returns whether it warned now.
    pub fn warn_if_cubism2(&self, conf: &ModelConf) -> bool {
        let Some(url) = conf.model_info.get("url").and_then(Value::as_str) else {
            return false;
        };
        if url.ends_with(".model3.json") || !self.model_file(url).is_some_and(|f| f.is_file()) {
            return false;
        }
        let first = match self.warned.lock() {
            Ok(mut w) => w.insert(url.to_owned()),
            Err(p) => p.into_inner().insert(url.to_owned()),
        };
        if first {
            tracing::warn!(
                model = %url,
                "a client other than vtuberd's page connected, and the character's model is a Cubism 2 model: vtuberd's page shows it, but Open-LLM-VTuber's own web frontend loads Cubism 3+ models (.model3.json) only and shows no avatar (and plays no audio) with it; give the character a Cubism 3+ model to use that frontend"
            );
        }
        first
    }
}

/// The Cubism Core's file in the assets' `libs/` (Cubism 3+ models).
pub const CUBISM_CORE: &str = "live2dcubismcore.min.js";
/// The Cubism 2.1 runtime's file in the assets' `libs/`.
pub const CUBISM2_RUNTIME: &str = "live2d.core.js";

/// Where the page loads a model from: `/live2d-models/<m>/<m>.model.json` (Cubism 2);
/// for a Cubism 3+ model, the `.model3.json` itself, where Open-LLM-VTuber's model
/// folders keep it (`<m>/<m>.model3.json` or `<m>/runtime/<m>.model3.json`), since its
/// frontend loads nothing else; a model given as a `.json` path is used as is.
pub fn model_url(models_dir: &Path, model: &str) -> String {
    if model.ends_with(".json") {
        return format!("/live2d-models/{}", model.trim_start_matches('/'));
    }
    let dir = models_dir.join(model);
    let v2 = format!("{model}.model.json");
    if !dir.join(&v2).is_file() {
        for v3 in [
            format!("{model}.model3.json"),
            format!("runtime/{model}.model3.json"),
        ] {
            if dir.join(&v3).is_file() {
                return format!("/live2d-models/{model}/{v3}");
            }
        }
    }
    format!("/live2d-models/{model}/{v2}")
}

/// The `model_dict.json` fields taken over (`url` and `name` are used to find the model).
const MODEL_DICT_KEYS: &[&str] = &[
    "kScale",
    "initialXshift",
    "initialYshift",
    "kXOffset",
    "idleMotionGroupName",
    "emotionMap",
    "tapMotions",
];

/// The entry named `name` in Open-LLM-VTuber's `model_dict.json` (a JSON list of
/// models), looked for in `models_dir` and the folder above it (where Open-LLM-VTuber
/// keeps it, beside `live2d-models/`). Read at each use, so edits apply to the next
/// connection; a file that is not such a list is warned about and ignored.
fn model_dict_entry(models_dir: &Path, name: &str) -> Option<serde_json::Map<String, Value>> {
    let candidates = [
        Some(models_dir.join("model_dict.json")),
        models_dir.parent().map(|p| p.join("model_dict.json")),
    ];
    let file = candidates.into_iter().flatten().find(|f| f.is_file())?;
    let text = std::fs::read_to_string(&file).ok()?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(entries)) => entries.into_iter().find_map(|e| match e {
            Value::Object(m) if m.get("name").and_then(Value::as_str) == Some(name) => Some(m),
            _ => None,
        }),
        _ => {
            tracing::warn!(file = %file.display(), "model_dict.json is not a JSON list of models: ignored");
            None
        }
    }
}

/// OLV's `kScale` for a model: Open-LLM-VTuber's frontend multiplies a Cubism 3+
/// model's natural size by it (Haru is 405×760 at 1: 0.8 fills most of a stage), our
/// page its "fit the stage" size; the Cubism 2 models (Shizuku) keep the 0.3 they had.
fn k_scale(url: &str) -> f64 {
    if url.ends_with(".model3.json") {
        0.8
    } else {
        0.3
    }
}

/// The idle motion group of a model file, as the file spells it: the group named
/// `idle` in any case, else the first whose name contains it. Cubism 3+ keeps the
/// groups in `FileReferences.Motions`, Cubism 2 in `motions`. `None` when the file
/// cannot be read or has no such group.
pub fn idle_motion_group(model_file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(model_file).ok()?;
    idle_group_of(&serde_json::from_str(&text).ok()?)
}

fn idle_group_of(model: &Value) -> Option<String> {
    let groups = model
        .pointer("/FileReferences/Motions")
        .or_else(|| model.get("motions"))?
        .as_object()?;
    groups
        .keys()
        .find(|k| k.eq_ignore_ascii_case("idle"))
        .or_else(|| {
            groups
                .keys()
                .find(|k| k.to_ascii_lowercase().contains("idle"))
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_urls() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            model_url(&dir.path().join("live2d-models"), "shizuku"),
            "/live2d-models/shizuku/shizuku.model.json"
        );
        std::fs::create_dir_all(dir.path().join("live2d-models/mao_pro")).unwrap();
        std::fs::write(
            dir.path().join("live2d-models/mao_pro/mao_pro.model3.json"),
            "{}",
        )
        .unwrap();
        assert_eq!(
            model_url(&dir.path().join("live2d-models"), "mao_pro"),
            "/live2d-models/mao_pro/mao_pro.model3.json"
        );
        assert_eq!(
            model_url(&dir.path().join("live2d-models"), "x/y.model.json"),
            "/live2d-models/x/y.model.json"
        );
        // Open-LLM-VTuber's layout: the runtime folder.
        std::fs::create_dir_all(dir.path().join("live2d-models/haru/runtime")).unwrap();
        std::fs::write(
            dir.path()
                .join("live2d-models/haru/runtime/haru.model3.json"),
            "{}",
        )
        .unwrap();
        assert_eq!(
            model_url(&dir.path().join("live2d-models"), "haru"),
            "/live2d-models/haru/runtime/haru.model3.json"
        );
    }

    #[test]
    fn open_llm_vtubers_model_dict_is_read_as_is() {
        // An Open-LLM-VTuber checkout: model_dict.json beside live2d-models/.
        let olv = tempfile::tempdir().unwrap();
        let models = olv.path().join("live2d-models");
        std::fs::create_dir_all(models.join("mao_pro/runtime")).unwrap();
        std::fs::write(
            models.join("mao_pro/runtime/mao_pro.model3.json"),
            r#"{"FileReferences": {"Moc": "mao_pro.moc3", "Motions": {"Idle": []}}}"#,
        )
        .unwrap();
        std::fs::write(
            olv.path().join("model_dict.json"),
            serde_json::json!([{
                "name": "mao_pro", "description": "",
                "url": "/live2d-models/mao_pro/runtime/mao_pro.model3.json",
                "kScale": 0.5, "initialXshift": 0, "initialYshift": 0, "kXOffset": 1150,
                "idleMotionGroupName": "Idle",
                "emotionMap": {"neutral": 0, "anger": 2, "joy": 3},
                "tapMotions": {"HitAreaHead": {"": 1}, "HitAreaBody": {"": 1}}
            }])
            .to_string(),
        )
        .unwrap();
        let assets = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(assets.path().join("libs")).unwrap();
        for lib in ["cubism4.min.js", CUBISM_CORE] {
            std::fs::write(assets.path().join("libs").join(lib), "").unwrap();
        }
        let chars = tempfile::tempdir().unwrap();
        std::fs::write(
            chars.path().join("olv.toml"),
            "name = \"Mao Pro\"\npersona = \"p\"\n[avatar]\nmodel = \"mao_pro\"\n",
        )
        .unwrap();
        let load = || {
            Characters::load(
                Some(chars.path().to_path_buf()),
                assets.path().to_path_buf(),
                models.clone(),
                None,
            )
        };
        let characters = load();
        let olv_char = crate::characters::Roster::load(Some(chars.path()))
            .0
            .get("olv")
            .unwrap()
            .info();
        let info = characters.model_conf(&olv_char).model_info;
        assert_eq!(
            info["url"],
            "/live2d-models/mao_pro/runtime/mao_pro.model3.json"
        );
        assert_eq!(info["kScale"], 0.5);
        assert_eq!(info["idleMotionGroupName"], "Idle");
        assert_eq!(
            info["emotionMap"]["joy"], 3,
            "the character has none: the dict's"
        );
        assert_eq!(info["tapMotions"]["HitAreaHead"][""], 1);
        // A character with its own emotion map keeps it; the rest comes from the dict.
        std::fs::write(
            chars.path().join("olv.toml"),
            "name = \"Mao Pro\"\npersona = \"p\"\n[avatar]\nmodel = \"mao_pro\"\n[avatar.emotions]\njoy = 1\n",
        )
        .unwrap();
        let characters = load();
        let info = characters.model_conf(&olv_char).model_info;
        assert_eq!(info["emotionMap"], serde_json::json!({"joy": 1}));
        assert_eq!(info["kScale"], 0.5);
        // A model_dict.json that is not a list is ignored.
        std::fs::write(olv.path().join("model_dict.json"), "{}").unwrap();
        let info = characters.model_conf(&olv_char).model_info;
        assert_eq!(info["kScale"], 0.8);
        assert_eq!(
            info["url"],
            "/live2d-models/mao_pro/runtime/mao_pro.model3.json"
        );
    }

    #[test]
    fn idle_groups_come_from_the_model_file() {
        let v3 = serde_json::json!({"Version": 3, "FileReferences": {
            "Moc": "m.moc3", "Motions": {"TapBody": [], "Idle": [{"File": "a.motion3.json"}]}}});
        assert_eq!(idle_group_of(&v3).as_deref(), Some("Idle"));
        let v2 = serde_json::json!({"model": "m.moc", "motions": {"idle": [], "tap_body": []}});
        assert_eq!(idle_group_of(&v2).as_deref(), Some("idle"));
        let loose =
            serde_json::json!({"FileReferences": {"Motions": {"Tap": [], "idle_loop": []}}});
        assert_eq!(idle_group_of(&loose).as_deref(), Some("idle_loop"));
        assert_eq!(
            idle_group_of(&serde_json::json!({"motions": {"tap": []}})),
            None
        );
        assert_eq!(idle_group_of(&serde_json::json!({})), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.model3.json");
        std::fs::write(&file, v3.to_string()).unwrap();
        assert_eq!(idle_motion_group(&file).as_deref(), Some("Idle"));
        std::fs::write(&file, "not json").unwrap();
        assert_eq!(idle_motion_group(&file), None);
        assert_eq!(idle_motion_group(&dir.path().join("none.json")), None);

        // The conf sent to the page carries the model's own group, case and all.
        let characters = Characters::load(
            None,
            dir.path().to_path_buf(),
            dir.path().join("live2d-models"),
            None,
        );
        let mao = crate::characters::Roster::load(None)
            .0
            .get("mao")
            .unwrap()
            .info();
        let conf = characters.model_conf(&mao);
        assert_eq!(
            conf.model_info["idleMotionGroupName"], "idle",
            "not installed"
        );
        assert!(
            !characters.warn_if_cubism2(&conf),
            "nothing installed to warn about"
        );
        let folder = dir.path().join("live2d-models/shizuku");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("shizuku.model.json"),
            r#"{"motions": {"tap_body": [], "Idle": []}}"#,
        )
        .unwrap();
        // Mao's model (Haru) is missing, and Shizuku's runtime too: still Haru, so the
        // page says what is missing.
        let conf = characters.model_conf(&mao);
        assert_eq!(conf.model_info["name"], "haru");
        let libs = dir.path().join("libs");
        std::fs::create_dir_all(&libs).unwrap();
        for lib in ["cubism2.min.js", CUBISM2_RUNTIME] {
            std::fs::write(libs.join(lib), "").unwrap();
        }
        // Now the fallback is installed, and shown.
        let conf = characters.model_conf(&mao);
        assert_eq!(conf.model_info["name"], "shizuku");
        assert_eq!(conf.model_info["idleMotionGroupName"], "Idle");
        // An installed Cubism 2 model: warned about once.
        assert!(characters.warn_if_cubism2(&conf));
        assert!(!characters.warn_if_cubism2(&conf));
        assert_eq!(
            conf.model_info["url"],
            "/live2d-models/shizuku/shizuku.model.json"
        );

        // Haru installed, but no Cubism Core: still the fallback.
        let runtime = dir.path().join("live2d-models/haru/runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::write(
            runtime.join("haru.model3.json"),
            r#"{"FileReferences": {"Moc": "h.moc3", "Motions": {"Idle": []}}}"#,
        )
        .unwrap();
        std::fs::write(libs.join("cubism4.min.js"), "").unwrap();
        assert_eq!(characters.model_conf(&mao).model_info["name"], "shizuku");
        // With web.live2d_core_url, the Core comes from there: Haru.
        let with_url = Characters::load(
            None,
            dir.path().to_path_buf(),
            dir.path().join("live2d-models"),
            Some("https://cubism.live2d.com/sdk-web/cubismcore/live2dcubismcore.min.js".into()),
        );
        assert_eq!(with_url.model_conf(&mao).model_info["name"], "haru");
        // With the Core installed: Haru, at its runtime/ path, with its own idle group.
        std::fs::write(libs.join(CUBISM_CORE), "").unwrap();
        let conf = characters.model_conf(&mao);
        assert_eq!(
            conf.model_info["url"],
            "/live2d-models/haru/runtime/haru.model3.json"
        );
        assert_eq!(conf.model_info["idleMotionGroupName"], "Idle");
        assert!(!characters.warn_if_cubism2(&conf));
    }
}
