//! `vtuber daemon start|stop|restart|status|reload`: starting, stopping and reloading
//! vtuberd (its service units are in `service_unit` and `system_unit`).

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use vtuber_shared::client::{self, Hello};
use vtuber_shared::{Reply, Request};

use super::{ask, query, unexpected};
use crate::cli::DaemonCommand;
use crate::exit;
use crate::launcher::{self, Target};
use crate::time::format_duration;

pub async fn daemon(target: &Target, cmd: DaemonCommand) -> Result<ExitCode> {
    match cmd {
        DaemonCommand::Start => start(target).await,
        DaemonCommand::Stop => stop(target).await,
        DaemonCommand::Restart => {
            stop(target).await?;
            start(target).await
        }
        DaemonCommand::Status => {
            let conn = query(target, exit::NOT_RUNNING_STATUS).await?;
            let s = &conn.welcome.status;
            println!(
                "vtuberd {} is running (pid {}, up {}, state {}) on {}",
                s.daemon_version,
                s.pid,
                format_duration(s.uptime_secs),
                s.state.as_str(),
                target.socket.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Reload => reload(target).await,
        DaemonCommand::Install {
            print,
            system: false,
            socket_activation,
            ..
        } => super::service_unit::install(print, socket_activation.then_some(target)),
        DaemonCommand::Install {
            print,
            system: true,
            for_user,
            ..
        } => super::system_unit::install(print, for_user),
        DaemonCommand::Uninstall { system: false, .. } => super::service_unit::uninstall(),
        DaemonCommand::Uninstall {
            system: true,
            for_user,
        } => super::system_unit::uninstall(for_user),
        DaemonCommand::Logs { follow, lines } => super::logs::logs(follow, lines),
    }
}

/// Asks the running daemon to reload and says what changed and what waits for a restart.
async fn reload(target: &Target) -> Result<ExitCode> {
    let conn = query(target, exit::NOT_RUNNING_STATUS).await?;
    let report = match ask(&conn.client, Request::Reload).await? {
        Reply::Reloaded { report } => report,
        other => return Err(unexpected(&other)),
    };
    print!("{}", reload_summary(&report));
    Ok(ExitCode::SUCCESS)
}

fn reload_summary(report: &vtuber_shared::ReloadReport) -> String {
    let mut out = String::new();
    if report.files.is_empty() {
        out.push_str("reloaded (no configuration file: built-in defaults)\n");
    } else {
        out.push_str(&format!("reloaded {}\n", report.files.join(", ")));
    }
    if report.applied.is_empty() {
        out.push_str("nothing changed\n");
    }
    for item in &report.applied {
        out.push_str(&format!("  applied: {item}\n"));
    }
    if !report.needs_restart.is_empty() {
        out.push_str(&format!(
            "changed but waiting for a restart (`vtuber daemon restart`): {}\n",
            report.needs_restart.join(", ")
        ));
    }
    out
}

async fn start(target: &Target) -> Result<ExitCode> {
    match client::connect(&target.socket, Hello::new("cli", false)).await {
        Ok(conn) => {
            return Err(anyhow!(
                "vtuberd is already running (pid {})",
                conn.welcome.status.pid
            ));
        }
        Err(client::ConnectError::NotRunning { .. }) => {}
        Err(e) => return Err(launcher::connect_failure(e)),
    }
    let conn = launcher::start(target, Hello::new("cli", false)).await?;
    println!(
        "vtuberd {} started (pid {}) on {}; log: {}",
        conn.welcome.daemon_version,
        conn.welcome.status.pid,
        target.socket.display(),
        launcher::log_path().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to exit, then polls until the socket stops answering. Stopping a
/// daemon that is not running succeeds (with a note), so `restart` and scripts can
/// use it unconditionally.
async fn stop(target: &Target) -> Result<ExitCode> {
    let conn = match client::connect(&target.socket, Hello::new("cli", false)).await {
        Ok(conn) => conn,
        Err(client::ConnectError::NotRunning { .. }) => {
            eprintln!("vtuberd is not running");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(launcher::connect_failure(e)),
    };
    let pid = conn.welcome.status.pid;
    match ask(&conn.client, Request::Shutdown).await? {
        Reply::ShuttingDown => {}
        other => return Err(unexpected(&other)),
    }
    drop(conn);
    if !launcher::wait_until_stopped(&target.socket, launcher::STOP_TIMEOUT).await {
        bail!(
            "vtuberd (pid {pid}) is still answering {} s after being asked to stop; \
             see {} or end it with `kill {pid}`",
            launcher::STOP_TIMEOUT.as_secs(),
            launcher::log_path().display()
        );
    }
    println!("vtuberd (pid {pid}) stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reload_summary_names_files_changes_and_restarts() {
        let report = vtuber_shared::ReloadReport {
            files: vec!["conf.yaml".into(), "conf.d/10-llm.yaml".into()],
            applied: vec!["llm.model".into(), "mcp server `time` added".into()],
            needs_restart: vec!["web.port".into()],
        };
        assert_eq!(
            reload_summary(&report),
            "reloaded conf.yaml, conf.d/10-llm.yaml\n  applied: llm.model\n  applied: mcp server `time` added\nchanged but waiting for a restart (`vtuber daemon restart`): web.port\n"
        );
        assert_eq!(
            reload_summary(&vtuber_shared::ReloadReport::default()),
            "reloaded (no configuration file: built-in defaults)\nnothing changed\n"
        );
    }
}
