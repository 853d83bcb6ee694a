//! Where things live on disk. Both the daemon and clients must compute the same socket
//! path, so the rules sit here. Every path follows the XDG variables and has its own
//! override, so isolated daemons can run side by side (tests do).

use std::env;
use std::path::PathBuf;

/// Environment variable naming the socket, overriding the XDG rule.
pub const SOCKET_ENV: &str = "VTUBER_SOCKET";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "VTUBER_CONFIG";
/// Environment variable naming the data directory (history, models).
pub const DATA_DIR_ENV: &str = "VTUBER_DATA_DIR";

fn non_empty_env(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> PathBuf {
    non_empty_env("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

/// The current user's (effective) numeric id. Not read from `/proc/self`: a
/// non-dumpable process (the daemon) sees its `/proc` entries owned by root.
pub fn current_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

/// `$XDG_RUNTIME_DIR/vtuber`, or `/tmp/vtuber-$UID` where no runtime dir is set.
pub fn runtime_dir() -> PathBuf {
    match non_empty_env("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("vtuber"),
        None => PathBuf::from(format!(
            "/tmp/vtuber-{}",
            current_uid().map_or_else(|| "user".to_owned(), |u| u.to_string())
        )),
    }
}

/// Socket path: explicit flag, then `$VTUBER_SOCKET`, then the runtime dir.
pub fn socket_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| non_empty_env(SOCKET_ENV))
        .unwrap_or_else(|| runtime_dir().join("vtuberd.sock"))
}

/// `$XDG_CONFIG_HOME` (default `~/.config`): where this and other programs' settings
/// live (systemd user units too).
pub fn xdg_config_home() -> PathBuf {
    non_empty_env("XDG_CONFIG_HOME").unwrap_or_else(|| home().join(".config"))
}

/// `$XDG_CONFIG_HOME/vtuber` (default `~/.config/vtuber`).
pub fn config_dir() -> PathBuf {
    xdg_config_home().join("vtuber")
}

/// `$VTUBER_DATA_DIR`, else `$XDG_DATA_HOME/vtuber` (default `~/.local/share/vtuber`).
pub fn data_dir() -> PathBuf {
    non_empty_env(DATA_DIR_ENV).unwrap_or_else(|| {
        non_empty_env("XDG_DATA_HOME")
            .unwrap_or_else(|| home().join(".local/share"))
            .join("vtuber")
    })
}

/// Where model files are looked for by default.
pub fn models_dir() -> PathBuf {
    data_dir().join("models")
}

/// The user's config file, if the lookup finds one: `$VTUBER_CONFIG`, then
/// `$XDG_CONFIG_HOME/vtuber/conf.yaml`. `None` means built-in defaults.
pub fn user_config_file() -> Option<PathBuf> {
    if let Some(p) = non_empty_env(CONFIG_ENV) {
        return Some(p);
    }
    let p = config_dir().join("conf.yaml");
    p.is_file().then_some(p)
}
