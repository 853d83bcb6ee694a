//! The web page's address as `vtuber status` reports it (`web_url`), taken apart the way
//! a client uses it: the page, the WebSocket, the token.

/// `http(s)://HOST:PORT/?token=T`, as printed by `vtuber web url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageUrl {
    /// The whole address, token included.
    pub url: String,
    /// `http(s)://HOST:PORT/`.
    pub root: String,
    /// The token as it stands in the query (percent-encoded), if any.
    pub token: Option<String>,
}

impl PageUrl {
    pub fn parse(url: &str) -> Self {
        let (root, query) = url.split_once('?').unwrap_or((url, ""));
        let token = query
            .split('&')
            .find_map(|p| p.strip_prefix("token="))
            .map(str::to_owned);
        Self {
            url: url.to_owned(),
            root: root.to_owned(),
            token,
        }
    }

    /// `HOST:PORT`.
    pub fn host_port(&self) -> String {
        self.root
            .split_once("://")
            .map_or(self.root.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn port(&self) -> u16 {
        self.host_port()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// `?token=T`, or nothing when the page needs no token.
    pub fn token_query(&self) -> String {
        self.token
            .as_ref()
            .map(|t| format!("?token={t}"))
            .unwrap_or_default()
    }

    /// `ws(s)://HOST:PORT/client-ws`, without the token.
    pub fn socket_url_bare(&self) -> String {
        let root = if let Some(rest) = self.root.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            self.root.replacen("http://", "ws://", 1)
        };
        format!("{root}client-ws")
    }

    /// `ws(s)://HOST:PORT/client-ws?token=T`: what an Open-LLM-VTuber client is given.
    pub fn socket_url(&self) -> String {
        format!("{}{}", self.socket_url_bare(), self.token_query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces() {
        let p = PageUrl::parse("http://127.0.0.1:4242/?token=a%20b");
        assert_eq!(p.root, "http://127.0.0.1:4242/");
        assert_eq!(p.token.as_deref(), Some("a%20b"));
        assert_eq!(p.host_port(), "127.0.0.1:4242");
        assert_eq!(p.port(), 4242);
        assert_eq!(p.socket_url(), "ws://127.0.0.1:4242/client-ws?token=a%20b");
        let p = PageUrl::parse("https://localhost:1/");
        assert_eq!(p.token, None);
        assert_eq!(p.socket_url(), "wss://localhost:1/client-ws");
    }
}
