//! `vtuber models`: the daemon binary reports on its model files; `pull` downloads a
//! model into an Ollama server.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::ModelsCommand;
use crate::launcher::{self, Target};

/// `vtuber models ...`: the daemon binary reports, with the same config rules it runs by.
pub fn models(target: &Target, cmd: &ModelsCommand) -> Result<ExitCode> {
    let program = launcher::find_vtuberd()?;
    let mut command = std::process::Command::new(&program);
    let (action, json) = match cmd {
        ModelsCommand::List(f) => ("list", f.json),
        ModelsCommand::Verify(f) => ("verify", f.json),
        ModelsCommand::Path(f) => ("path", f.json),
        ModelsCommand::Pull { name, base_url } => {
            return super::ollama_pull::pull(target, name.clone(), base_url.clone());
        }
    };
    command.arg("--models").arg(action);
    if json {
        command.arg("--json");
    }
    if let Some(config) = &target.config {
        command.arg("--config").arg(config);
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
