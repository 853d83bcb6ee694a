//! Where the user's character files live, and the watcher that tells the actor when
//! they change (it reloads the roster).

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::config::Config;

/// Where user character files live: `character.dir`, else `$XDG_CONFIG_HOME/vtuber/characters`.
pub fn character_dir(config: &Config) -> Option<PathBuf> {
    Some(
        config
            .character
            .dir
            .clone()
            .unwrap_or_else(|| vtuber_shared::paths::config_dir().join("characters")),
    )
}

/// Sends `changed()` to `tx` on every edit in `dir`, when it exists.
pub(super) fn spawn_watcher<T: Send + 'static>(
    dir: PathBuf,
    tx: mpsc::Sender<T>,
    changed: impl Fn() -> T + Send + 'static,
) {
    if !dir.is_dir() {
        tracing::debug!(dir = %dir.display(), "character folder does not exist; not watching");
        return;
    }
    match crate::characters::watch(&dir) {
        Ok((watcher, mut rx)) => {
            tokio::spawn(async move {
                let _watcher = watcher;
                while rx.recv().await.is_some() {
                    if tx.send(changed()).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the character folder; edits need a restart")
        }
    }
}
