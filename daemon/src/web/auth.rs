//! The web server's access token: where it comes from (`web.token`, or a random one kept
//! in `<data dir>/private/web-token`), how requests present it (`?token=`,
//! `Authorization: Bearer`, the page's cookie) and how it is compared (SHA-256 digests,
//! constant time). The token is never logged.

use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use super::WebError;

/// What a request must present, kept as digests compared in constant time. The secrets
/// themselves are never logged.
pub(crate) struct TokenAuth {
    /// SHA-256 of the token (`?token=`, `Authorization: Bearer`).
    token: [u8; 32],
    /// The cookie's name: `vtuber-auth-<port>`, as cookies are shared by every port of
    /// a host.
    cookie_name: String,
    /// The cookie's value: derived from the token, so the cookie never holds the token.
    cookie_value: String,
    cookie: [u8; 32],
}

impl TokenAuth {
    pub(crate) fn new(token: &str, port: u16) -> Self {
        let cookie_value = hex(&Sha256::digest(format!("vtuber-web-cookie\n{token}")));
        Self {
            token: digest(token),
            cookie_name: format!("vtuber-auth-{port}"),
            cookie: digest(&cookie_value),
            cookie_value,
        }
    }

    pub(crate) fn token_matches(&self, presented: &str) -> bool {
        same_digest(&digest(presented), &self.token)
    }

    /// A `?token=`, `Authorization: Bearer` or cookie that matches.
    pub(crate) fn allows(&self, headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
        let by_token = presented_token(headers, uri).is_some_and(|t| self.token_matches(&t));
        // Every candidate is compared, so the time taken does not say which one matched.
        let by_cookie = cookie_values(headers, &self.cookie_name)
            .iter()
            .fold(false, |ok, v| ok | same_digest(&digest(v), &self.cookie));
        by_token | by_cookie
    }

    pub(crate) fn set_cookie(&self, secure: bool) -> String {
        format!(
            "{}={}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Strict{}",
            self.cookie_name,
            self.cookie_value,
            if secure { "; Secure" } else { "" }
        )
    }
}

/// The cookie lasts a year: a bookmark of the clean address keeps working until the
/// token changes.
const COOKIE_MAX_AGE_SECS: u64 = 365 * 24 * 3600;

/// Where the generated token is kept, under the data folder.
pub const TOKEN_DIR: &str = "private";
pub const TOKEN_FILE: &str = "web-token";

/// `<data dir>/private`: the generated token's folder (mode 0700).
pub fn token_dir() -> PathBuf {
    vtuber_shared::paths::data_dir().join(TOKEN_DIR)
}

/// The generated token: read from `<dir>/web-token`, or made (32 random bytes from the
/// OS, as hex) and written there with mode 0600, in a folder of mode 0700. A file or
/// folder others may read is tightened (one log line). Blocking: run it off the runtime.
pub fn load_or_create_token(dir: &Path) -> Result<String, WebError> {
    let file = dir.join(TOKEN_FILE);
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| WebError::TokenFile { path, source }
    };
    crate::private::ensure_dir(dir).map_err(io_err(dir))?;
    private_mode(dir, true, 0o700)?;
    // Two daemons sharing a data folder may race: the file appears whole (a hard link
    // of a finished file) or not at all, and the loser reads the winner's.
    for _ in 0..3 {
        match std::fs::symlink_metadata(&file) {
            Ok(_) => {
                private_mode(&file, false, 0o600)?;
                let text = std::fs::read_to_string(&file).map_err(io_err(&file))?;
                return parse_token_file(&file, &text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&file)(e)),
        }
        let token = crate::private::random_hex(32).map_err(io_err(&file))?;
        let tmp = dir.join(format!(".{TOKEN_FILE}.{}.tmp", std::process::id()));
        write_private(&tmp, &token).map_err(io_err(&tmp))?;
        let linked = std::fs::hard_link(&tmp, &file);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(file = %file.display(), "made a new web access token");
                return Ok(token);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&file)(e)),
        }
    }
    Err(WebError::BadTokenFile {
        path: file.display().to_string(),
        why: "it keeps disappearing while being read".into(),
    })
}

/// Checks that `path` is ours and of the right kind, and takes group and other
/// permissions away when it has any.
fn private_mode(path: &Path, dir: bool, mode: u32) -> Result<(), WebError> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display().to_string();
    let io_err = |source| WebError::TokenFile {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
    let kind_ok = if dir { meta.is_dir() } else { meta.is_file() };
    if !kind_ok {
        return Err(WebError::BadTokenFile {
            path: shown,
            why: format!(
                "it is not a {} (a link or something else is in the way)",
                if dir { "folder" } else { "plain file" }
            ),
        });
    }
    if vtuber_shared::paths::current_uid().is_some_and(|uid| uid != meta.uid()) {
        return Err(WebError::BadTokenFile {
            path: shown,
            why: format!("it belongs to user id {}, not to this user", meta.uid()),
        });
    }
    crate::private::tighten(path, mode).map_err(io_err)
}

