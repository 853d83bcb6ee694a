//! Landlock confinement of stdio MCP servers.
//!
//! The daemon never restricts itself: it starts `vtuberd --sandbox-exec SPEC -- CMD ARGS`,
//! and that short-lived process (single-threaded, before any async runtime) builds the
//! ruleset, restricts itself, reports the result on stderr, and `exec`s the server. This
//! avoids `pre_exec` in a multi-threaded parent, where only async-signal-safe code may run.
//!
//! Every stdio server, sandboxed or not, starts through the launcher with no
//! capabilities (bounding, ambient, inheritable, permitted and effective sets cleared,
//! `no_new_privs` set): a server started by a root daemon must not bypass the daemon
//! being non-dumpable (reading its `/proc/<pid>/environ` needs `CAP_SYS_PTRACE`) or file
//! permissions.
//!
//! What a sandboxed server gets:
//! - read + execute: system trees (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`, `/opt`,
//!   `/proc`, `/sys/devices/system/cpu`, `/run/systemd/resolve`, `/nix/store`; missing
//!   ones are skipped), the command's folder and install prefix (its
//!   canonical target too, so venvs and nvm installs work), for Python tools the
//!   user's `~/.local/lib` and `~/.local/bin` (user site-packages) and the pipx/uv tool
//!   folders — never all of `~/.local`, which holds vtuber's history — the configured
//!   `read` folders and the server's `cwd`;
//! - read + write: `/dev/null`, `/dev/zero`, `/dev/urandom`, `/dev/random`, the configured
//!   `write` folders, and a private scratch folder that `TMPDIR` points at. The shared
//!   `/tmp` is deliberately not granted: other programs' files live there;
//! - TCP bind/connect only when `network: true` (denial needs Landlock ABI 4);
//! - no signals to processes outside the sandbox (the daemon, the user's other
//!   programs) and no abstract unix sockets made outside it (Landlock ABI 6 scopes).
//!
//! Whatever the kernel cannot enforce is named in the report (`vtuber mcp list`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vtuber_shared::SandboxLevel;

/// Prefix of the one stderr line the launcher writes before `exec`.
pub const REPORT_MARKER: &str = "VTUBERD-SANDBOX ";

/// What the daemon asks the launcher to enforce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub network: bool,
    /// Granted read-only (the server's working folder).
    pub cwd: Option<PathBuf>,
    /// Private scratch folder, granted read-write.
    pub scratch: Option<PathBuf>,
    /// `false`: no Landlock (the server's `sandbox.enabled: false`); capabilities are
    /// dropped all the same.
    #[serde(default = "yes")]
    pub confine: bool,
}

fn yes() -> bool {
    true
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
            "off" => SandboxLevel::Off,
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
/// Under `$HOME`: where Python tools keep user site-packages, scripts and tool venvs.
const PYTHON_USER_FOLDERS: &[&str] = &[
    ".local/lib",
    ".local/bin",
    ".local/pipx",
    ".local/share/pipx",
    ".local/share/uv",
    ".cache/uv",
];

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
        Scope, path_beneath_rules,
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
        let home = PathBuf::from(home);
        read.extend(
            PYTHON_USER_FOLDERS
                .iter()
                .map(|rel| home.join(rel))
                .filter(|p| p.exists()),
        );
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
    if kabi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(err)?;
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
    if kabi < 6 {
        gaps.push(format!(
            "can signal the daemon and other processes of the user, and reach abstract unix sockets (kernel Landlock ABI {kabi}, needs 6)"
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
    // The server's files get ordinary modes; the daemon's own umask is 077.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o022) };
    // Landlock first (opening the granted folders may still need the capabilities a
    // root daemon has), then the capabilities go.
    let confined = if spec.confine {
        match restrict(&spec, &resolved, &program_str) {
            Ok(c) => Some(c),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let caps_gap = match drop_capabilities() {
        Ok(gap) => gap,
        Err(e) => return fail(e),
    };
    match confined {
        None => report("off", caps_gap.unwrap_or_default()),
        Some((mut level, mut detail)) => {
            if let Some(gap) = caps_gap {
                if level == "enforced" {
                    level = "partial".into();
                    detail = gap;
                } else {
                    detail = format!("{detail}; {gap}");
                }
            }
            report(&level, detail)
        }
    }
    let err = std::process::Command::new(&resolved).args(args).exec();
    fail(format!("cannot run `{}`: {err}", resolved.display()))
}

/// Clears every capability set and sets `no_new_privs`, so neither this process nor
/// what it `exec`s holds or can regain a capability. Returns a note when some remain
/// (only possible for a process that had capabilities but not `CAP_SETPCAP`); errors
/// when `no_new_privs` cannot be set.
fn drop_capabilities() -> Result<Option<String>, String> {
    use caps::CapSet;
    // SAFETY: PR_SET_NO_NEW_PRIVS takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot set no_new_privs: {}",
            std::io::Error::last_os_error()
        ));
    }
    // The bounding set first: dropping from it needs CAP_SETPCAP, which the clears
    // below take away. Without CAP_SETPCAP (an ordinary user) it fails harmlessly: such
    // a process has no permitted capabilities, and no_new_privs keeps it that way.
    // Every index the kernel may know, not only those this crate names (EINVAL past the
    // last one is ignored).
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number, no pointers.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    let _ = caps::clear(None, CapSet::Ambient);
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(|e| format!("cannot drop capabilities: {e}"))?;
    }
    let left = caps::read(None, CapSet::Permitted)
        .map_err(|e| format!("cannot read capabilities: {e}"))?;
    Ok((!left.is_empty()).then(|| format!("{} capabilities kept", left.len())))
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
