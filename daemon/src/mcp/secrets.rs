//! Secrets for MCP servers: `secret:NAME` values are looked up in an owner-only secrets
//! file, then the environment, so that tokens need not sit in `conf.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a secret could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secrets file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secrets file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("secrets file {path}:{line}: expected KEY=VALUE")]
    Syntax { path: PathBuf, line: usize },
    #[error("secret {0} is neither in the secrets file nor in the environment")]
    Missing(String),
}

/// The parsed secrets file (empty when none is configured).
#[derive(Default, Clone)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values never reach logs.
        f.debug_list().entries(self.values.keys()).finish()
    }
}

impl Secrets {
    /// Reads `path`, refusing it when group or others may access it.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        use std::os::unix::fs::PermissionsExt;
        let read_err = |source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, SecretError> {
        let mut values = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                return Err(SecretError::Syntax {
                    path: path.to_path_buf(),
                    line: i + 1,
                });
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            values.insert(k.trim().to_owned(), v.to_owned());
        }
        Ok(Self { values })
    }

    /// The final value of a config value: `secret:NAME` is looked up, anything else is literal.
    pub fn resolve(&self, value: &str) -> Result<String, SecretError> {
        match value.strip_prefix("secret:") {
            None => Ok(value.to_owned()),
            Some(name) => {
                let name = name.trim();
                self.values
                    .get(name)
                    .cloned()
                    .or_else(|| std::env::var(name).ok())
                    .ok_or_else(|| SecretError::Missing(name.to_owned()))
            }
        }
    }

    /// Every value in the file, for redaction.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(String::as_str)
    }
}

/// Whether a key names something secret (used for redaction and warnings).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "cookie",
        "credential",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// A literal secret written straight into `conf.yaml` (not `secret:` and long enough to
/// be a real token). `${VAR}` was substituted at load, so such values can also come from
/// the environment; the warning says so.
pub fn looks_like_literal_secret(key: &str, value: &str) -> bool {
    is_secret_key(key) && !value.starts_with("secret:") && value.len() >= 16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn mode_is_checked_and_values_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.env");
        std::fs::write(
            &path,
            "# comment\nAPI_TOKEN=abc123\nexport QUOTED=\"x y\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secrets::load(&path).unwrap_err();
        assert!(
            matches!(err, SecretError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Secrets::load(&path).unwrap();
        assert_eq!(s.resolve("secret:API_TOKEN").unwrap(), "abc123");
        assert_eq!(s.resolve("secret:QUOTED").unwrap(), "x y");
        assert_eq!(s.resolve("plain").unwrap(), "plain");
        assert!(matches!(
            s.resolve("secret:VTUBER_SURELY_UNSET_1234"),
            Err(SecretError::Missing(_))
        ));
        assert!(!format!("{s:?}").contains("abc123"));
        std::fs::write(&path, "novalue\n").unwrap();
        assert!(matches!(
            Secrets::load(&path),
            Err(SecretError::Syntax { line: 1, .. })
        ));
    }

    #[test]
    fn literal_secret_detection() {
        assert!(looks_like_literal_secret(
            "GITHUB_TOKEN",
            "ghp_0123456789abcdef"
        ));
        assert!(!looks_like_literal_secret("GITHUB_TOKEN", "secret:GH"));
        assert!(!looks_like_literal_secret(
            "LOG_LEVEL",
            "0123456789abcdef0123"
        ));
        assert!(!looks_like_literal_secret("API_KEY", "short"));
    }
}
