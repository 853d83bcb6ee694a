//! Finding, starting and waiting for `vtuberd`.
//!
//! The client never links daemon code: it runs the `vtuberd` program, detached, and
//! then talks to it over the socket like any other client would.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::Instant;
use vtuber_shared::paths;

use crate::exit::Exit;
use vtuber_shared::client::{self, ConnectError, Connection, Hello};

/// How long a freshly spawned daemon gets to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `daemon stop` waits for the socket to go quiet after `shutdown`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Log lines shown when a start fails.
const LOG_TAIL_LINES: usize = 20;
/// Written before each start so the error can show only this attempt's output.
const LOG_MARKER: &str = "--- vtuber: starting vtuberd";

/// The message every query command prints when there is no daemon to ask.
pub const NOT_RUNNING: &str =
    "vtuberd is not running (start it with `vtuber daemon start` or `vtuber chat`)";

/// Where the daemon is (or should be) and how to start it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resolved socket path, also passed to a daemon we start.
    pub socket: PathBuf,
    /// `--config` as given, passed on to a daemon we start.
    pub config: Option<PathBuf>,
}

impl Target {
    pub fn new(socket_flag: Option<PathBuf>, config: Option<PathBuf>) -> Self {
        let socket_flag = socket_flag.filter(|p| !p.as_os_str().is_empty());
        Self {
            socket: paths::socket_path(socket_flag),
            config: config.filter(|p| !p.as_os_str().is_empty()),
        }
    }
}

/// The daemon's log file, where a started daemon's stdout and stderr go.
pub fn log_path() -> PathBuf {
    paths::data_dir().join("vtuberd.log")
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Environment variable naming the daemon program to run, overriding the search.
pub const DAEMON_BIN_ENV: &str = "VTUBERD_BIN";

/// `$VTUBERD_BIN`, else `vtuberd` next to this program (an install or a cargo target
/// dir), else on `PATH`.
pub fn find_vtuberd() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(DAEMON_BIN_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        bail!(
            "${DAEMON_BIN_ENV} names {}, which is not an executable file",
            p.display()
        );
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("vtuberd")));
    if let Some(p) = beside.as_deref().filter(|p| is_executable(p)) {
        return Ok(p.to_owned());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("vtuberd");
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    bail!(
        "cannot find the `vtuberd` program next to {} or on PATH; \
         install it alongside vtuber or add its directory to PATH",
        beside
            .as_deref()
            .and_then(Path::parent)
            .map_or_else(|| "this program".to_owned(), |d| d.display().to_string())
    )
}

