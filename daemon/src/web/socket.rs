//! The WebSocket transport: the HTTP/1.1 upgrade, and sending that cuts long messages
//! into fragments.
//!
//! Why not axum's `WebSocket`: it hides the frame layer, and tungstenite copies every
//! message whole into a per-connection write buffer that keeps its capacity for the life
//! of the connection. A spoken sentence is an `audio` message of up to a megabyte, so
//! each browser tab held that much, and 100 tabs during a reply about 3 MB each. Sent as
//! [`FRAGMENT_BYTES`] fragments (RFC 6455 §5.4, which every client reassembles), the
//! buffer stays at one fragment and the audio is never copied whole again.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// An accepted WebSocket connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Largest frame this server sends; longer text goes out as continuation frames.
pub const FRAGMENT_BYTES: usize = 64 * 1024;

/// Bytes read from the socket at a time. Client messages are small (text, a few hundred
/// milliseconds of microphone audio); tungstenite's default of 128 KiB per connection
/// was most of an idle connection's memory.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A request to upgrade to a WebSocket, validated (RFC 6455 §4.2.1).
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade this server accepts.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a GET with `Connection: upgrade` and `Upgrade: websocket`.
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    Version,
    /// No `Sec-WebSocket-Key`.
    NoKey,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let text = "text/plain; charset=utf-8";
        match self {
            Self::NotUpgrade => (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, text)],
                "this address is a WebSocket: connect with a WebSocket client (GET with Connection: upgrade and Upgrade: websocket)",
            )
                .into_response(),
            Self::Version => (
                StatusCode::UPGRADE_REQUIRED,
                [
                    (header::CONTENT_TYPE, text),
                    (header::SEC_WEBSOCKET_VERSION, "13"),
                ],
                "unsupported WebSocket version: use version 13 (RFC 6455)",
            )
                .into_response(),
            Self::NoKey => (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, text)],
                "the WebSocket upgrade has no Sec-WebSocket-Key header",
            )
                .into_response(),
        }
    }
}

/// Whether the comma-separated header `name` lists `token` (case-insensitive).
fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        if parts.method != Method::GET
            || !lists_token(&parts.headers, &header::CONNECTION, "upgrade")
            || !lists_token(&parts.headers, &header::UPGRADE, "websocket")
        {
            return Err(Rejection::NotUpgrade);
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(Rejection::Version);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(Rejection::NoKey)?;
        // Present on every HTTP/1.1 request hyper serves; missing only if something
        // upstream already took the connection.
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Rejection::NotUpgrade)?;
        Ok(Self { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and runs `session` on the socket once hyper
    /// hands the connection over. Messages and frames above `max_message` bytes are
    /// read errors (the session closes with 1009).
    pub fn accept<F, Fut>(self, max_message: usize, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    session(socket).await;
                }
                Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, "upgrade".to_owned()),
                (header::UPGRADE, "websocket".to_owned()),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    derive_accept_key(self.key.as_bytes()),
                ),
            ],
        )
            .into_response()
    }
}

/// What goes on the wire for one text message: the message itself when it fits in a
/// frame, otherwise fragments of at most `max` bytes, cut at character boundaries
/// (clients may check each fragment's UTF-8), sharing the message's bytes.
pub fn text_frames(text: Utf8Bytes, max: usize) -> Vec<Message> {
    if text.len() <= max {
        return vec![Message::Text(text)];
    }
    let cuts = {
        let s = text.as_str();
        let mut cuts = Vec::with_capacity(s.len() / max + 1);
        let mut at = 0;
        while at < s.len() {
            let mut end = (at + max).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            // A character longer than `max` (only if max < 4): take it whole.
            if end == at {
                end = at + s[at..].chars().next().map_or(1, char::len_utf8);
            }
            cuts.push((at, end));
            at = end;
        }
        cuts
    };
    let bytes = Bytes::from(text);
    let last = cuts.len() - 1;
    cuts.into_iter()
        .enumerate()
        .map(|(i, (from, to))| {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            Message::Frame(Frame::message(bytes.slice(from..to), opcode, i == last))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(ms: &[Message]) -> Vec<(Vec<u8>, bool, bool)> {
        ms.iter()
            .map(|m| match m {
                Message::Frame(f) => (
                    f.payload().to_vec(),
                    f.header().is_final,
                    matches!(f.header().opcode, OpCode::Data(Data::Text)),
                ),
                Message::Text(t) => (t.as_bytes().to_vec(), true, true),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn short_messages_go_whole() {
        let ms = text_frames(Utf8Bytes::from_static("hello"), 16);
        assert!(matches!(&ms[..], [Message::Text(t)] if t.as_str() == "hello"));
    }

    #[test]
    fn long_messages_are_fragments_that_join_back() {
        let text: String = (0..1000).map(|i| format!("{i},")).collect();
        let ms = text_frames(Utf8Bytes::from(text.clone()), 100);
        let p = payloads(&ms);
        assert!(p.len() > 1);
        assert!(p[0].2, "the first fragment is a text frame");
        assert!(
            p[1..].iter().all(|(_, _, text)| !text),
            "then continuations"
        );
        assert!(p[..p.len() - 1].iter().all(|(_, fin, _)| !fin));
        assert!(p[p.len() - 1].1, "the last one is final");
        assert!(p.iter().all(|(b, _, _)| b.len() <= 100 && !b.is_empty()));
        let joined: Vec<u8> = p.into_iter().flat_map(|(b, _, _)| b).collect();
        assert_eq!(joined, text.as_bytes());
    }

    #[test]
    fn fragments_never_split_a_character() {
        let text = "字".repeat(100) + "é€𝄞".repeat(50).as_str();
        for max in [4, 5, 7, 64] {
            let p = payloads(&text_frames(Utf8Bytes::from(text.clone()), max));
            for (b, _, _) in &p {
                assert!(std::str::from_utf8(b).is_ok(), "max {max}");
            }
            let joined: Vec<u8> = p.into_iter().flat_map(|(b, _, _)| b).collect();
            assert_eq!(joined, text.as_bytes());
        }
        // Even a limit below one character's length makes progress.
        let p = payloads(&text_frames(Utf8Bytes::from("𝄞𝄞".to_owned()), 2));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn tokens_are_found_in_lists() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(lists_token(&h, &header::CONNECTION, "upgrade"));
        assert!(!lists_token(&h, &header::UPGRADE, "websocket"));
    }
}
