//! Socket activation (systemd's `sd_listen_fds(3)` protocol): the local socket and the
//! web port can be opened by the service manager, so clients connect (and wait in the
//! kernel's backlog) before the daemon is even started.
//!
//! The protocol is three variables: `LISTEN_PID` (the process the sockets are for),
//! `LISTEN_FDS` (how many, starting at descriptor 3) and `LISTEN_FDNAMES` (their names,
//! colon-separated, from `FileDescriptorName=`). That is a few lines, so it is written
//! here instead of pulled in: the crates that do it (`listenfd`, `sd-notify`,
//! `libsystemd`) either ignore the names or bring much more than this needs, and none
//! checks the sockets the way the daemon must (see `ipc::listener` and `web`).
//!
//! Names: [`LOCAL`] is the local socket, [`WEB`] the web port. When no descriptor has
//! one of those names (no `LISTEN_FDNAMES`, or systemd's defaults, the socket units'
//! names), they are taken in order: the first is the local socket, the second the web
//! port. Anything else is closed with a warning.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// `FileDescriptorName=` of the local socket.
pub const LOCAL: &str = "local";
/// `FileDescriptorName=` of the web port.
pub const WEB: &str = "web";
/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// More than this is not a sane `LISTEN_FDS` for this daemon; refused as malformed.
const MAX_FDS: usize = 64;

/// The sockets the service manager passed, taken out of the environment.
#[derive(Debug, Default)]
pub struct Inherited {
    /// A socket meant as the local (client) socket; checked when it is used.
    pub local: Option<OwnedFd>,
    /// A socket meant as the web port; checked when it is used.
    pub web: Option<OwnedFd>,
    /// Passed descriptors this daemon has no use for, as `(fd, name)`: closed by
    /// [`Inherited::close_unknown`] once logging is up, so the warning is seen.
    unknown: Vec<(OwnedFd, String)>,
    /// Why the variables were ignored, if they were; logged once logging is up.
    problem: Option<String>,
}

/// What a passed descriptor is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Local,
    Web,
    Unknown(String),
}

impl Inherited {
    /// Reads `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`, removes them from the
    /// environment (nothing the daemon starts sees them), and takes ownership of the
    /// descriptors meant for this process, marking them close-on-exec so no child
    /// process inherits a listening socket.
    ///
    /// # Safety
    /// Changes the process environment and adopts descriptors 3 and up as told by the
    /// variables: call it while the process has one thread and before anything else
    /// opens or owns descriptors.
    pub unsafe fn take_from_env() -> Self {
        let pid = std::env::var("LISTEN_PID").ok();
        let fds = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // SAFETY: the caller guarantees no other thread reads the environment.
            unsafe { std::env::remove_var(var) };
        }
        let roles = match assign(
            pid.as_deref(),
            fds.as_deref(),
            names.as_deref(),
            std::process::id(),
        ) {
            Ok(roles) => roles,
            Err(problem) => {
                return Self {
                    problem: Some(problem),
                    ..Self::default()
                };
            }
        };
        let mut inherited = Self::default();
        for (fd, role) in roles {
            // SAFETY: F_GETFD/F_SETFD only read and set this descriptor's flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags < 0 {
                // Not open: nothing to own (a bogus LISTEN_FDS).
                inherited.problem = Some(format!(
                    "LISTEN_FDS names descriptor {fd}, which is not open"
                ));
                continue;
            }
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
            // SAFETY: the service manager passed this open descriptor to this process
            // (LISTEN_PID matched), and nothing else in it owns descriptors yet.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            match role {
                Role::Local => inherited.local = Some(owned),
                Role::Web => inherited.web = Some(owned),
                Role::Unknown(name) => inherited.unknown.push((owned, name)),
            }
        }
        inherited
    }

    /// Whether the service manager passed any socket.
    pub fn any(&self) -> bool {
        self.local.is_some() || self.web.is_some() || !self.unknown.is_empty()
    }

    /// Logs why the variables were ignored, and closes the descriptors nothing uses,
    /// with a warning each.
    pub fn close_unknown(&mut self) {
        if let Some(problem) = self.problem.take() {
            tracing::warn!("socket activation ignored: {problem}");
        }
        for (fd, name) in self.unknown.drain(..) {
            tracing::warn!(
                fd = ?fd,
                name = %name,
                "the service manager passed a socket this daemon has no use for (names it knows: `{LOCAL}`, `{WEB}`); closing it"
            );
        }
    }
}

