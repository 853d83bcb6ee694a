//! `vtuber config check` and `vtuber config show`: the daemon's own loader answers, so
//! the rules (lookup, overlays, profiles, validation) live in one place.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::launcher;

/// Runs `vtuberd FLAGS [--config FILE] [--profile NAME]` and passes on its exit status.
pub fn run_vtuberd(
    config: Option<PathBuf>,
    profile: Option<String>,
    flags: &[&str],
) -> Result<ExitCode> {
    let program = launcher::find_vtuberd()?;
    let mut cmd = std::process::Command::new(&program);
    cmd.args(flags);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    if let Some(profile) = profile {
        cmd.arg("--profile").arg(profile);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("error: {} was killed ({status})", program.display());
            ExitCode::FAILURE
        }
    })
}

/// The effective configuration as `vtuberd --show-config=json` prints it (secrets
/// masked): the daemon's own loader, so overlays, the profile and `--config` apply.
pub fn effective_json(
    vtuberd: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<serde_json::Value> {
    let mut cmd = std::process::Command::new(vtuberd);
    cmd.arg("--show-config=json");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", vtuberd.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "the configuration is not valid:\n{}\n(fix it; `vtuber config check` lists every problem)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .context("vtuberd printed no configuration (is it the same version as vtuber?)")
}
