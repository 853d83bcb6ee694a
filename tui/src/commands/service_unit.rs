//! `vtuber daemon install|uninstall`: vtuberd as a systemd user service, or (with
//! `--system`) as an instance of the system template `vtuberd@.service`, one per user.
//! The units are the ones shipped in `contrib/systemd/`, with `ExecStart` pointing at
//! this install's vtuberd.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use super::socket_units;
use crate::launcher;

/// The shipped user unit.
const UNIT: &str = include_str!("../../../contrib/systemd/vtuberd.service");
const UNIT_NAME: &str = "vtuberd.service";

/// The user unit with `ExecStart` set to `vtuberd` (an absolute path).
pub fn render(vtuberd: &Path) -> Result<String> {
    render_unit(UNIT, vtuberd)
}

/// `unit` with `ExecStart` set to `vtuberd` (an absolute path).
pub(super) fn render_unit(unit: &str, vtuberd: &Path) -> Result<String> {
    let path = vtuberd.to_str().with_context(|| {
        format!(
            "{} is not valid UTF-8; systemd cannot run it from a unit",
            vtuberd.display()
        )
    })?;
    if !vtuberd.is_absolute() || path.chars().any(|c| c.is_whitespace() || c == '%') {
        bail!(
            "{path} cannot stand in a unit's ExecStart (it needs an absolute path without spaces or %); \
             install vtuberd somewhere plain, e.g. ~/.local/bin"
        );
    }
    let mut found = false;
    let unit: Vec<String> = unit
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                found = true;
                format!("ExecStart={path}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !found {
        bail!("the shipped unit has no ExecStart line (a bug in this build)");
    }
    Ok(unit.join("\n") + "\n")
}

/// `~/.config/systemd/user/vtuberd.service` (honouring `XDG_CONFIG_HOME`).
pub fn unit_path() -> PathBuf {
    vtuber_shared::paths::xdg_config_home()
        .join("systemd/user")
        .join(UNIT_NAME)
}

/// Runs `systemctl --user ARGS`; the error says what to run by hand.
fn systemctl(args: &[&str]) -> Result<()> {
    systemctl_in(Manager::User, args)
}

/// Which service manager `systemctl` talks to.
#[derive(Clone, Copy)]
pub(super) enum Manager {
    User,
    System,
}

/// Runs `systemctl [--user] ARGS`; the error says what was run.
pub(super) fn systemctl_in(manager: Manager, args: &[&str]) -> Result<()> {
    let scope: &[&str] = match manager {
        Manager::User => &["--user"],
        Manager::System => &[],
    };
    let shown = ["systemctl"]
        .iter()
        .chain(scope)
        .chain(args)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("systemctl")
        .args(scope)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{shown}` (is systemd installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes and enables the user unit; with `sockets` (the daemon's target, for its
/// configuration) also the socket units.
pub fn install(print: bool, sockets: Option<&launcher::Target>) -> Result<ExitCode> {
    let vtuberd = launcher::find_vtuberd()?;
    let unit = render(&vtuberd)?;
    let socket_units = match sockets {
        None => Vec::new(),
        Some(target) => {
            let web = socket_units::WebListen::from_daemon(&vtuberd, target.config.as_deref())?;
            let mut units = vec![(socket_units::LOCAL_NAME, socket_units::LOCAL.to_owned())];
            match socket_units::render_web(&web) {
                Ok(u) => units.push((socket_units::WEB_NAME, u)),
                Err(why) => eprintln!(
                    "vtuber: no socket unit for the web page: {why}; vtuberd binds it itself"
                ),
            }
            units
        }
    };
    if print {
        print!("{unit}");
        for (name, text) in &socket_units {
            print!("\n# ---- {name}\n{text}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = unit_path();
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&path, &unit).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    for (name, text) in &socket_units {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    if !socket_units.is_empty() {
        let names: Vec<&str> = socket_units.iter().map(|(n, _)| *n).collect();
        // A running daemon holds the socket path and the port the units want.
        let stopped = systemctl(&["stop", UNIT_NAME]);
        let enabled = systemctl(&["daemon-reload"]).and_then(|()| {
            let mut args = vec!["enable", "--now"];
            args.extend(&names);
            systemctl(&args)
        });
        if let Err(e) = stopped.and(enabled) {
            bail!(
                "{e:#}\nthe units are written; stop any vtuberd running, then \
                 `systemctl --user daemon-reload && systemctl --user enable --now {}`",
                names.join(" ")
            );
        }
        println!(
            "enabled {}: systemd listens now and starts vtuberd on the first connection \
             (stop one started by `vtuber` first: `vtuber daemon stop`). \
             Follow it with `journalctl --user -u vtuberd -f`",
            names.join(" and ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let enabled = systemctl(&["daemon-reload"]).and_then(|()| systemctl(&["enable", UNIT_NAME]));
    if let Err(e) = enabled {
        bail!(
            "{e:#}\nthe unit is written; once a systemd user manager runs, enable it with \
             `systemctl --user daemon-reload && systemctl --user enable vtuberd`"
        );
    }
    println!(
        "enabled: it starts at your next login. Start it now with `vtuber daemon stop; systemctl --user start vtuberd`, \
         follow it with `journalctl --user -u vtuberd -f`"
    );
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall() -> Result<ExitCode> {
    let path = unit_path();
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    for name in [socket_units::LOCAL_NAME, socket_units::WEB_NAME] {
        let p = dir.join(name);
        if !p.exists() {
            continue;
        }
        if let Err(e) = systemctl(&["disable", "--now", name]) {
            eprintln!("vtuber: {e:#} (removing the unit anyway)");
        }
        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        println!("removed {}", p.display());
    }
    if !path.exists() {
        println!("no unit at {}: nothing to remove", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    // Stop and disable first; a manager that is not running has nothing to undo.
    if let Err(e) = systemctl(&["disable", "--now", UNIT_NAME]) {
        eprintln!("vtuber: {e:#} (removing the unit anyway)");
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!("removed {}", path.display());
    if let Err(e) = systemctl(&["daemon-reload"]) {
        eprintln!("vtuber: {e:#}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_this_vtuberd_and_is_a_notify_service() {
        let unit = render(Path::new("/opt/vtuber/bin/vtuberd")).unwrap();
        assert!(
            unit.contains("\nExecStart=/opt/vtuber/bin/vtuberd\n"),
            "{unit}"
        );
        assert_eq!(unit.matches("ExecStart=").count(), 1, "{unit}");
        assert!(unit.contains("\nType=notify\n"), "{unit}");
        assert!(unit.contains("\nWatchdogSec="), "{unit}");
        assert!(unit.contains("\nWantedBy=default.target"), "{unit}");
    }

    #[test]
    fn the_shipped_unit_is_what_a_standard_install_renders() {
        assert_eq!(render(Path::new("/usr/local/bin/vtuberd")).unwrap(), UNIT);
    }

    #[test]
    fn paths_systemd_would_misread_are_refused() {
        for bad in ["vtuberd", "/home/me/my bin/vtuberd", "/opt/100%/vtuberd"] {
            let err = render(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("ExecStart"), "{bad}: {err}");
        }
    }
}
