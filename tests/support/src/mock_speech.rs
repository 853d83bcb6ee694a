//! A mock speech service: real HTTP/1.1 on 127.0.0.1 at a free port, answering every
//! request with what the test's handler says, in as many chunks and at the pace it
//! says. Tests write the handler in the wire format of the service they stand in for
//! (paths, headers, field names, audio formats, error bodies), so the daemon's engine
//! is checked against that format rather than against itself.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::mock_llm::{BodyItem, ChannelBody, lock};

/// One request as the service received it.
#[derive(Debug, Clone)]
pub struct SpeechRequest {
    pub method: String,
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SpeechRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `%XX` and `+` decoded (query strings and form fields).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                Some(Ok(b)) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the service answers.
#[derive(Debug, Clone)]
pub struct SpeechAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent in pieces of this size with `pause` between them (0: at once).
    pub chunk: usize,
    pub pause: Duration,
    /// Wait before answering (the engine's synthesis time).
    pub delay: Duration,
}

impl SpeechAnswer {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            chunk: 0,
            pause: Duration::ZERO,
            delay: Duration::ZERO,
        }
    }

    /// 200 with audio of this content type.
    pub fn audio(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, content_type, body)
    }

    pub fn json(status: u16, value: &Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answered only after `delay`, as an engine that takes that long to synthesize.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Streamed in `chunk`-byte pieces, `pause` apart.
    pub fn streamed(mut self, chunk: usize, pause: Duration) -> Self {
        self.chunk = chunk;
        self.pause = pause;
        self
    }
}

type Handler = dyn Fn(&SpeechRequest) -> SpeechAnswer + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<SpeechRequest>>,
}

/// The running mock; stops on drop.
pub struct MockSpeech {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl MockSpeech {
    /// Starts on the current tokio runtime; `handler` answers each request.
    pub async fn start(
        handler: impl Fn(&SpeechRequest) -> SpeechAnswer + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::mock_llm::serve(listener, shutdown.clone(), {
            let shared = shared.clone();
            move |req| handle(shared.clone(), req)
        }));
        Ok(Self {
            addr,
            shared,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<SpeechRequest> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for MockSpeech {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ChannelBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let request = SpeechRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let answer = (shared.handler)(&request);
    lock(&shared.requests).push(request);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let chunk = if answer.chunk == 0 {
            answer.body.len().max(1)
        } else {
            answer.chunk
        };
        for (i, piece) in answer.body.chunks(chunk).enumerate() {
            if i > 0 && !answer.pause.is_zero() {
                tokio::time::sleep(answer.pause).await;
            }
            if tx
                .send(BodyItem::Data(Bytes::copy_from_slice(piece)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut resp = Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    Ok(resp
        .body(ChannelBody::new(rx))
        .unwrap_or_else(|_| Response::new(ChannelBody::new(mpsc::channel(1).1))))
}
