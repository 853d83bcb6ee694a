//! `vtuber`: the terminal chat and command line for the vtuberd daemon.
//!
//! It only speaks the socket protocol from `vtuber-shared`; everything it knows
//! about the daemon comes from there.

mod chat;
mod cli;
mod commands;
mod exit;
mod export;
mod generated;
mod images;
mod launcher;
mod time;
mod tool_text;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, ConfigCommand, McpCommand};
use launcher::Target;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if let Some(exit) = err.downcast_ref::<exit::Exit>() {
                eprintln!("{exit}");
                return ExitCode::from(exit.code);
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let target = Target::new(cli.socket, cli.config);
    let command = cli.command.unwrap_or(Command::Chat);
    // Commands that never touch the daemon run without an async runtime.
    match command {
        Command::Completions { shell } => {
            return write_stdout(&generated::completions(shell));
        }
        Command::Man { out_dir: None } => return write_stdout(&generated::man_page()?),
        Command::Man { out_dir: Some(dir) } => {
            generated::write_man_pages(&dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Models(cmd) => {
            return commands::models::models(&target, &cmd);
        }
        Command::Config(ConfigCommand::Check { file, profile }) => {
            let config = file.or_else(|| target.config.clone());
            return commands::config::run_vtuberd(config, profile, &["--check-config"]);
        }
        Command::Config(ConfigCommand::Show { effective, profile }) => {
            let what = if effective { "effective" } else { "set" };
            let flag = format!("--show-config={what}");
            return commands::config::run_vtuberd(target.config.clone(), profile, &[&flag]);
        }
        Command::Mcp(McpCommand::Import { file, write }) => {
            return commands::mcp::import_command(&target, &file, write);
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Chat => chat::run(target).await,
            Command::Say(args) => commands::say::say(&target, &args).await,
            Command::Status(flag) => commands::status::status(&target, flag.json).await,
            Command::Characters(cmd) => commands::characters::characters(&target, cmd).await,
            Command::History(cmd) => commands::history::history(&target, cmd).await,
            Command::Daemon(cmd) => commands::daemon::daemon(&target, cmd).await,
            Command::Mcp(cmd) => commands::mcp::run(&target, cmd).await,
            Command::Web(cmd) => commands::web::web(&target, cmd).await,
            Command::Listen(args) => commands::say::listen(&target, &args).await,
            Command::Speak(args) => commands::say::speak(&target, &args).await,
            Command::Completions { .. }
            | Command::Man { .. }
            | Command::Config(_)
            | Command::Models(_) => {
                unreachable!("handled without a runtime above")
            }
        }
    })
}

fn write_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}
