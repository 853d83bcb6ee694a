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
