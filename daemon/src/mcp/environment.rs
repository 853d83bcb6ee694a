//! The environment a stdio MCP server starts with: a few base variables, the named
//! pass-through ones and its own `env`, never the daemon's whole environment (API keys).

use std::collections::BTreeMap;

/// Variables a stdio server inherits from the daemon, as the official MCP SDKs do:
/// enough to find programs, the home folder, the locale and the terminal.
pub const BASE_ENV: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TZ",
];
/// Prefixes of inherited variables (locale categories, XDG folders).
pub const BASE_ENV_PREFIXES: &[&str] = &["LC_", "XDG_"];

/// Whether the daemon's variable `name` is handed to every stdio server.
pub fn is_base_env(name: &str) -> bool {
    BASE_ENV.contains(&name) || BASE_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The environment a stdio server starts with: the base variables and the named
/// pass-through ones taken from `inherited`, then `env` (already resolved) on top.
pub fn server_environment(
    inherited: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    passthrough: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut out: BTreeMap<std::ffi::OsString, std::ffi::OsString> = inherited
        .into_iter()
        .filter(|(k, _)| {
            k.to_str()
                .is_some_and(|k| is_base_env(k) || passthrough.iter().any(|p| p == k))
        })
        .collect();
    for (k, v) in env {
        out.insert(k.into(), v.into());
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_a_minimal_environment() {
        let daemon_env = [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("LC_ALL", "C.UTF-8"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
            ("OPENAI_API_KEY", "sk-secret"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("GITHUB_TOKEN", "gh"),
            ("LANGUAGE", "x"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let env = server_environment(
            daemon_env,
            &["GITHUB_TOKEN".to_owned()],
            [("TZ".to_owned(), "Europe/Berlin".to_owned())],
        );
        let names: Vec<_> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "GITHUB_TOKEN",
                "HOME",
                "LC_ALL",
                "PATH",
                "TZ",
                "XDG_RUNTIME_DIR"
            ]
        );
        assert!(
            !names
                .iter()
                .any(|n| n.contains("API_KEY") || n.starts_with("AWS"))
        );
    }
}
