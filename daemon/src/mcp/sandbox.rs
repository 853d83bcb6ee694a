//! Landlock confinement of stdio MCP servers.
//!
//! The daemon never restricts itself: it starts `vtuberd --sandbox-exec SPEC -- CMD ARGS`,
//! and that short-lived process (single-threaded, before any async runtime) builds the
//! ruleset, restricts itself, reports the result on stderr, and `exec`s the server. This
//! avoids `pre_exec` in a multi-threaded parent, where only async-signal-safe code may run.
//!
//! What a sandboxed server gets:
//! - read + execute: system trees (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`, `/opt`,
//!   `/proc`, `/sys/devices/system/cpu`, `/run/systemd/resolve`, `/nix/store`; missing
//!   ones are skipped), the command's folder and install prefix (its
//!   canonical target too, so venvs and nvm installs work), `~/.local` for Python tools
//!   (user site-packages), the configured `read` folders and the server's `cwd`;
//! - read + write: `/dev/null`, `/dev/zero`, `/dev/urandom`, `/dev/random`, the configured
//!   `write` folders, and a private scratch folder that `TMPDIR` points at. The shared
//!   `/tmp` is deliberately not granted: other programs' files live there;
//! - TCP bind/connect only when `network: true` (denial needs Landlock ABI 4).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vtuber_shared::SandboxLevel;

/// Prefix of the one stderr line the launcher writes before `exec`.
pub const REPORT_MARKER: &str = "VTUBERD-SANDBOX ";

/// What the daemon asks the launcher to enforce.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub network: bool,
    /// Granted read-only (the server's working folder).
    pub cwd: Option<PathBuf>,
    /// Private scratch folder, granted read-write.
    pub scratch: Option<PathBuf>,
}

/// What the launcher achieved, sent back on stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// `enforced`, `partial`, `unsupported` or `error`.
    pub level: String,
    #[serde(default)]
    pub detail: String,
}

impl SandboxReport {
    pub fn to_level(&self) -> Option<(SandboxLevel, String)> {
        let level = match self.level.as_str() {
            "enforced" => SandboxLevel::Enforced,
            "partial" => SandboxLevel::Partial,
            "unsupported" => SandboxLevel::Unsupported,
            _ => return None,
        };
        Some((level, self.detail.clone()))
    }
}

/// Parses a stderr line; `None` for ordinary server output.
pub fn parse_report(line: &str) -> Option<SandboxReport> {
    serde_json::from_str(line.strip_prefix(REPORT_MARKER)?).ok()
}

