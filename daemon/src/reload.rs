//! Reloading the configuration while running (SIGHUP, `vtuber daemon reload`): read the
//! same files again, validate everything first, then apply what can change live. A file
//! with a mistake changes nothing; its error goes to the caller, the log and `status`.
//!
//! Live: `llm.*`, `character.*` and the characters, `history.token_budget`, the tool
//! servers and `mcp.*` timeouts, `web.allowed_origins`, `daemon.log_level` and
//! `daemon.stop_timeout_secs`. Everything else (the web server's address, TLS and token,
//! speech and audio devices, the history database, `daemon.client_queue`) waits for a
//! restart and is named in the report and in `status`.

use std::collections::BTreeMap;

use serde_json::Value;
use vtuber_shared::{ErrorBody, ErrorCode, ReloadReport};

use crate::characters::Roster;
use crate::config::{self, Config};
use crate::conversation::character_files::character_dir;
use crate::services::Services;

/// Reads, validates and applies. One reload runs at a time.
pub async fn reload(services: &Services) -> Result<ReloadReport, ErrorBody> {
    let _one_at_a_time = services.config.reloading.lock().await;
    services.notifier.reloading();
    tracing::info!("reloading the configuration");
    let result = apply(services).await;
    match &result {
        Ok(report) => {
            services.config.update_state(|s| {
                s.files = report.files.clone();
                s.error = None;
                s.needs_restart = report.needs_restart.clone();
            });
            if report.applied.is_empty() {
                tracing::info!("configuration reloaded: nothing changed");
            } else {
                tracing::info!(applied = %report.applied.join(", "), "configuration reloaded");
            }
            if !report.needs_restart.is_empty() {
                tracing::warn!(
                    keys = %report.needs_restart.join(", "),
                    "changed settings that take effect after a restart (`vtuber daemon restart`)"
                );
            }
        }
        Err(e) => {
            tracing::error!("reload refused, nothing changed: {}", e.message);
            services.config.update_state(|s| s.error = Some(e.clone()));
        }
    }
    let line = crate::service_manager::status_line(&services.status());
    let line = match &result {
        Ok(_) => line,
        Err(_) => format!("{line}; reload failed, see `vtuber status`"),
    };
    services.notifier.ready(&line);
    result
}

async fn apply(services: &Services) -> Result<ReloadReport, ErrorBody> {
    let explicit = services.config.explicit.clone();
    let profile = services.config.profile.clone();
    // Files and folders are read on a blocking thread, not on the runtime.
    let (loaded, roster) = tokio::task::spawn_blocking(move || read(explicit, profile))
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("reload task failed: {e}")))??;
    let old = services.config.get();
    let (applied, needs_restart) = split(&old, loaded.config);
    let mut changes = changed_keys(&old, &applied);

    if let Err(e) = services.config.log_level.apply(&applied.daemon.log_level) {
        return Err(ErrorBody::new(ErrorCode::Config, e).with_hint("fix daemon.log_level"));
    }
    let notes = services
        .conversation
        .reload(applied.clone(), roster)
        .await?;
    if let Some(mcp) = &services.mcp {
        let mcp_changes = mcp.reconfigure(applied.mcp.clone()).await;
        changes.retain(|k| !k.starts_with("mcp.servers."));
        changes.extend(
            mcp_changes
                .added
                .iter()
                .map(|n| format!("mcp server `{n}` added")),
        );
        changes.extend(
            mcp_changes
                .removed
                .iter()
                .map(|n| format!("mcp server `{n}` removed")),
        );
        changes.extend(
            mcp_changes
                .restarted
                .iter()
                .map(|n| format!("mcp server `{n}` restarted with its new settings")),
        );
    }
    services.config.set(applied);
    changes.extend(notes);
    Ok(ReloadReport {
        files: loaded
            .layers
            .iter()
            .map(|l| l.path.display().to_string())
            .collect(),
        applied: changes,
        needs_restart,
    })
}

