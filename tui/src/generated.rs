//! Shell completions and the man page, generated from the clap definitions.
//!
//! Copies are checked in (`completions/`, `man/vtuber.1`) for packagers; a test
//! regenerates them in memory and fails when they drift.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vtuber", &mut out);
    out
}

/// `vtuber.1`: clap_mangen's page for the top level, plus a reference section for
/// every subcommand so a single page documents the whole tool.
pub fn man_page() -> Result<Vec<u8>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .context("cannot render the man page")?;
    out.extend_from_slice(COMMANDS_HEADER.as_bytes());
    for sub in cmd.get_subcommands() {
        command_reference(&mut out, sub, "vtuber");
    }
    out.extend_from_slice(TRAILER.as_bytes());
    Ok(out)
}

const COMMANDS_HEADER: &str = ".SH \"COMMAND REFERENCE\"\n";

const TRAILER: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success; for \fBsay\fR, the reply finished.
.TP
\fB1\fR
Failure, including a failed reply in \fBsay\fR and an invalid file in \fBconfig check\fR.
Query commands exit 1 when vtuberd is not running.
.TP
\fB2\fR
\fBsay\fR: the reply was interrupted.
.TP
\fB3\fR
\fBstatus\fR and \fBdaemon status\fR: vtuberd is not running.
.SH ENVIRONMENT
.TP
\fBVTUBER_SOCKET\fR
Socket path, as \fB\-\-socket\fR.
.TP
\fBVTUBER_CONFIG\fR
Config file, as \fB\-\-config\fR.
.TP
\fBVTUBERD_BIN\fR
The daemon program to start; by default \fBvtuberd\fR next to \fBvtuber\fR, else on \fBPATH\fR.
.TP
\fBVTUBER_DATA_DIR\fR
Data directory (history, models, vtuberd.log).
.TP
\fBXDG_RUNTIME_DIR\fR, \fBXDG_DATA_HOME\fR, \fBXDG_CONFIG_HOME\fR
Base directories for the socket, data and config.
.SH FILES
.TP
\fI$XDG_CONFIG_HOME/vtuber/conf.yaml\fR
The config file a daemon started by vtuber reads, unless \fB\-\-config\fR names another;
\fBmcp import \-\-write\fR appends its \fBmcp:\fR section there.
.TP
\fI$XDG_RUNTIME_DIR/vtuber/vtuberd.sock\fR
The daemon's socket.
.TP
\fI$XDG_DATA_HOME/vtuber/vtuberd.log\fR
Output of a daemon started by vtuber.
.TP
\fI$XDG_DATA_HOME/vtuber/private/web\-token\fR
The browser page's access token, made by the daemon at first start (mode 0600) unless
\fBweb.token\fR is set; \fBweb url\fR prints the page's address with it.
.SH "SEE ALSO"
\fBvtuberd\fR(8)
"#;

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would read as a request.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.chars().next() {
        Some('.' | '\'') => format!("\\&{escaped}"),
        _ => escaped,
    }
}

fn command_reference(out: &mut Vec<u8>, cmd: &clap::Command, parent: &str) {
    if cmd.is_hide_set() {
        return;
    }
    let path = format!("{parent} {}", cmd.get_name());
    if cmd.has_subcommands() {
        for sub in cmd.get_subcommands() {
            command_reference(out, sub, &path);
        }
        return;
    }
    let mut usage = path.clone();
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() || arg.is_global_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let names = arg
            .get_value_names()
            .map(|v| v.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|| vec![id.to_uppercase()]);
        let value = names.join(" ");
        let takes_value = arg.get_action().takes_values();
        let piece = match (arg.get_long(), arg.is_positional()) {
            (_, true) => {
                let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
                format!("{value}{}", if many { "..." } else { "" })
            }
            (Some(long), false) if takes_value => format!("--{long} {value}"),
            (Some(long), false) => format!("--{long}"),
            (None, false) => continue,
        };
        if arg.is_required_set() {
            usage.push_str(&format!(" {piece}"));
        } else {
            usage.push_str(&format!(" [{piece}]"));
        }
    }
    let _ = writeln!(out, ".SS \"{}\"", roff_escape(&path));
    let _ = writeln!(out, "\\fB{}\\fR", roff_escape(&usage));
    let _ = writeln!(out, ".br");
    let about = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    for para in about.split("\n\n") {
        let _ = writeln!(out, "{}", roff_escape(para.trim()));
        let _ = writeln!(out, ".PP");
    }
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() || arg.is_global_set() {
            continue;
        }
        let Some(help) = arg.get_help() else { continue };
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let label = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (None, Some(l)) => format!("--{l}"),
            _ => arg
                .get_value_names()
                .and_then(|v| v.first().map(|n| n.to_string()))
                .unwrap_or_else(|| id.to_uppercase()),
        };
        let values = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_owned())
            .collect::<Vec<_>>();
        let values = if values.is_empty() || !arg.get_action().takes_values() {
            String::new()
        } else {
            format!(" [possible values: {}]", values.join(", "))
        };
        let _ = writeln!(out, ".TP\n\\fB{}\\fR", roff_escape(&label));
        let _ = writeln!(out, "{}", roff_escape(&format!("{help}{values}")));
    }
}

/// `vtuber man -o DIR`: the combined page plus clap_mangen's page per subcommand.
pub fn write_man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    let path = dir.join("vtuber.1");
    std::fs::write(&path, man_page()?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The checked-in files and how to produce each.
    fn expected() -> Vec<(PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        vec![
            (
                root.join("completions/vtuber.bash"),
                completions(Shell::Bash),
            ),
            (root.join("completions/_vtuber"), completions(Shell::Zsh)),
            (
                root.join("completions/vtuber.fish"),
                completions(Shell::Fish),
            ),
            (root.join("man/vtuber.1"), man_page().unwrap()),
        ]
    }

    #[test]
    fn checked_in_completions_and_man_page_are_current() {
        let update = std::env::var_os("VTUBER_UPDATE_GENERATED").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for (path, want) in expected() {
            let have = std::fs::read(&path).unwrap_or_default();
            if have == want {
                continue;
            }
            if update {
                std::fs::write(&path, &want).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "generated files are out of date: {}\n\
             regenerate them with: VTUBER_UPDATE_GENERATED=1 cargo test -p vtuber generated",
            stale.join(", ")
        );
    }

    #[test]
    fn man_page_documents_every_leaf_command() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        for cmd in [
            "vtuber say",
            "vtuber history export",
            "vtuber daemon restart",
            "vtuber config check",
            "vtuber web url",
        ] {
            assert!(
                page.contains(&format!(".SS \"{}\"", roff_escape(cmd))),
                "no section for {cmd}"
            );
        }
        assert!(page.contains("\\-\\-format"), "export options missing");
    }

    #[test]
    fn completions_know_the_subcommands() {
        let bash = String::from_utf8(completions(Shell::Bash)).unwrap();
        for word in ["characters", "history", "export", "completions", "--socket"] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
    }
}
