//! The socket units for `vtuber daemon install --socket-activation`: systemd opens the
//! local socket (and the web port) itself and starts vtuberd on the first connection,
//! so clients can connect before the daemon is up. The units are the ones shipped in
//! `contrib/systemd/`; the web port's `ListenStream=` comes from the configuration.

use std::path::Path;

use anyhow::{Result, bail};

/// The shipped local-socket unit (its path is vtuber's default socket path).
pub(super) const LOCAL: &str = include_str!("../../../contrib/systemd/vtuberd.socket");
pub(super) const LOCAL_NAME: &str = "vtuberd.socket";
/// The shipped web-port unit (its `ListenStream=` is the default `web.host:web.port`).
const WEB: &str = include_str!("../../../contrib/systemd/vtuberd-web.socket");
pub(super) const WEB_NAME: &str = "vtuberd-web.socket";

/// Where the web page listens, as the daemon's configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WebListen {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
}

impl WebListen {
    /// Asks `vtuberd --show-config=json` (the daemon's own loader: overlays, profile,
    /// `--config`).
    pub fn from_daemon(vtuberd: &Path, config: Option<&Path>) -> Result<Self> {
        Self::from_value(&super::config::effective_json(vtuberd, config)?)
    }

    fn from_value(value: &serde_json::Value) -> Result<Self> {
        let web = &value["web"];
        let (Some(enabled), Some(host), Some(port)) = (
            web["enabled"].as_bool(),
            web["host"].as_str(),
            web["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
        ) else {
            bail!("vtuberd's configuration has no web.enabled, web.host and web.port");
        };
        Ok(Self {
            enabled,
            host: host.to_owned(),
            port,
        })
    }

    /// `ListenStream=` text: `host:port`, `[v6]:port`.
    fn listen_stream(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The web-port unit listening where the page is configured to, or why there is none.
pub(super) fn render_web(web: &WebListen) -> std::result::Result<String, &'static str> {
    if !web.enabled {
        return Err("web.enabled is false");
    }
    if web.port == 0 {
        return Err("web.port is 0 (any free port), which systemd cannot open in advance");
    }
    Ok(WEB
        .lines()
        .map(|line| {
            if line.starts_with("ListenStream=") {
                format!("ListenStream={}", web.listen_stream())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(host: &str, port: u16) -> WebListen {
        WebListen {
            enabled: true,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_shipped_web_unit_is_what_the_default_config_renders() {
        assert_eq!(render_web(&web("127.0.0.1", 12393)).unwrap(), WEB);
    }

    #[test]
    fn the_web_unit_listens_where_the_config_says() {
        let unit = render_web(&web("::1", 8080)).unwrap();
        assert!(unit.contains("\nListenStream=[::1]:8080\n"), "{unit}");
        let listens = unit
            .lines()
            .filter(|l| l.starts_with("ListenStream="))
            .count();
        assert_eq!(listens, 1, "{unit}");
        assert!(render_web(&web("0.0.0.0", 0)).is_err());
        let off = WebListen {
            enabled: false,
            ..web("127.0.0.1", 1)
        };
        assert_eq!(render_web(&off), Err("web.enabled is false"));
    }

    #[test]
    fn the_daemons_json_is_read() {
        let w = WebListen::from_value(&serde_json::json!(
            {"web":{"enabled":true,"host":"127.0.0.1","port":12393,"token":"********"}}
        ))
        .unwrap();
        assert_eq!(w, web("127.0.0.1", 12393));
        assert!(WebListen::from_value(&serde_json::json!({})).is_err());
        assert!(WebListen::from_value(&serde_json::json!({"web":{}})).is_err());
    }
}
