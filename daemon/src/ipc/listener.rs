//! Binding the local socket safely: the lock that decides which daemon owns it, the
//! stale socket a crashed one left, and the cookie clients must present. Or adopting
//! the one the service manager opened (socket activation, [`adopt`]): the same lock and
//! cookie, but the socket file is systemd's to keep.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName, tokio as ls};
use interprocess::os::unix::local_socket::ListenerOptionsExt;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another vtuberd{pid} already owns {socket}")]
    AlreadyRunning { socket: PathBuf, pid: String },
    #[error("cannot prepare the socket folder {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind the socket {socket}: {source}")]
    Bind {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the socket cookie {path}: {source}")]
    Cookie {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Inherited(#[from] crate::socket_activation::SocketError),
}

impl BindError {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::AlreadyRunning { .. } => {
                "stop it with `vtuber daemon stop`, or pass another --socket"
            }
            Self::Dir { .. } | Self::Bind { .. } | Self::Cookie { .. } => {
                "check permissions, or pass --socket / set $VTUBER_SOCKET to a writable path"
            }
            Self::Inherited(e) => e.hint(),
        }
    }
}

/// The bound socket plus the lock that proves this daemon owns it, and the cookie
/// clients must present (see [`vtuber_shared::cookie`]).
pub struct BoundSocket {
    pub listener: ls::Listener,
    pub path: PathBuf,
    pub cookie: Cookie,
    /// The socket came from the service manager, which keeps its file (clients connect
    /// to it while no daemon runs): only the lock and the cookie are removed.
    pub activated: bool,
    _lock: File,
}

impl BoundSocket {
    /// Removes the socket (unless the service manager owns it), lock and cookie files
    /// (on clean exit).
    pub fn cleanup(&self) {
        remove_files(&self.path, self.activated);
    }
}

/// Removes what a daemon leaves beside `socket`: the lock, the cookie, and the socket
/// itself unless the service manager owns it.
pub fn remove_files(socket: &Path, activated: bool) {
    if !activated {
        let _ = std::fs::remove_file(socket);
    }
    let _ = std::fs::remove_file(lock_path(socket));
    let _ = std::fs::remove_file(vtuber_shared::cookie::cookie_path(socket));
}

/// `<socket>.lock`.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The secret this daemon's clients present in `hello`.
#[derive(Clone)]
pub struct Cookie(pub(super) Arc<str>);

impl Cookie {
    /// A fresh random cookie.
    pub fn generate() -> std::io::Result<Self> {
        Ok(Self(
            crate::private::random_hex(vtuber_shared::cookie::COOKIE_BYTES)?.into(),
        ))
    }

    /// Whether `presented` is this cookie (constant time).
    pub fn matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| vtuber_shared::cookie::same_secret(p.trim(), &self.0))
    }
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(..)")
    }
}

/// Binds `path`. An exclusive lock on `<path>.lock` decides ownership: while another
/// daemon holds it we refuse; once we hold it, any socket file left is stale (its owner
/// crashed) and is removed.
pub fn bind(path: &Path) -> Result<BoundSocket, BindError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| BindError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    // Our own runtime folder is private even if something loosened it; a folder the user
    // chose with --socket is theirs to manage.
    if dir == vtuber_shared::paths::runtime_dir() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let lock = lock(path)?;
    if path.exists() {
        tracing::info!(socket = %path.display(), "removing stale socket left by a previous daemon");
        let _ = std::fs::remove_file(path);
    }
    let cookie = write_cookie(path)?;
    let name = path
        .to_fs_name::<GenericFilePath>()
        .map_err(|source| BindError::Bind {
            socket: path.to_path_buf(),
            source,
        })?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .reclaim_name(false)
        .create_tokio()
        .map_err(|source| BindError::Bind {
            socket: path.to_path_buf(),
            source,
        })?;
    // Belt and braces where the platform ignored the requested mode.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(BoundSocket {
        listener,
        path: path.to_path_buf(),
        cookie,
        activated: false,
        _lock: lock,
    })
}

/// Adopts the local socket the service manager opened (socket activation): it must be a
/// listening Unix stream socket with a path (checked here). Its path is the daemon's
/// socket from then on; when it is not `configured` (the path `--socket`,
/// `$VTUBER_SOCKET` or the default name) a warning says so, since clients look there.
/// The lock and the cookie are as with [`bind`]; the socket file is left alone, now and
/// at exit. Must run inside the tokio runtime.
pub fn adopt(fd: std::os::fd::OwnedFd, configured: &Path) -> Result<BoundSocket, BindError> {
    let (std_listener, path) = crate::socket_activation::unix_listener(fd)?;
    if path != configured {
        tracing::warn!(
            passed = %path.display(),
            configured = %configured.display(),
            "the service manager's socket is not where this daemon would bind its own; serving on the passed one (clients need --socket or $VTUBER_SOCKET to find it)"
        );
    }
    let lock = lock(&path)?;
    let cookie = write_cookie(&path)?;
    let bind_err = |source| BindError::Bind {
        socket: path.clone(),
        source,
    };
    let uds = interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(
        std::os::fd::OwnedFd::from(std_listener),
    )
    .map_err(bind_err)?;
    Ok(BoundSocket {
        listener: ls::Listener::from(uds),
        path,
        cookie,
        activated: true,
        _lock: lock,
    })
}

/// Takes the exclusive lock on `<path>.lock` and writes our pid in it; refuses while
/// another daemon holds it.
fn lock(path: &Path) -> Result<File, BindError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let lock_path = lock_path(path);
    let mut lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|source| BindError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
    let _ = lock.set_permissions(std::fs::Permissions::from_mode(0o600));
    if lock.try_lock().is_err() {
        let mut pid = String::new();
        let _ = lock.read_to_string(&mut pid);
        let pid = pid.trim();
        return Err(BindError::AlreadyRunning {
            socket: path.to_path_buf(),
            pid: if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            },
        });
    }
    let _ = lock.set_len(0);
    let _ = write!(lock, "{}", std::process::id());
    Ok(lock)
}

/// A new cookie at every start, so one read from an earlier run is worth nothing;
/// written before the socket accepts, so a client that is served finds it (one that
/// connected to an activated socket waits for it: see `vtuber_shared::client`).
fn write_cookie(socket: &Path) -> Result<Cookie, BindError> {
    let cookie_path = vtuber_shared::cookie::cookie_path(socket);
    let cookie_err = |source| BindError::Cookie {
        path: cookie_path.clone(),
        source,
    };
    let cookie = Cookie::generate().map_err(cookie_err)?;
    crate::private::write_atomic(&cookie_path, format!("{}\n", cookie.0).as_bytes())
        .map_err(cookie_err)?;
    Ok(cookie)
}