/// Why a passed socket cannot serve as what its name says.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("the `{role}` socket passed by the service manager is unusable: {source}")]
    Io {
        role: &'static str,
        source: std::io::Error,
    },
    #[error("the `{role}` socket passed by the service manager is {found}; it must be {wanted}")]
    Wrong {
        role: &'static str,
        found: String,
        wanted: &'static str,
    },
}

impl SocketError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        "check the socket units: `local` is a ListenStream= path, `web` a ListenStream= TCP address (FileDescriptorName= says which is which)"
    }
}

/// A listening Unix stream socket with a path, ready to accept; its path.
pub fn unix_listener(
    fd: OwnedFd,
) -> Result<(std::os::unix::net::UnixListener, PathBuf), SocketError> {
    const ROLE: &str = LOCAL;
    const WANTED: &str = "a listening Unix stream socket with a path (ListenStream=/path)";
    check(fd.as_fd(), ROLE, &[libc::AF_UNIX], WANTED)?;
    let listener = std::os::unix::net::UnixListener::from(fd);
    let addr = listener
        .local_addr()
        .map_err(|source| SocketError::Io { role: ROLE, source })?;
    let Some(path) = addr.as_pathname() else {
        return Err(SocketError::Wrong {
            role: ROLE,
            found: "a Unix socket without a path (abstract or unnamed)".into(),
            wanted: WANTED,
        });
    };
    let path = path.to_path_buf();
    listener
        .set_nonblocking(true)
        .map_err(|source| SocketError::Io { role: ROLE, source })?;
    Ok((listener, path))
}

/// A listening TCP socket, ready to accept.
pub fn tcp_listener(fd: OwnedFd) -> Result<std::net::TcpListener, SocketError> {
    const ROLE: &str = WEB;
    const WANTED: &str = "a listening TCP socket (ListenStream=127.0.0.1:PORT)";
    check(fd.as_fd(), ROLE, &[libc::AF_INET, libc::AF_INET6], WANTED)?;
    let listener = std::net::TcpListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|source| SocketError::Io { role: ROLE, source })?;
    Ok(listener)
}

/// Checks that `fd` is a listening stream socket of one of `domains`.
fn check(
    fd: BorrowedFd<'_>,
    role: &'static str,
    domains: &[libc::c_int],
    wanted: &'static str,
) -> Result<(), SocketError> {
    let io = |source| SocketError::Io { role, source };
    let found_domain = match sockopt(fd, libc::SO_DOMAIN) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Err(SocketError::Wrong {
                role,
                found: "not a socket".into(),
                wanted,
            });
        }
        Err(e) => return Err(io(e)),
    };
    let kind = sockopt(fd, libc::SO_TYPE).map_err(io)?;
    let listening = sockopt(fd, libc::SO_ACCEPTCONN).map_err(io)? != 0;
    if domains.contains(&found_domain) && kind == libc::SOCK_STREAM && listening {
        return Ok(());
    }
    let family = match found_domain {
        libc::AF_UNIX => "a Unix",
        libc::AF_INET => "an IPv4",
        libc::AF_INET6 => "an IPv6",
        _ => "an other-family",
    };
    let kind = match kind {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "other-type",
    };
    let state = if listening {
        "listening"
    } else {
        "not listening"
    };
    Err(SocketError::Wrong {
        role,
        found: format!("{family} {kind} socket, {state}"),
        wanted,
    })
}