/// Reads the configuration and the characters, and checks them as a start would.
fn read(
    explicit: Option<std::path::PathBuf>,
    profile: Option<String>,
) -> Result<(config::LoadedConfig, Roster), ErrorBody> {
    let loaded = config::load(explicit.as_deref(), profile.as_deref()).map_err(|e| {
        ErrorBody::new(ErrorCode::Config, format!("invalid configuration:\n{e}")).with_hint(
            "fix the file and reload again; the daemon keeps running with its current settings",
        )
    })?;
    crate::web::check(&loaded.config).map_err(|e| {
        ErrorBody::new(ErrorCode::Config, e.to_string())
            .with_hint("fix the web section and reload again; nothing was changed")
    })?;
    let dir = character_dir(&loaded.config);
    let (roster, problems) = Roster::load(dir.as_deref());
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(ErrorBody::new(
            ErrorCode::Config,
            format!("invalid character files:\n{}", list.join("\n")),
        )
        .with_hint("fix the character files and reload again; nothing was changed"));
    }
    if roster.get(&loaded.config.character.default).is_none() {
        return Err(ErrorBody::new(
            ErrorCode::Config,
            format!(
                "character.default: no character `{}` (known: {})",
                loaded.config.character.default,
                roster.ids().join(", ")
            ),
        )
        .with_hint("name a known character and reload again; nothing was changed"));
    }
    Ok((loaded, roster))
}

/// The settings to apply now (`new`, with what needs a restart kept as it runs) and the
/// keys that wait for a restart.
fn split(old: &Config, new: Config) -> (Config, Vec<String>) {
    let mut applied = new.clone();
    applied.speech = old.speech.clone();
    applied.audio = old.audio.clone();
    applied.web = crate::config::WebConfig {
        allowed_origins: new.web.allowed_origins.clone(),
        ..old.web.clone()
    };
    applied.history.database = old.history.database.clone();
    applied.daemon.client_queue = old.daemon.client_queue;
    applied.mcp.approval_timeout_secs = old.mcp.approval_timeout_secs;
    applied.mcp.secrets_file = old.mcp.secrets_file.clone();
    let waiting = changed_keys(&applied, &new);
    (applied, waiting)
}

/// Dotted keys whose values differ (a tool server counts as one key).
fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return Vec::new();
    };
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten(&a, String::new(), &mut fa);
    flatten(&b, String::new(), &mut fb);
    let mut keys: Vec<String> = fa
        .keys()
        .chain(fb.keys())
        .filter(|k| fa.get(*k) != fb.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    // An empty map on one side is one key (`mcp.servers`); name the entries instead.
    let deeper = |k: &String| keys.iter().any(|o| o.starts_with(&format!("{k}.")));
    let named: Vec<String> = keys.iter().filter(|k| !deeper(k)).cloned().collect();
    named
}

fn flatten(v: &Value, prefix: String, out: &mut BTreeMap<String, Value>) {
    let whole = prefix.starts_with("mcp.servers.") && prefix.matches('.').count() == 2;
    match v {
        Value::Object(m) if !m.is_empty() && !whole => {
            for (k, inner) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(inner, key, out);
            }
        }
        _ => {
            out.insert(prefix, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_settings_apply_and_the_rest_waits_for_a_restart() {
        let old = Config::default();
        let mut new = Config::default();
        new.llm.temperature = Some(0.3);
        new.web.port = 9999;
        new.web.allowed_origins = vec!["https://example.org".into()];
        new.speech.enabled = !old.speech.enabled;
        new.daemon.log_level = "debug".into();
        new.history.token_budget = 77;
        let (applied, waiting) = split(&old, new);
        assert_eq!(waiting, ["speech.enabled", "web.port"]);
        assert_eq!(applied.web.port, old.web.port);
        assert_eq!(applied.speech, old.speech);
        assert_eq!(
            changed_keys(&old, &applied),
            [
                "daemon.log_level",
                "history.token_budget",
                "llm.temperature",
                "web.allowed_origins"
            ]
        );
    }

    #[test]
    fn a_tool_server_is_one_key() {
        let old = Config::default();
        let mut new = Config::default();
        let server = crate::config::ServerConfig {
            command: Some("x".into()),
            args: vec!["a".into()],
            ..Default::default()
        };
        new.mcp.servers.insert("time".into(), server);
        assert_eq!(changed_keys(&old, &new), ["mcp.servers.time"]);
    }
}