/// Spawns the daemon detached: own process group (so the terminal's Ctrl+C does not
/// reach it), no stdin, output appended to the log.
fn spawn(target: &Target) -> Result<Child> {
    let program = find_vtuberd()?;
    let log = log_path();
    if let Some(dir) = log.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    // The log holds what the daemon says about conversations: private, like the history.
    let mut out = {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log)
            .with_context(|| format!("cannot open the daemon log {}", log.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make the daemon log {} private", log.display()))?;
        f
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    writeln!(out, "{LOG_MARKER} at {} ---", crate::time::format_ms(now))
        .with_context(|| format!("cannot write the daemon log {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot open the daemon log {}", log.display()))?;

    let mut cmd = Command::new(&program);
    // Always the path we will poll: a socket set only in the daemon's config file
    // would otherwise leave us waiting on the wrong path.
    cmd.arg("--socket").arg(&target.socket);
    if let Some(config) = &target.config {
        cmd.arg("--config").arg(config);
    }
    // The output goes to a file: colour codes would only clutter it.
    cmd.env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("cannot run {}", program.display()))
}

/// The end of the log from our last start marker on (at most a few lines).
pub fn log_tail(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    // The tail of a big log is enough; read at most the last 64 KiB.
    file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let since_marker = text
        .rfind(LOG_MARKER)
        .map_or(&*text, |i| &text[i..])
        .lines()
        .skip(1)
        .collect::<Vec<_>>();
    let start = since_marker.len().saturating_sub(LOG_TAIL_LINES);
    let tail = since_marker[start..].join("\n");
    (!tail.trim().is_empty()).then_some(tail)
}

fn start_failure(message: String) -> anyhow::Error {
    let log = log_path();
    match log_tail(&log) {
        Some(tail) => anyhow!(
            "{message}\nlast lines of {}:\n{}",
            log.display(),
            indent(&tail)
        ),
        None => anyhow!("{message} (its log {} is empty)", log.display()),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts the daemon and waits (up to [`START_TIMEOUT`]) until it answers `hello`.
pub async fn start(target: &Target, hello: Hello) -> Result<Connection> {
    let mut child = spawn(target)?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        let last_error = match client::connect(&target.socket, hello.clone()).await {
            Ok(conn) => {
                // Reap the daemon if it exits while we still run (a long chat session).
                std::thread::spawn(move || child.wait());
                return Ok(conn);
            }
            Err(ConnectError::Handshake(body)) => {
                return Err(anyhow!("vtuberd refused the connection: {body}"));
            }
            Err(e) => e,
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(start_failure(format!(
                "vtuberd exited during startup ({status})"
            )));
        }
        if Instant::now() >= deadline {
            return Err(start_failure(format!(
                "vtuberd did not start answering within {} s ({last_error})",
                START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(pause.min(deadline - Instant::now())).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Connects, starting the daemon first when nothing answers (for `chat` and `say`).
pub async fn connect_or_start(target: &Target, hello: Hello) -> Result<Connection> {
    match client::connect(&target.socket, hello.clone()).await {
        Ok(conn) => {
            if let Some(note) = config_mismatch(target, &conn.welcome.status) {
                eprintln!("vtuber: {note}");
            }
            Ok(conn)
        }
        Err(ConnectError::NotRunning { .. }) => {
            eprintln!("vtuber: starting vtuberd…");
            start(target, hello).await
        }
        Err(e) => Err(connect_failure(e)),
    }
}

/// `--config` only matters when starting a daemon; say so when the running one
/// uses another file, since the user evidently expected it to apply.
fn config_mismatch(target: &Target, status: &vtuber_shared::Status) -> Option<String> {
    let wanted = target.config.as_ref()?;
    let same = status.config_file.as_deref().is_some_and(|running| {
        let running = Path::new(running);
        running == wanted
            || running
                .canonicalize()
                .ok()
                .is_some_and(|r| wanted.canonicalize().ok() == Some(r))
    });
    (!same).then(|| {
        format!(
            "vtuberd is already running with {}; --config {} applies when it starts \
             (`vtuber daemon restart` to use it)",
            status
                .config_file
                .as_deref()
                .unwrap_or("the built-in defaults"),
            wanted.display()
        )
    })
}

/// Connects to a running daemon; when there is none, fails with [`NOT_RUNNING`] and
/// exit status `code` (query commands do not start a daemon behind the user's back).
pub async fn connect_existing(target: &Target, hello: Hello, code: u8) -> Result<Connection> {
    match client::connect(&target.socket, hello).await {
        Ok(conn) => Ok(conn),
        Err(ConnectError::NotRunning { .. }) => Err(Exit::new(code, NOT_RUNNING).into()),
        Err(e) => Err(connect_failure(e)),
    }
}

/// Turns a connect error into a message that says what to do.
pub fn connect_failure(err: ConnectError) -> anyhow::Error {
    match err {
        ConnectError::Io { socket, source }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            anyhow!(
                "permission denied on {}; the daemon there belongs to another user \
                 (use --socket to pick your own)",
                socket.display()
            )
        }
        other => anyhow!("{other}"),
    }
}

/// Polls until nothing answers on the socket any more, or the deadline passes.
pub async fn wait_until_stopped(socket: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        // Anything but "not running" (still answering, or half-gone and erroring)
        // means: keep polling.
        if let Err(ConnectError::NotRunning { .. }) =
            client::connect(socket, Hello::new("stop", false)).await
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause.min(deadline - Instant::now())).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_shows_only_the_last_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vtuberd.log");
        std::fs::write(
            &log,
            format!(
                "{LOG_MARKER} at 1 ---\nold failure\n{LOG_MARKER} at 2 ---\nerror: bad config\n  at line 3\n"
            ),
        )
        .unwrap();
        assert_eq!(
            log_tail(&log).as_deref(),
            Some("error: bad config\n  at line 3")
        );
    }

    #[test]
    fn log_tail_keeps_the_last_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vtuberd.log");
        let body: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, format!("{LOG_MARKER} ---\n{body}")).unwrap();
        let tail = log_tail(&log).unwrap();
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.ends_with("line 99"));
        assert_eq!(log_tail(&dir.path().join("missing.log")), None);
    }

    #[test]
    fn a_different_running_config_is_noticed() {
        let mut status = vtuber_shared::client::fake_daemon::status();
        let target = Target::new(None, Some(PathBuf::from("/etc/a.yaml")));
        assert!(config_mismatch(&target, &status).is_some());
        status.config_file = Some("/etc/a.yaml".into());
        assert_eq!(config_mismatch(&target, &status), None);
        assert_eq!(config_mismatch(&Target::new(None, None), &status), None);
    }

    #[test]
    fn empty_flags_are_ignored() {
        let t = Target::new(Some(PathBuf::new()), Some(PathBuf::new()));
        assert_eq!(t.socket, paths::socket_path(None));
        assert_eq!(t.config, None);
    }
}
