//! Binding the local socket safely: the lock that decides which daemon owns it, the
//! stale socket a crashed one left, and the cookie clients must present.

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
        }
    }
}

/// The bound socket plus the lock that proves this daemon owns it, and the cookie
/// clients must present (see [`vtuber_shared::cookie`]).
pub struct BoundSocket {
    pub listener: ls::Listener,
    pub path: PathBuf,
    pub cookie: Cookie,
    _lock: File,
    lock_path: PathBuf,
}

impl BoundSocket {
    /// Removes the socket, lock and cookie files (on clean exit).
    pub fn cleanup(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
        let _ = std::fs::remove_file(vtuber_shared::cookie::cookie_path(&self.path));
    }
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
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock_path = PathBuf::from(lock_name);
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
    if path.exists() {
        tracing::info!(socket = %path.display(), "removing stale socket left by a previous daemon");
        let _ = std::fs::remove_file(path);
    }
    // A new cookie at every start, so one read from an earlier run is worth nothing;
    // written before the socket exists, so a client that finds the socket finds it.
    let cookie_path = vtuber_shared::cookie::cookie_path(path);
    let cookie_err = |source| BindError::Cookie {
        path: cookie_path.clone(),
        source,
    };
    let cookie = Cookie::generate().map_err(cookie_err)?;
    crate::private::write_atomic(&cookie_path, format!("{}\n", cookie.0).as_bytes())
        .map_err(cookie_err)?;
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
        _lock: lock,
        lock_path,
    })
}