fn parse_token_file(file: &Path, text: &str) -> Result<String, WebError> {
    let token = text.trim();
    let why = if token.is_empty() {
        Some("it is empty")
    } else if token.len() > 4096 {
        Some("it is longer than 4096 bytes")
    } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it holds spaces or control characters")
    } else {
        None
    };
    match why {
        Some(why) => Err(WebError::BadTokenFile {
            path: file.display().to_string(),
            why: why.into(),
        }),
        None => Ok(token.to_owned()),
    }
}

/// `token` and a newline into a new file of mode 0600 (an old leftover is replaced).
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()?
        }
        other => other?,
    };
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `text` for a URL's query: unreserved characters as they are, the rest `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two digests.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    vtuber_shared::cookie::same_bytes(a, b)
}

/// `url` with the token as `?token=`, when there is one.
pub fn page_url(url: &str, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("{url}?token={}", percent_encode(t)),
        None => url.to_owned(),
    }
}

/// The request's path and query without its `token` parameters.
pub(crate) fn without_token(uri: &axum::http::Uri) -> String {
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("token=") && *p != "token")
        .collect();
    if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    }
}

/// The token from `?token=`.
pub(crate) fn query_token(uri: &axum::http::Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(percent_decode)
}

/// The token from `?token=` or `Authorization: Bearer`.
fn presented_token(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    if let Some(t) = query_token(uri) {
        return Some(t);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, value) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| value.trim().to_owned())
}

/// The values of every cookie called `name` in the request's `Cookie` headers.
fn cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_and_digests() {
        let uri: axum::http::Uri = "/client-ws?x=1&token=a%2Bb%20c".parse().unwrap();
        assert_eq!(
            presented_token(&HeaderMap::new(), &uri).as_deref(),
            Some("a+b c")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        let plain_uri: axum::http::Uri = "/client-ws".parse().unwrap();
        assert_eq!(presented_token(&h, &plain_uri).as_deref(), Some("s3cret"));
        assert!(same_digest(&digest("abc"), &digest("abc")));
        assert!(!same_digest(&digest("abc"), &digest("abd")));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_encode("a+b c/é"), "a%2Bb%20c%2F%C3%A9");
        assert_eq!(percent_decode(&percent_encode("a+b c/é")), "a+b c/é");
        assert_eq!(
            page_url("http://127.0.0.1:1/", Some("s p")),
            "http://127.0.0.1:1/?token=s%20p"
        );
        assert_eq!(page_url("http://127.0.0.1:1/", None), "http://127.0.0.1:1/");
    }

    #[test]
    fn the_cookie_is_derived_port_scoped_and_checked() {
        let auth = TokenAuth::new("t0ken", 4242);
        let set = auth.set_cookie(false);
        assert!(
            set.starts_with("vtuber-auth-4242=")
                && set.contains("HttpOnly")
                && set.contains("SameSite=Strict")
                && set.contains("Path=/")
                && !set.contains("Secure")
                && !set.contains("t0ken"),
            "{set}"
        );
        assert!(auth.set_cookie(true).ends_with("; Secure"));
        let pair = set.split(';').next().unwrap();
        let uri: axum::http::Uri = "/client-ws".parse().unwrap();
        let with_cookie = |c: &str| {
            let mut h = HeaderMap::new();
            h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
            h
        };
        assert!(auth.allows(&with_cookie(&format!("other=1; {pair}")), &uri));
        assert!(!auth.allows(&with_cookie("vtuber-auth-4242=00"), &uri));
        // Another port's cookie does not open this one.
        let other = TokenAuth::new("t0ken", 4243);
        let other_pair = other.set_cookie(false);
        let other_pair = other_pair.split(';').next().unwrap();
        assert!(!auth.allows(&with_cookie(other_pair), &uri));
        assert!(!auth.allows(&HeaderMap::new(), &uri));
        let uri: axum::http::Uri = "/client-ws?token=t0ken".parse().unwrap();
        assert!(auth.allows(&HeaderMap::new(), &uri));
        let uri: axum::http::Uri = "/client-ws?token=t0ke".parse().unwrap();
        assert!(!auth.allows(&HeaderMap::new(), &uri));
    }

    #[test]
    fn the_clean_address_keeps_everything_but_the_token() {
        let clean = |u: &str| without_token(&u.parse().unwrap());
        assert_eq!(clean("/?token=abc"), "/");
        assert_eq!(
            clean("/index.html?a=1&token=abc&b=2"),
            "/index.html?a=1&b=2"
        );
        assert_eq!(clean("/?token"), "/");
    }

    #[test]
    fn the_token_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("data/private");
        let token = load_or_create_token(&dir).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let file = dir.join(TOKEN_FILE);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(load_or_create_token(&dir).unwrap(), token, "reused");
        assert_ne!(crate::private::random_hex(32).unwrap(), token);
        // Others' permissions are taken away, and the token kept.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(load_or_create_token(&dir).unwrap(), token);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir), 0o700);
        // A damaged file is reported with what to do, not replaced.
        std::fs::write(&file, "\n").unwrap();
        let e = load_or_create_token(&dir).unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("delete it"), "{e}");
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
        let e = load_or_create_token(&dir).unwrap_err().to_string();
        assert!(e.contains("not a plain file"), "{e}");
    }
}
