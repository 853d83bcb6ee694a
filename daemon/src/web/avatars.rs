//! The characters' avatars as the page needs them (Live2D model and expression map):
//! a roster of the web server's own, reloaded when the character files change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
}

impl Characters {
    pub fn load(dir: Option<PathBuf>, assets_dir: PathBuf) -> Self {
        let (roster, _) = Roster::load(dir.as_deref());
        Self {
            roster: RwLock::new(roster),
            dir,
            assets_dir,
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
        let (model, emotions) = self.with(|r| {
            r.get(&info.id).map_or_else(
                || (crate::characters::Avatar::default().model, BTreeMap::new()),
                |c| (c.avatar.model.clone(), c.avatar.emotions.clone()),
            )
        });
        ModelConf {
            conf_uid: info.id.clone(),
            conf_name: info.name.clone(),
            model_info: serde_json::json!({
                "name": model,
                "url": model_url(&self.assets_dir, &model),
                "kScale": 0.3,
                "initialXshift": 0,
                "initialYshift": 0,
                "kXOffset": 1150,
                "idleMotionGroupName": "idle",
                "emotionMap": emotions,
                "tapMotions": {},
            }),
        }
    }
}

/// Where the page loads a model from: `/live2d-models/<m>/<m>.model.json` (Cubism 2), or
/// `<m>.model3.json` when only that is installed; a model given as a `.json` path is
/// used as is.
pub fn model_url(assets_dir: &Path, model: &str) -> String {
    if model.ends_with(".json") {
        return format!("/live2d-models/{}", model.trim_start_matches('/'));
    }
    let dir = assets_dir.join("live2d-models").join(model);
    let v2 = format!("{model}.model.json");
    let v3 = format!("{model}.model3.json");
    if !dir.join(&v2).is_file() && dir.join(&v3).is_file() {
        format!("/live2d-models/{model}/{v3}")
    } else {
        format!("/live2d-models/{model}/{v2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_urls() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            model_url(dir.path(), "shizuku"),
            "/live2d-models/shizuku/shizuku.model.json"
        );
        std::fs::create_dir_all(dir.path().join("live2d-models/mao_pro")).unwrap();
        std::fs::write(
            dir.path().join("live2d-models/mao_pro/mao_pro.model3.json"),
            "{}",
        )
        .unwrap();
        assert_eq!(
            model_url(dir.path(), "mao_pro"),
            "/live2d-models/mao_pro/mao_pro.model3.json"
        );
        assert_eq!(
            model_url(dir.path(), "x/y.model.json"),
            "/live2d-models/x/y.model.json"
        );
    }
}
