//! Command-line flags of `vtuberd`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: one event a line, colours only on a terminal.
    Text,
    /// One JSON object a line, for programs.
    Json,
    /// For systemd's journal: a `<priority>` prefix, no colours, no timestamps (the
    /// journal adds its own), one event a line.
    Journal,
}

/// The vtuber daemon: owns the character, its models, history and clients.
///
/// Runs in the foreground (as a systemd service runs it) and serves clients such as
/// `vtuber chat` on a local socket. Stops cleanly on SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "vtuberd", version, about, long_about)]
pub struct Args {
    /// Config file (default: $VTUBER_CONFIG, then $XDG_CONFIG_HOME/vtuber/conf.yaml, then built-in defaults).
    #[arg(long, short = 'c', value_name = "FILE", env = "VTUBER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Configuration profile: also read conf.NAME.yaml beside conf.yaml, after conf.d/*.yaml.
    #[arg(long, short = 'p', value_name = "NAME", env = "VTUBER_PROFILE")]
    pub profile: Option<String>,

    /// Socket path (default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock).
    #[arg(long, short = 's', value_name = "PATH", env = "VTUBER_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Log debug detail (VTUBER_LOG or RUST_LOG override the filter).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Log line format on stderr (default: journal when stderr is systemd's journal, else text).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Validate the config and character files, print every problem, and exit (1 when invalid).
    #[arg(long)]
    pub check_config: bool,

    /// Print the configuration (all files merged) with the file and line each value comes
    /// from, secrets masked, and exit (1 when invalid): `effective` (every value, defaults
    /// included; the default), `set` (only what the files set) or `json` (every value as
    /// one JSON object, for programs).
    #[arg(long, value_enum, value_name = "WHAT", num_args = 0..=1, default_missing_value = "effective", conflicts_with = "check_config")]
    pub show_config: Option<ShowConfig>,

    /// Report on model files and exit: `list` (where, size), `verify` (checksums; exits 1
    /// when one is missing or damaged) or `path` (the models folder).
    #[arg(long, value_enum, value_name = "ACTION")]
    pub models: Option<ModelsAction>,

    /// With --models: print JSON.
    #[arg(long, requires = "models")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowConfig {
    Effective,
    Set,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelsAction {
    List,
    Verify,
    Path,
}

/// The hidden launcher mode `vtuberd --sandbox-exec SPEC -- COMMAND ARGS...` that the
/// daemon uses to start sandboxed MCP servers (see `mcp::sandbox`). Parsed before clap,
/// so it stays out of `--help` and the man page. Returns the spec and the command.
pub fn sandbox_exec_args(args: &[std::ffi::OsString]) -> Option<(String, Vec<std::ffi::OsString>)> {
    match args {
        [_, flag, spec, sep, command @ ..] if flag == "--sandbox-exec" && sep == "--" => {
            Some((spec.to_str()?.to_owned(), command.to_vec()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sandbox_exec_mode() {
        let argv = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let (spec, cmd) = sandbox_exec_args(&argv(&[
            "vtuberd",
            "--sandbox-exec",
            "{}",
            "--",
            "python3",
            "-m",
            "x",
        ]))
        .unwrap();
        assert_eq!(spec, "{}");
        assert_eq!(cmd, argv(&["python3", "-m", "x"]));
        assert!(sandbox_exec_args(&argv(&["vtuberd", "--check-config"])).is_none());
        assert!(
            sandbox_exec_args(&argv(&["vtuberd", "--sandbox-exec", "{}", "python3"])).is_none()
        );
    }

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    /// `man/vtuberd.8` is generated from these flags; regenerate with
    /// `VTUBER_UPDATE_GENERATED=1 cargo test -p vtuberd man_page`.
    #[test]
    fn man_page_is_current() {
        let mut out = Vec::new();
        clap_mangen::Man::new(Args::command())
            .section("8")
            .render(&mut out)
            .unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../man/vtuberd.8");
        if std::env::var_os("VTUBER_UPDATE_GENERATED").is_some() {
            std::fs::write(path, &out).unwrap();
        }
        let committed = std::fs::read(path).unwrap_or_default();
        assert!(
            committed == out,
            "man/vtuberd.8 is out of date: run `VTUBER_UPDATE_GENERATED=1 cargo test -p vtuberd man_page`"
        );
    }
}
