//! `vtuber config check`: the daemon's own config validator.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::launcher::{self, Target};

/// Runs the daemon's own validator: the rules live in one place, the daemon.
pub fn config_check(target: &Target, file: Option<std::path::PathBuf>) -> Result<ExitCode> {
    let program = launcher::find_vtuberd()?;
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("--check-config");
    if let Some(config) = file.or_else(|| target.config.clone()) {
        cmd.arg("--config").arg(config);
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
