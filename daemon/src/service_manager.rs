//! Talking to the service manager (systemd's `sd_notify(3)` protocol): `READY=1` once
//! clients can be served, readable `STATUS=` lines, `WATCHDOG=1` while the conversation
//! actor still answers, and `STOPPING=1` when the daemon winds down (when each is sent:
//! `readiness`).
//!
//! The protocol is one datagram per message to the socket named by `$NOTIFY_SOCKET`, so
//! it is written here rather than pulled in as a crate. The variables are read and
//! removed before any thread starts, so nothing the daemon runs (speech programs, tool
//! servers) can speak for it.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use vtuber_shared::{ModelLoad, Status};

/// Longest `STATUS=` text sent; systemd shows one line.
const STATUS_MAX_CHARS: usize = 200;

/// The service manager, when the daemon runs under one.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and removes them from
    /// the environment.
    ///
    /// # Safety
    /// Changes the process environment: call it while the process has one thread.
    pub unsafe fn take_from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: the caller guarantees no other thread reads the environment.
            unsafe { std::env::remove_var(var) };
        }
        let target = socket.and_then(|s| match connect(&s) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!(
                    "vtuberd: NOTIFY_SOCKET {} is unusable ({e}); the service manager will not hear from this daemon",
                    s.to_string_lossy()
                );
                None
            }
        });
        let watchdog = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id());
        Self { target, watchdog }
    }

    /// How often to ping the watchdog, when the service manager asked for one.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Whether a service manager listens.
    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message (`KEY=value` lines). Never blocks: a full queue drops it.
    pub fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            tracing::debug!(error = %e, "service manager notification not sent");
        }
    }

    /// `RELOADING=1` with the monotonic time systemd asks for; `ready()` must follow.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration"
        ));
    }

    /// `READY=1` after a reload, with the status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `STOPPING=1`, with what is happening.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as `RELOADING=1` wants it.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// How often to ping the watchdog: half its timeout, when it is meant for this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// A non-blocking datagram socket and the manager's address (`@name` is abstract).
fn connect(path: &std::ffi::OsStr) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

/// The `STATUS=` line: "ready: mao, embedded LLM SmolLM2, 2 clients".
pub fn status_line(status: &Status) -> String {
    let llm = format!("{} LLM {}", status.llm.backend, status.llm.model);
    let llm = match &status.model_load {
        ModelLoad::Ready | ModelLoad::NotLoaded => llm,
        ModelLoad::Loading => format!("{llm} (loading)"),
        ModelLoad::Failed { reason } => format!("{llm} (failed: {reason})"),
    };
    let clients = match status.clients {
        1 => "1 client".to_owned(),
        n => format!("{n} clients"),
    };
    format!("ready: {}, {llm}, {clients}", status.character)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(STATUS_MAX_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtuber_shared::LlmInfo;

    #[test]
    fn the_watchdog_is_for_this_process_only() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    fn status(load: ModelLoad, clients: usize) -> Status {
        Status {
            character: "mao".into(),
            llm: LlmInfo {
                backend: "embedded".into(),
                model: "SmolLM2".into(),
            },
            model_load: load,
            clients,
            ..vtuber_shared::client::fake_daemon::status()
        }
    }

    #[test]
    fn status_lines_read_as_one_line() {
        assert_eq!(
            status_line(&status(ModelLoad::Ready, 2)),
            "ready: mao, embedded LLM SmolLM2, 2 clients"
        );
        assert_eq!(
            status_line(&status(ModelLoad::Ready, 1)),
            "ready: mao, embedded LLM SmolLM2, 1 client"
        );
        let failed = status_line(&status(
            ModelLoad::Failed {
                reason: "no file\nat all".into(),
            },
            0,
        ));
        assert_eq!(
            failed,
            "ready: mao, embedded LLM SmolLM2 (failed: no file at all), 0 clients"
        );
        let long = status_line(&status(
            ModelLoad::Failed {
                reason: "x".repeat(1000),
            },
            0,
        ));
        assert_eq!(long.chars().count(), STATUS_MAX_CHARS);
    }

    #[test]
    fn messages_reach_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some(connect(path.as_os_str()).unwrap()),
            watchdog: None,
        };
        notifier.send("READY=1\nSTATUS=ok");
        notifier.stopping();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=stopping");
        // No manager: nothing to send to, and no error.
        Notifier::default().send("READY=1");
    }
}
