//! `vtuber status`: the daemon's state as a table or JSON.

use std::process::ExitCode;

use anyhow::Result;
use vtuber_shared::{ModelLoad, Reply, Request, Status};

use super::{ask, print_json, query, unexpected};
use crate::exit;
use crate::launcher::Target;
use crate::time::format_duration;

fn model_load_text(load: &ModelLoad) -> String {
    match load {
        ModelLoad::NotLoaded => "not loaded".into(),
        ModelLoad::Loading => "loading".into(),
        ModelLoad::Ready => "ready".into(),
        ModelLoad::Failed { reason } => format!("failed: {reason}"),
    }
}

/// The human form of `status`: one aligned `key  value` row per fact.
pub fn status_table(status: &Status) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("state", status.state.as_str().to_owned()),
        ("character", status.character.clone()),
        (
            "llm",
            format!("{} · {}", status.llm.backend, status.llm.model),
        ),
        ("model", model_load_text(&status.model_load)),
        (
            "conversation",
            status
                .conversation_id
                .map_or_else(|| "none".to_owned(), |id| id.to_string()),
        ),
        ("clients", status.clients.to_string()),
        (
            "daemon",
            format!(
                "vtuberd {} (pid {}, up {})",
                status.daemon_version,
                status.pid,
                format_duration(status.uptime_secs)
            ),
        ),
        ("socket", status.socket.clone()),
    ];
    if let Some(url) = &status.web_url {
        rows.push(("web", url.clone()));
    }
    if status.web_auth.as_deref() == Some("none") {
        rows.push((
            "web auth",
            "none: anyone who can reach the page drives the character and its tools (set web.auth: token)".to_owned(),
        ));
    }
    if let Some(err) = &status.web_error {
        rows.push(("web", format!("unavailable: {err}")));
    }
    if let Some(err) = &status.avatar_error {
        rows.push(("avatar", format!("not shown: {err}")));
    }
    if let Some(v) = &status.voice {
        let engine = |e: &vtuber_shared::EngineStatus| {
            format!("{} · {} ({})", e.backend, e.model, model_load_text(&e.load))
        };
        rows.push(("audio", v.audio.clone()));
        rows.push((
            "listening",
            match (&v.input_device, v.listening) {
                (None, _) => "no microphone".to_owned(),
                (Some(d), true) => format!("on ({d})"),
                (Some(d), false) => format!("off ({d})"),
            },
        ));
        rows.push((
            "voice io",
            format!(
                "playback {} · barge-in {} · echo cancellation {}",
                v.playback, v.barge_in, v.echo_cancellation
            ),
        ));
        rows.push(("vad", engine(&v.vad)));
        rows.push(("asr", engine(&v.asr)));
        rows.push(("tts", engine(&v.tts)));
    }
    if let Some(cpu) = &status.cpu
        && (status.llm.backend == "embedded" || status.voice.is_some())
    {
        rows.push((
            "cpu plan",
            format!(
                "{} cores: model {} threads · whisper {} · piper {} · voice detection {}",
                cpu.cores, cpu.llm_threads, cpu.asr_threads, cpu.tts_threads, cpu.vad_threads
            ),
        ));
    }
    if status.config_files.len() > 1 {
        rows.push(("config", status.config_files.join(", ")));
    } else if let Some(config) = &status.config_file {
        rows.push(("config", config.clone()));
    }
    if !status.needs_restart.is_empty() {
        rows.push((
            "restart for",
            format!(
                "{} (changed since start; `vtuber daemon restart` applies them)",
                status.needs_restart.join(", ")
            ),
        ));
    }
    if let Some(err) = &status.reload_error {
        rows.push((
            "reload",
            format!("failed, the daemon runs its previous settings: {err}"),
        ));
    }
    if let Some(err) = &status.last_error {
        rows.push(("last error", err.to_string()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

pub async fn status(target: &Target, json: bool) -> Result<ExitCode> {
    let conn = query(target, exit::NOT_RUNNING_STATUS).await?;
    let status = match ask(&conn.client, Request::Status).await? {
        Reply::Status(status) => status,
        other => return Err(unexpected(&other)),
    };
    if json {
        print_json(&status)?;
    } else {
        print!("{}", status_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::web::web_url_of;
    use vtuber_shared::client::fake_daemon as fake;

    #[test]
    fn status_table_is_aligned_and_complete() {
        let table = status_table(&fake::status());
        assert_eq!(
            table,
            "\
state         idle
character     aria
llm           embedded · tiny
model         ready
conversation  7
clients       1
daemon        vtuberd 0.1.0 (pid 4242, up 12s)
socket        /tmp/x.sock
"
        );
    }

    #[test]
    fn status_table_shows_the_web_page_and_its_problems() {
        let mut s = fake::status();
        s.web_url = Some("http://127.0.0.1:1/?token=abc".into());
        s.web_auth = Some("token".into());
        let table = status_table(&s);
        assert!(
            table.contains("web           http://127.0.0.1:1/?token=abc\n"),
            "{table}"
        );
        assert!(!table.contains("web auth"), "{table}");
        assert_eq!(web_url_of(&s).unwrap(), "http://127.0.0.1:1/?token=abc");
        s.web_auth = Some("none".into());
        let table = status_table(&s);
        assert!(
            table.contains("web auth") && table.contains("set web.auth: token"),
            "{table}"
        );
        s.web_url = None;
        s.web_auth = None;
        s.web_error = Some("port 1 is already in use; set web.port".into());
        let table = status_table(&s);
        assert!(
            table.contains("web           unavailable: port 1 is already in use; set web.port"),
            "{table}"
        );
        let e = web_url_of(&s).unwrap_err().to_string();
        assert!(e.contains("already in use"), "{e}");
        s.web_error = None;
        let e = web_url_of(&s).unwrap_err().to_string();
        assert!(e.contains("web.enabled"), "{e}");
    }
}
