//! The socket cookie: a random secret the daemon writes beside its socket at every start,
//! readable only by the user, that clients present in `hello`.
//!
//! The socket's peer-uid check lets in every process of the user, and that includes MCP
//! tool servers the daemon started: a sandboxed server can still connect to a socket
//! path (Landlock does not govern `connect`). Like D-Bus's cookie and X11's magic
//! cookie, the secret sits in a file the sandbox keeps servers out of, so being the same
//! user is not enough to drive the daemon.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes of randomness in a cookie (written as hex).
pub const COOKIE_BYTES: usize = 32;
/// Longest cookie file a client reads; a real one is `2 * COOKIE_BYTES` characters.
const MAX_COOKIE_FILE: u64 = 1024;

/// Why a client could not read the cookie.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    #[error("cannot read the daemon's cookie {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon's cookie {path} is malformed (expected {expected} hex characters)")]
    Malformed { path: PathBuf, expected: usize },
}

impl CookieError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        "the cookie is written by vtuberd at start beside its socket; run the client as the daemon's user, or restart the daemon"
    }
}

/// `<socket>.cookie`: beside the socket, in the daemon's private runtime folder.
pub fn cookie_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".cookie");
    PathBuf::from(name)
}

/// Reads and checks the cookie of the daemon listening on `socket`.
pub fn read_cookie(socket: &Path) -> Result<String, CookieError> {
    let path = cookie_path(socket);
    let read_err = |source| CookieError::Read {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_COOKIE_FILE)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    let text = text.trim();
    if is_well_formed(text) {
        Ok(text.to_owned())
    } else {
        Err(CookieError::Malformed {
            path,
            expected: 2 * COOKIE_BYTES,
        })
    }
}

/// A cookie is exactly `2 * COOKIE_BYTES` lowercase hex characters.
pub fn is_well_formed(cookie: &str) -> bool {
    cookie.len() == 2 * COOKIE_BYTES
        && cookie
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Compares without an early exit, so the time taken does not tell how much matched.
pub fn same_secret(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// Equality that takes the same time wherever the first difference is (the length is
/// not secret), so a secret cannot be guessed byte by byte from response times.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_sits_beside_the_socket() {
        assert_eq!(
            cookie_path(Path::new("/run/user/1/vtuber/vtuberd.sock")),
            PathBuf::from("/run/user/1/vtuber/vtuberd.sock.cookie")
        );
    }

    #[test]
    fn reads_and_rejects() {
        let dir = std::env::temp_dir().join(format!("vtuber-cookie-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("d.sock");
        assert!(matches!(
            read_cookie(&socket),
            Err(CookieError::Read { .. })
        ));
        let good = "0123456789abcdef".repeat(4);
        std::fs::write(cookie_path(&socket), format!("{good}\n")).unwrap();
        assert_eq!(read_cookie(&socket).unwrap(), good);
        std::fs::write(cookie_path(&socket), "not hex").unwrap();
        let e = read_cookie(&socket).unwrap_err();
        assert!(e.to_string().contains("64 hex"), "{e}");
        std::fs::write(cookie_path(&socket), "A".repeat(64)).unwrap();
        assert!(read_cookie(&socket).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn comparison() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!is_well_formed(""));
        assert!(is_well_formed(&"f".repeat(64)));
    }
}