/// One integer socket option (`SOL_SOCKET`).
fn sockopt(fd: BorrowedFd<'_>, option: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of a c_int and its size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Which descriptor is which, from the variables' values; `Ok(vec![])` when none are
/// meant for process `me`. `Err` says why malformed variables are ignored.
fn assign(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Result<Vec<(RawFd, Role)>, String> {
    let Some(fds) = fds else {
        return Ok(Vec::new());
    };
    // Like sd_listen_fds: without LISTEN_PID, or for another process, they are not ours
    // (a parent's, leaked into our environment); leave the descriptors alone.
    match pid.map(|p| p.trim().parse::<u32>()) {
        Some(Ok(pid)) if pid == me => {}
        Some(Ok(_)) | None => return Ok(Vec::new()),
        Some(Err(_)) => {
            return Err(format!(
                "LISTEN_PID `{}` is not a process id",
                pid.unwrap_or_default()
            ));
        }
    }
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS `{fds}` is not a count"))?;
    if count > MAX_FDS {
        return Err(format!(
            "LISTEN_FDS is {count}; at most {MAX_FDS} are accepted"
        ));
    }
    let names: Vec<&str> = match names {
        Some(n) if !n.is_empty() => n.split(':').collect(),
        _ => Vec::new(),
    };
    if !names.is_empty() && names.len() != count {
        return Err(format!(
            "LISTEN_FDNAMES has {} names for {count} descriptors",
            names.len()
        ));
    }
    let by_name = names.iter().any(|n| *n == LOCAL || *n == WEB);
    let mut roles = Vec::with_capacity(count);
    let (mut local, mut web) = (false, false);
    for i in 0..count {
        let name = names.get(i).copied().unwrap_or("unknown");
        let wanted = if by_name {
            match name {
                LOCAL => Role::Local,
                WEB => Role::Web,
                other => Role::Unknown(other.to_owned()),
            }
        } else {
            match i {
                0 => Role::Local,
                1 => Role::Web,
                _ => Role::Unknown(name.to_owned()),
            }
        };
        // A second socket of a kind is one too many.
        let role = match wanted {
            Role::Local if local => Role::Unknown(name.to_owned()),
            Role::Web if web => Role::Unknown(name.to_owned()),
            r => r,
        };
        local |= role == Role::Local;
        web |= role == Role::Web;
        // `i < MAX_FDS`, so this fits.
        roles.push((FIRST_FD + i as RawFd, role));
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(name: &str) -> Role {
        Role::Unknown(name.to_owned())
    }

    #[test]
    fn nothing_passed_or_not_for_us() {
        assert_eq!(assign(None, None, None, 7), Ok(vec![]));
        // Another process's sockets, or no LISTEN_PID at all: not ours.
        assert_eq!(assign(Some("8"), Some("2"), None, 7), Ok(vec![]));
        assert_eq!(assign(None, Some("2"), None, 7), Ok(vec![]));
        assert_eq!(assign(Some("7"), Some("0"), None, 7), Ok(vec![]));
    }

    #[test]
    fn names_say_which_is_which() {
        assert_eq!(
            assign(Some("7"), Some("2"), Some("web:local"), 7),
            Ok(vec![(3, Role::Web), (4, Role::Local)])
        );
        assert_eq!(
            assign(Some(" 7\n"), Some("1"), Some("web"), 7),
            Ok(vec![(3, Role::Web)])
        );
        // Names we do not know, and a second `local`, are closed.
        assert_eq!(
            assign(Some("7"), Some("3"), Some("local:metrics:local"), 7),
            Ok(vec![
                (3, Role::Local),
                (4, unknown("metrics")),
                (5, unknown("local"))
            ])
        );
    }

    #[test]
    fn without_known_names_order_decides() {
        assert_eq!(
            assign(Some("7"), Some("3"), None, 7),
            Ok(vec![
                (3, Role::Local),
                (4, Role::Web),
                (5, unknown("unknown"))
            ])
        );
        // systemd's default names are the socket units'.
        assert_eq!(
            assign(
                Some("7"),
                Some("2"),
                Some("vtuberd.socket:vtuberd-web.socket"),
                7
            ),
            Ok(vec![(3, Role::Local), (4, Role::Web)])
        );
        assert_eq!(
            assign(Some("7"), Some("1"), Some(""), 7),
            Ok(vec![(3, Role::Local)])
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        assert!(
            assign(Some("seven"), Some("1"), None, 7)
                .unwrap_err()
                .contains("LISTEN_PID")
        );
        assert!(
            assign(Some("7"), Some("two"), None, 7)
                .unwrap_err()
                .contains("LISTEN_FDS")
        );
        assert!(
            assign(Some("7"), Some("-1"), None, 7)
                .unwrap_err()
                .contains("LISTEN_FDS")
        );
        assert!(
            assign(Some("7"), Some("100000"), None, 7)
                .unwrap_err()
                .contains("at most")
        );
        assert!(
            assign(Some("7"), Some("2"), Some("local"), 7)
                .unwrap_err()
                .contains("1 names for 2")
        );
    }

    #[test]
    fn sockets_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (_, found) = unix_listener(OwnedFd::from(unix)).unwrap();
        assert_eq!(found, path);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        tcp_listener(OwnedFd::from(tcp)).unwrap();

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = unix_listener(OwnedFd::from(tcp)).unwrap_err();
        assert!(
            e.to_string().contains("IPv4 stream socket, listening"),
            "{e}"
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = tcp_listener(OwnedFd::from(udp)).unwrap_err();
        assert!(
            e.to_string()
                .contains("IPv4 datagram socket, not listening"),
            "{e}"
        );
        let (a, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = unix_listener(OwnedFd::from(a)).unwrap_err();
        assert!(
            e.to_string().contains("Unix stream socket, not listening"),
            "{e}"
        );
        let file = std::fs::File::open("/dev/null").unwrap();
        let e = tcp_listener(OwnedFd::from(file)).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
    }
}