const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys/devices/system/cpu",
    // Where /etc/resolv.conf often points, so name lookups work when network is allowed.
    "/run/systemd/resolve",
    "/nix/store",
];
const DEVICES_RW: &[&str] = &["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];

/// `command` resolved through `PATH` the way `execvp` would.
pub fn resolve_command(command: &str) -> Option<PathBuf> {
    if command.contains('/') {
        return Some(PathBuf::from(command));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The command's folder and, when that is a `bin` folder, its install prefix; for both
/// the path as written and its canonical target.
fn command_paths(resolved: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut candidates = vec![resolved.to_path_buf()];
    if let Ok(c) = std::fs::canonicalize(resolved) {
        candidates.push(c);
    }
    for c in candidates {
        if let Some(dir) = c.parent() {
            out.push(dir.to_path_buf());
            if dir.file_name().is_some_and(|n| n == "bin" || n == "shims")
                && let Some(prefix) = dir.parent()
                && prefix != Path::new("/")
            {
                out.push(prefix.to_path_buf());
            }
        }
    }
    out
}

fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and size 0 this only queries the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 { 0 } else { v as i32 }
}

fn report(level: &str, detail: impl Into<String>) {
    let r = SandboxReport {
        level: level.into(),
        detail: detail.into(),
    };
    if let Ok(json) = serde_json::to_string(&r) {
        eprintln!("{REPORT_MARKER}{json}");
    }
}

/// Builds and applies the ruleset. Returns the level and detail to report.
fn restrict(
    spec: &SandboxSpec,
    resolved: &Path,
    program: &str,
) -> Result<(String, String), String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    let kabi = kernel_abi();
    if kabi < 1 {
        return Ok((
            "unsupported".into(),
            "the kernel offers no Landlock; the server runs unconfined".into(),
        ));
    }
    let abi = ABI::from(kabi);
    for p in spec.read.iter().chain(&spec.write) {
        if !p.exists() {
            return Err(format!("sandbox folder {} does not exist", p.display()));
        }
    }
    let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read.extend(command_paths(resolved));
    let base = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if (base.starts_with("python") || matches!(base.as_str(), "uv" | "uvx" | "pipx"))
        && let Some(home) = std::env::var_os("HOME")
    {
        read.push(PathBuf::from(home).join(".local"));
    }
    read.extend(spec.read.iter().cloned());
    read.extend(spec.cwd.iter().cloned());
    let mut write: Vec<PathBuf> = DEVICES_RW.iter().map(PathBuf::from).collect();
    write.extend(spec.write.iter().cloned());
    write.extend(spec.scratch.iter().cloned());

    let err = |e: landlock::RulesetError| format!("Landlock: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    let deny_net = !spec.network;
    if deny_net && kabi >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(err)?;
    }
    let status = ruleset
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    let mut gaps = Vec::new();
    if deny_net && kabi < 4 {
        gaps.push(format!(
            "network not restricted (kernel Landlock ABI {kabi}, needs 4)"
        ));
    }
    Ok(match status.ruleset {
        RulesetStatus::NotEnforced => (
            "unsupported".into(),
            "Landlock is not enabled in this kernel; the server runs unconfined".into(),
        ),
        RulesetStatus::PartiallyEnforced => {
            gaps.push(format!(
                "kernel Landlock ABI {kabi}: some access rights are not restricted"
            ));
            ("partial".into(), gaps.join("; "))
        }
        RulesetStatus::FullyEnforced if gaps.is_empty() => {
            ("enforced".into(), format!("Landlock ABI {kabi}"))
        }
        RulesetStatus::FullyEnforced => ("partial".into(), gaps.join("; ")),
    })
}

/// Entry point of `vtuberd --sandbox-exec SPEC -- CMD ARGS`: restricts this process and
/// replaces it with the server. Returns only on failure (exit code 126, like a shell).
pub fn exec_sandboxed(spec_json: &str, command: &[OsString]) -> std::process::ExitCode {
    use std::os::unix::process::CommandExt;
    let fail = |msg: String| {
        report("error", msg);
        std::process::ExitCode::from(126)
    };
    let spec: SandboxSpec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => return fail(format!("bad sandbox spec: {e}")),
    };
    let Some((program, args)) = command.split_first() else {
        return fail("no command after --".into());
    };
    let program_str = program.to_string_lossy().into_owned();
    let Some(resolved) = resolve_command(&program_str) else {
        return fail(format!("command `{program_str}` not found in PATH"));
    };
    match restrict(&spec, &resolved, &program_str) {
        Ok((level, detail)) => report(&level, detail),
        Err(e) => return fail(e),
    }
    let err = std::process::Command::new(&resolved).args(args).exec();
    fail(format!("cannot run `{}`: {err}", resolved.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_round_trip() {
        let line = format!("{REPORT_MARKER}{}", r#"{"level":"partial","detail":"x"}"#);
        let r = parse_report(&line).unwrap();
        assert_eq!(r.to_level(), Some((SandboxLevel::Partial, "x".into())));
        assert!(parse_report("INFO server started").is_none());
        assert_eq!(
            parse_report(&format!(
                "{REPORT_MARKER}{}",
                r#"{"level":"error","detail":"no"}"#
            ))
            .unwrap()
            .to_level(),
            None
        );
    }

    #[test]
    fn command_prefixes() {
        let paths = command_paths(Path::new("/home/u/.venv/bin/python3"));
        assert!(paths.contains(&PathBuf::from("/home/u/.venv/bin")));
        assert!(paths.contains(&PathBuf::from("/home/u/.venv")));
        assert!(resolve_command("sh").is_some());
        assert!(resolve_command("surely-not-a-command-xyz").is_none());
    }
}
