//! The web server through the real daemon: the Open-LLM-VTuber WebSocket (greeting,
//! spoken turns with their closing handshake, history, characters, errors, limits), the
//! security checks (Origin, Host, token, exposed binds) and the static routes.
//!
//! Speech uses espeak-ng (the built-in `sage` character), so audio is real WAV.

use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use vtuber_shared::{Event, Reply, Request, TurnOutcome};
use vtuber_test_support::daemon::{TestDaemon, link_models};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};
use vtuber_test_support::web::PageUrl;
use vtuberd::pcm::Pcm;

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A daemon with speech (espeak, no sound card) and the web server on a free port.
fn web_daemon(mock: &MockLlm, web_extra: &str) -> TestDaemon {
    let config = format!(
        "{}character:\n  default: sage\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: none\n  playback: clients\nweb:\n  port: 0\n{web_extra}",
        openai_config(&mock.base_url())
    );
    let mut daemon = TestDaemon::new(&config).expect("daemon home");
    link_models(&daemon.models_dir()).expect("models (run scripts/setup.sh)");
    daemon.start().expect("daemon starts");
    daemon
}

/// `HOST:PORT` of a page address.
fn host_port(base: &str) -> String {
    PageUrl::parse(base).host_port()
}

/// `?token=...` of a page address (what the WebSocket needs), or nothing.
fn token_query(base: &str) -> String {
    PageUrl::parse(base).token_query()
}

/// `http://HOST:PORT/` of a page address, without its token.
pub(crate) fn root(base: &str) -> String {
    PageUrl::parse(base).root
}

/// A WebSocket client speaking JSON text frames.
pub(crate) struct Ws {
    stream: WsStream,
}

impl Ws {
    /// Connects as an Open-LLM-VTuber client does: `/client-ws` with the page's token.
    pub(crate) async fn connect(base: &str) -> Self {
        Self::connect_with(base, &token_query(base), &[])
            .await
            .expect("websocket connects")
    }

    /// Connects to `/client-ws` with `query` (no token unless it holds one) and extra
    /// headers; the error is the HTTP status of a refusal.
    pub(crate) async fn connect_with(
        base: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, u16> {
        let mut req = format!("{}{query}", PageUrl::parse(base).socket_url_bare())
            .into_client_request()
            .unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, _)) => Ok(Self { stream }),
            Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub(crate) async fn send_raw(&mut self, text: String) {
        self.stream.send(Message::text(text)).await.expect("send");
    }

    /// Next JSON message; `Err` with the close frame's code when the server closes.
    pub(crate) async fn next_raw(&mut self, limit: Duration) -> Result<Value, Option<u16>> {
        loop {
            let m = tokio::time::timeout(limit, self.stream.next())
                .await
                .expect("timed out waiting for a websocket message");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("server sends JSON"));
                }
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    pub(crate) async fn next(&mut self) -> Value {
        self.next_raw(WAIT).await.expect("connection open")
    }

    /// Messages until one matches `stop` (included). `state` messages are left out.
    pub(crate) async fn until(&mut self, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let m = self.next().await;
            let done = stop(&m);
            if m["type"] != "state" {
                out.push(m);
            }
            if done {
                return out;
            }
        }
    }

    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        self.until(|m| m["type"] == kind).await.pop().unwrap()
    }

    /// The next `error` message, which must mention `needle`.
    pub(crate) async fn expect_error(&mut self, needle: &str) {
        let m = self.expect("error").await;
        assert!(
            m["message"].as_str().is_some_and(|t| t.contains(needle)),
            "error without `{needle}`: {m}"
        );
    }

    /// Reads the four greeting messages.
    pub(crate) async fn greeting(&mut self) -> Vec<Value> {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(self.next().await);
        }
        v
    }

    /// Nothing but `state` messages for `d`.
    pub(crate) async fn quiet_for(&mut self, d: Duration) -> Result<(), Value> {
        let end = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(end, self.stream.next()).await {
                Err(_) => return Ok(()),
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] != "state" {
                        return Err(v);
                    }
                }
                Ok(_) => {}
            }
        }
    }
}

pub(crate) fn is_control(m: &Value, text: &str) -> bool {
    m["type"] == "control" && m["text"] == text
}

pub(crate) fn kinds(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|m| match m["type"].as_str() {
            Some("control") => format!("control:{}", m["text"].as_str().unwrap_or("")),
            Some(t) => t.to_owned(),
            None => "?".into(),
        })
        .collect()
}

/// The audio messages are real speech: WAV that decodes, volumes in 0..1 peaking at 1.
pub(crate) fn check_audio(m: &Value) -> Pcm {
    let b64 = m["audio"]
        .as_str()
        .unwrap_or_else(|| panic!("audio message without sound: {m}"));
    let wav = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let pcm = Pcm::from_wav(&wav).expect("WAV");
    assert!(pcm.sample_rate > 0 && !pcm.samples.is_empty());
    let volumes: Vec<f64> = m["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(!volumes.is_empty(), "{m}");
    assert!(
        volumes.iter().all(|v| (0.0..=1.0).contains(v)),
        "{volumes:?}"
    );
    let max = volumes.iter().cloned().fold(0.0, f64::max);
    assert!((max - 1.0).abs() < 1e-6, "loudest slice is 1.0: {max}");
    assert_eq!(m["slice_length"], 20);
    assert_eq!(m["forwarded"], false);
    pcm
}

#[tokio::test(flavor = "multi_thread")]
async fn greeting_then_a_spoken_turn_with_the_playback_handshake() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply(
        "Hello there, friend. [joy] I am glad you came!",
    ))
    .expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut local = daemon.client("e2e-local").await.unwrap();
    let mut ws = Ws::connect(&base).await;

    let hello = ws.greeting().await;
    assert_eq!(
        hello[0],
        json!({"type": "full-text", "text": "Connection established"})
    );
    assert_eq!(hello[1]["type"], "set-model-and-conf");
    assert_eq!(hello[1]["conf_uid"], "sage");
    assert_eq!(hello[1]["conf_name"], "Sage");
    assert!(
        hello[1]["client_uid"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let info = &hello[1]["model_info"];
    assert_eq!(info["url"], "/live2d-models/shizuku/shizuku.model.json");
    assert_eq!(info["kScale"], 0.3);
    assert_eq!(info["idleMotionGroupName"], "idle");
    assert_eq!(info["emotionMap"]["joy"], 1);
    assert_eq!(
        hello[2],
        json!({"type": "group-update", "members": [], "is_owner": false})
    );
    assert_eq!(hello[3], json!({"type": "control", "text": "start-mic"}));

    ws.send(json!({"type": "text-input", "text": "hi Sage", "images": []}))
        .await;
    let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
    let k = kinds(&turn);
    assert_eq!(
        &k[..3],
        [
            "control:conversation-chain-start",
            "full-text",
            "user-input"
        ],
        "{k:?}"
    );
    assert_eq!(turn[1]["text"], "Thinking...");
    assert_eq!(
        turn[2],
        json!({"type": "user-input", "text": "hi Sage", "origin": "web"})
    );
    let audio: Vec<&Value> = turn.iter().filter(|m| m["type"] == "audio").collect();
    assert_eq!(audio.len(), 2, "{k:?}");
    for a in &audio {
        check_audio(a);
        assert_eq!(a["display_text"]["name"], "Sage");
    }
    assert_eq!(audio[0]["display_text"]["text"], "Hello there, friend.");
    assert_eq!(audio[1]["display_text"]["text"], "I am glad you came!");
    assert_eq!(audio[1]["actions"], json!({"expressions": [1]}));
    assert_eq!(audio[0]["actions"], Value::Null);
    // Exactly one synth-complete, after the last audio.
    assert_eq!(
        k.iter().filter(|t| *t == "backend-synth-complete").count(),
        1
    );
    assert_eq!(k.last().unwrap(), "backend-synth-complete");

    // The server waits for this client's playback before closing the chain.
    ws.quiet_for(Duration::from_millis(400))
        .await
        .expect("no force-new-message before playback completes");
    ws.send(json!({"type": "frontend-playback-complete"})).await;
    let end = ws.until(|m| is_control(m, "conversation-chain-end")).await;
    assert_eq!(
        kinds(&end),
        ["force-new-message", "control:conversation-chain-end"]
    );

    // The local-socket client saw the same turn.
    let events = local
        .events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .unwrap();
    assert!(
        events.iter().any(|(_, e)| matches!(e, Event::TurnStarted { origin, text, .. } if origin == "web" && text == "hi Sage")),
        "{events:?}"
    );
    assert!(matches!(
        &events.last().unwrap().1,
        Event::TurnEnded { text, .. } if text.contains("glad you came")
    ));

    // Input typed elsewhere shows on the page as `user-input`, then speech.
    let reply = local
        .request(Request::SendText {
            text: "from the terminal".into(),
            images: Vec::new(),
        })
        .await
        .unwrap();
    assert!(matches!(reply, Ok(Reply::TurnAccepted { .. })), "{reply:?}");
    let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
    assert_eq!(turn[0]["text"], "conversation-chain-start");
    let input = turn
        .iter()
        .find(|m| m["type"] == "user-input")
        .expect("user-input");
    assert_eq!(input["text"], "from the terminal");
    assert_eq!(input["origin"], "e2e-local");
    assert!(
        turn.iter()
            .filter(|m| m["type"] == "audio")
            .all(|a| check_audio(a).duration_ms() > 100)
    );
    ws.send(json!({"type": "frontend-playback-complete"})).await;
    ws.expect("force-new-message").await;
    assert!(is_control(
        &ws.next_non_state().await,
        "conversation-chain-end"
    ));
}

impl Ws {
    async fn next_non_state(&mut self) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] != "state" {
                return m;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_both_get_the_turn_and_a_silent_one_times_out() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Short reply.")).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut a = Ws::connect(&base).await;
    let mut b = Ws::connect(&base).await;
    a.greeting().await;
    b.greeting().await;
    a.send(json!({"type": "text-input", "text": "hello both"}))
        .await;
    for ws in [&mut a, &mut b] {
        let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
        let audio: Vec<&Value> = turn.iter().filter(|m| m["type"] == "audio").collect();
        assert_eq!(audio.len(), 1, "{:?}", kinds(&turn));
        check_audio(audio[0]);
        assert!(
            turn.iter()
                .any(|m| m["type"] == "user-input" && m["text"] == "hello both")
        );
    }
    a.send(json!({"type": "frontend-playback-complete"})).await;
    a.expect("force-new-message").await;
    // `b` never reports playback: its chain still ends, after the audio's length + 5 s.
    let started = Instant::now();
    b.expect("force-new-message").await;
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(is_control(
        &b.next_non_state().await,
        "conversation-chain-end"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn history_and_characters() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Noted.")).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut ws = Ws::connect(&base).await;
    let mut other = Ws::connect(&base).await;
    ws.greeting().await;
    other.greeting().await;

    ws.send(json!({"type": "text-input", "text": "remember this"}))
        .await;
    ws.expect("backend-synth-complete").await;
    ws.send(json!({"type": "frontend-playback-complete"})).await;
    ws.until(|m| is_control(m, "conversation-chain-end")).await;

    ws.send(json!({"type": "fetch-history-list"})).await;
    let list = ws.expect("history-list").await;
    let histories = list["histories"].as_array().unwrap();
    assert_eq!(histories.len(), 1, "{list}");
    let first = histories[0]["uid"].as_str().unwrap().to_owned();
    assert_eq!(histories[0]["latest_message"]["role"], "ai");
    assert_eq!(histories[0]["latest_message"]["content"], "Noted.");
    assert!(histories[0]["timestamp"].as_str().unwrap().ends_with('Z'));

    ws.send(json!({"type": "create-new-history"})).await;
    let created = ws.expect("new-history-created").await;
    let second = created["history_uid"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    ws.send(json!({"type": "fetch-and-set-history", "history_uid": first}))
        .await;
    let data = ws.expect("history-data").await;
    let messages = data["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{data}");
    assert_eq!(messages[0]["role"], "human");
    assert_eq!(messages[0]["content"], "remember this");
    assert_eq!(messages[1]["role"], "ai");
    assert_eq!(messages[1]["name"], "Sage");
    assert!(messages[1]["timestamp"].as_str().unwrap().contains('T'));

    ws.send(json!({"type": "delete-history", "history_uid": second}))
        .await;
    assert_eq!(
        ws.expect("history-deleted").await,
        json!({"type": "history-deleted", "success": true, "history_uid": second})
    );
    ws.send(json!({"type": "delete-history", "history_uid": "99999"}))
        .await;
    assert_eq!(ws.expect("history-deleted").await["success"], false);
    ws.send(json!({"type": "fetch-and-set-history", "history_uid": "not-a-number"}))
        .await;
    ws.expect_error("not-a-number").await;

    ws.send(json!({"type": "fetch-configs"})).await;
    let configs = ws.expect("config-files").await;
    let configs = configs["configs"].as_array().unwrap();
    assert!(
        configs.contains(&json!({"filename": "mao", "name": "Mao"})),
        "{configs:?}"
    );
    assert!(
        configs.contains(&json!({"filename": "sage", "name": "Sage"})),
        "{configs:?}"
    );

    ws.send(json!({"type": "switch-config", "file": "mao"}))
        .await;
    let got = ws.until(|m| m["type"] == "config-switched").await;
    let confs: Vec<&Value> = got
        .iter()
        .filter(|m| m["type"] == "set-model-and-conf")
        .collect();
    // The switcher gets the new model once, whichever path brought it first.
    let rest = ws.quiet_for(Duration::from_millis(300)).await;
    let n = confs.len()
        + usize::from(
            rest.as_ref()
                .is_err_and(|m| m["type"] == "set-model-and-conf"),
        );
    assert_eq!(n, 1, "{got:?} {rest:?}");
    if let Some(c) = confs.first() {
        assert_eq!(c["conf_uid"], "mao");
    }
    // Every other page follows the shared stage.
    let m = other.expect("set-model-and-conf").await;
    assert_eq!(m["conf_uid"], "mao");
    assert_eq!(m["conf_name"], "Mao");
    ws.send(json!({"type": "request-init-config"})).await;
    assert_eq!(ws.expect("set-model-and-conf").await["conf_uid"], "mao");
    ws.send(json!({"type": "switch-config", "file": "nobody"}))
        .await;
    ws.expect_error("nobody").await;
    ws.send(json!({"type": "fetch-backgrounds"})).await;
    assert_eq!(
        ws.expect("background-files").await,
        json!({"type": "background-files", "files": []})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_get_errors_and_the_connection_goes_on() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Ok.")).expect("mock");
    let daemon = web_daemon(&mock, "  max_message_bytes: 65536\n");
    let base = web_url(&daemon).await;
    let mut ws = Ws::connect(&base).await;
    let mut bystander = Ws::connect(&base).await;
    ws.greeting().await;
    bystander.greeting().await;

    ws.send(json!({"type": "heartbeat"})).await;
    assert_eq!(ws.next_non_state().await, json!({"type": "heartbeat-ack"}));
    ws.send_raw("{not json".into()).await;
    ws.expect_error("JSON").await;
    ws.send(json!({"type": "moonwalk"})).await;
    ws.expect_error("moonwalk").await;
    ws.send(json!({"type": "switch-config"})).await;
    ws.expect_error("file").await;
    ws.send(json!({"type": "request-group-info"})).await;
    let g = ws.expect("group-update").await;
    assert!(g["error"].as_str().unwrap().contains("not supported"));
    ws.send(json!({"type": "approval-response", "request_id": 1, "decision": "deny"}))
        .await;
    ws.expect("error").await;
    ws.send(json!({"type": "heartbeat"})).await;
    assert_eq!(ws.next_non_state().await, json!({"type": "heartbeat-ack"}));

    // Over the limit: an error, and the connection stays.
    let big = format!(
        r#"{{"type":"text-input","text":"{}"}}"#,
        "a".repeat(100_000)
    );
    ws.send_raw(big).await;
    let e = ws.expect("error").await;
    assert!(
        e["message"].as_str().unwrap().contains("max_message_bytes"),
        "{e}"
    );
    ws.send(json!({"type": "heartbeat"})).await;
    assert_eq!(ws.next_non_state().await, json!({"type": "heartbeat-ack"}));
    // Far over it (more than twice): the connection is closed with 1009.
    ws.send_raw(format!(
        r#"{{"type":"text-input","text":"{}"}}"#,
        "b".repeat(200_000)
    ))
    .await;
    let closed = loop {
        match ws.next_raw(WAIT).await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(closed, Some(1009));
    // Nobody else noticed.
    bystander.send(json!({"type": "heartbeat"})).await;
    assert_eq!(
        bystander.next_non_state().await,
        json!({"type": "heartbeat-ack"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_rate_is_limited_per_connection() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Ok.")).expect("mock");
    let daemon = web_daemon(&mock, "  max_messages_per_sec: 5\n");
    let base = web_url(&daemon).await;
    let mut ws = Ws::connect(&base).await;
    ws.greeting().await;
    for _ in 0..40 {
        ws.send(json!({"type": "heartbeat"})).await;
    }
    let mut acks = 0;
    let mut limited = false;
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
        match m["type"].as_str() {
            Some("heartbeat-ack") => acks += 1,
            Some("error") => {
                assert!(
                    m["message"]
                        .as_str()
                        .unwrap()
                        .contains("max_messages_per_sec"),
                    "{m}"
                );
                limited = true;
            }
            _ => {}
        }
    }
    assert!(limited);
    assert!(
        (10..=13).contains(&acks),
        "a burst of twice the rate: {acks}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    ws.send(json!({"type": "heartbeat"})).await;
    assert_eq!(ws.next_non_state().await, json!({"type": "heartbeat-ack"}));
}

/// One raw HTTP/1.1 GET; returns (status, body).
async fn raw_get(base: &str, path: &str, host: Option<&str>) -> (u16, String) {
    let hp = host_port(base);
    let mut s = tokio::net::TcpStream::connect(&hp).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host.unwrap_or(&hp)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_and_host_are_checked() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Ok.")).expect("mock");
    let daemon = web_daemon(&mock, "  allowed_origins: [\"https://friend.example\"]\n");
    let base = web_url(&daemon).await;
    let hp = host_port(&base);
    // With the token, so a refusal is the Origin's or the Host's doing.
    let tq = token_query(&base);

    assert_eq!(
        Ws::connect_with(&base, &tq, &[("Origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        Ws::connect_with(&base, &tq, &[("Origin", "null")])
            .await
            .err(),
        Some(403)
    );
    let same = format!("http://{hp}");
    assert!(
        Ws::connect_with(&base, &tq, &[("Origin", &same)])
            .await
            .is_ok()
    );
    assert!(
        Ws::connect_with(&base, &tq, &[("Origin", "https://friend.example")])
            .await
            .is_ok()
    );
    // DNS rebinding: a foreign name for our address.
    let port = hp.rsplit(':').next().unwrap();
    let evil_host = format!("evil.example:{port}");
    assert_eq!(
        Ws::connect_with(
            &base,
            &tq,
            &[
                ("Host", &evil_host),
                ("Origin", &format!("http://{evil_host}"))
            ]
        )
        .await
        .err(),
        Some(403)
    );
    assert_eq!(raw_get(&base, "/", Some(&evil_host)).await.0, 403);
    assert_eq!(
        raw_get(&base, "/", Some(&format!("localhost:{port}")))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_required_when_configured() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Ok.")).expect("mock");
    let mut daemon = TestDaemon::new(&format!(
        "{}character:\n  default: sage\nspeech:\n  enabled: false\nweb:\n  port: 0\n  token: ${{E2E_WEB_TOKEN}}\n",
        openai_config(&mock.base_url())
    ))
    .unwrap();
    daemon
        .extra_env
        .push(("E2E_WEB_TOKEN".into(), "s3cret token".into()));
    daemon.start().unwrap();
    let base = web_url(&daemon).await;
    // The configured token is the one in the address, encoded.
    assert!(base.ends_with("/?token=s3cret%20token"), "{base}");
    assert!(
        !daemon
            .dir
            .path()
            .join("data/vtuber/private/web-token")
            .exists(),
        "no token file when web.token is set"
    );
    assert_eq!(Ws::connect_with(&base, "", &[]).await.err(), Some(401));
    assert_eq!(
        Ws::connect_with(&base, "?token=wrong", &[]).await.err(),
        Some(401)
    );
    let mut ws = Ws::connect_with(&base, "?token=s3cret%20token", &[])
        .await
        .expect("query token");
    assert_eq!(ws.greeting().await[0]["text"], "Connection established");
    assert!(
        Ws::connect_with(&base, "", &[("Authorization", "Bearer s3cret token")])
            .await
            .is_ok()
    );
    let (status, body) = raw_get(&base, "/api/page-config", None).await;
    assert_eq!(status, 200);
    let cfg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["token_required"], true);
    assert!(
        !daemon.log_text().contains("s3cret"),
        "the token must never be logged"
    );

    // Without speech the reply still shows, as text.
    ws.send(json!({"type": "text-input", "text": "typed"}))
        .await;
    let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
    let audio: Vec<&Value> = turn.iter().filter(|m| m["type"] == "audio").collect();
    assert_eq!(audio.len(), 1, "{:?}", kinds(&turn));
    assert_eq!(audio[0]["audio"], Value::Null);
    assert_eq!(audio[0]["display_text"]["text"], "Ok.");
}

#[tokio::test(flavor = "multi_thread")]
async fn exposed_bind_without_tls_and_token_is_refused() {
    // A token there is by default (generated); TLS is missing.
    let mut daemon =
        TestDaemon::new("speech:\n  enabled: false\nweb:\n  host: 0.0.0.0\n  port: 0\n").unwrap();
    let err = daemon
        .start()
        .expect_err("the daemon must refuse to start")
        .to_string();
    for key in ["web.tls.cert", "web.tls.key"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    assert!(!err.contains("web.auth"), "{err}");
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert!(status.is_err() || !status.unwrap().success());
    // Without a token either, both are named.
    let mut daemon = TestDaemon::new(
        "speech:\n  enabled: false\nweb:\n  host: 0.0.0.0\n  port: 0\n  auth: none\n",
    )
    .unwrap();
    let err = daemon
        .start()
        .expect_err("the daemon must refuse to start")
        .to_string();
    for key in ["web.tls.cert", "web.tls.key", "web.auth: token"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn port_in_use_is_reported_and_the_daemon_runs_on() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let daemon = TestDaemon::spawn(&format!(
        "speech:\n  enabled: false\nweb:\n  port: {port}\n"
    ))
    .unwrap();
    let mut c = daemon.client("e2e").await.unwrap();
    // The web server starts after the socket accepts clients: poll until it gave up.
    let deadline = std::time::Instant::now() + WAIT;
    let s = loop {
        let Ok(Reply::Status(s)) = c.request(Request::Status).await.unwrap() else {
            panic!("status");
        };
        if s.web_error.is_some() || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(s.web_url, None);
    let log = daemon.log_text();
    assert!(
        log.contains(&format!("port {port} is already in use")) && log.contains("web.port"),
        "{log}"
    );
    // `status` says it too, with what to do.
    let why = s.web_error.expect("status carries why there is no page");
    assert!(
        why.contains(&format!("127.0.0.1:{port}"))
            && why.contains("already in use")
            && why.contains("set web.port"),
        "{why}"
    );
    let mut cmd = daemon.vtuber();
    cmd.arg("status");
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("web ")
            && l.contains("unavailable")
            && l.contains(&format!("port {port} is already in use"))),
        "{text}"
    );
    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let json: Value = serde_json::from_str(&stdout(&run(cmd).await)).unwrap();
    assert_eq!(json["web_error"], why.as_str());
    assert!(json.get("web_url").is_none(), "{json}");
    let mut cmd = daemon.vtuber();
    cmd.args(["web", "url"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("unavailable") && stderr(&out).contains("set web.port"),
        "{}",
        stderr(&out)
    );
}

/// Unix permission bits of a path.
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_needs_the_token_by_default_even_on_loopback() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Ok.")).expect("mock");
    let daemon = TestDaemon::spawn(&format!(
        "{}character:\n  default: sage\n",
        openai_config(&mock.base_url())
    ))
    .unwrap();
    let base = web_url(&daemon).await;
    let page = PageUrl::parse(&base);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let token = page.token.clone().expect("the address carries the token");
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");

    // Kept in a file only this user can read, in a folder only this user can open.
    let dir = daemon.dir.path().join("data/vtuber/private");
    let file = dir.join("web-token");
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(mode_of(&file), 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);

    // No token, a wrong one, one a digit off: refused.
    assert_eq!(Ws::connect_with(&base, "", &[]).await.err(), Some(401));
    assert_eq!(
        Ws::connect_with(&base, "?token=wrong", &[]).await.err(),
        Some(401)
    );
    let mut off_by_one = token.clone();
    let last = if off_by_one.pop() == Some('0') {
        '1'
    } else {
        '0'
    };
    off_by_one.push(last);
    assert_eq!(
        Ws::connect_with(&base, &format!("?token={off_by_one}"), &[])
            .await
            .err(),
        Some(401)
    );
    // `?token=` (an Open-LLM-VTuber client's WebSocket URL) and a bearer header work.
    let mut ws = Ws::connect_with(&base, &format!("?token={token}"), &[])
        .await
        .expect("query token");
    assert_eq!(ws.greeting().await[0]["text"], "Connection established");
    assert!(
        Ws::connect_with(&base, "", &[("Authorization", &format!("Bearer {token}"))])
            .await
            .is_ok()
    );

    // The page opened with `?token=` sets an HttpOnly cookie (not the token itself) and
    // sends the browser on to the clean address.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("; HttpOnly") && set.contains("; SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(
        !set.contains(&token),
        "the cookie must not carry the token: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("vtuber-auth-{}=", page.port())),
        "{cookie}"
    );
    let r = http
        .get(format!("{}index.html?x=1&token={token}", page.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/index.html?x=1");
    // A wrong token in the page's address: refused, saying what to do.
    let r = http
        .get(format!("{}?token={off_by_one}", page.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("vtuber web url"));

    // The cookie opens the socket, as the browser sends it on the page's upgrade; a
    // foreign origin is still refused with it; a forged one opens nothing.
    let own_origin = format!("http://{}", page.host_port());
    let mut by_cookie = Ws::connect_with(
        &base,
        "",
        &[
            ("Cookie", &format!("a=b; {cookie}")),
            ("Origin", &own_origin),
        ],
    )
    .await
    .expect("the cookie opens the socket");
    assert_eq!(
        by_cookie.greeting().await[0]["text"],
        "Connection established"
    );
    assert_eq!(
        Ws::connect_with(
            &base,
            "",
            &[("Cookie", &cookie), ("Origin", "http://evil.example")]
        )
        .await
        .err(),
        Some(403)
    );
    let forged = format!("vtuber-auth-{}={token}", page.port());
    assert_eq!(
        Ws::connect_with(&base, "", &[("Cookie", &forged)])
            .await
            .err(),
        Some(401)
    );
    // The page's config says whether the page is let in.
    let cfg = |cookie: Option<String>| {
        let mut req = http.get(format!("{}api/page-config", page.root));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let without = cfg(None).await;
    assert_eq!(
        (&without["token_required"], &without["authorized"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(cfg(Some(cookie.clone())).await["authorized"], true);

    // What the user runs: `status` and `web url` print the address with the token.
    let mut cmd = daemon.vtuber();
    cmd.arg("status");
    let text = stdout(&run(cmd).await);
    assert!(
        text.lines()
            .any(|l| l.starts_with("web ") && l.ends_with(&base)),
        "{text}"
    );
    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let status: Value = serde_json::from_str(&stdout(&run(cmd).await)).unwrap();
    assert_eq!(status["web_url"], base.as_str());
    assert_eq!(status["web_auth"], "token");
    let mut cmd = daemon.vtuber();
    cmd.args(["web", "url"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out).trim().to_owned();
    assert_eq!(printed, base);
    let mut ws = Ws::connect(&printed).await;
    assert_eq!(ws.greeting().await[0]["text"], "Connection established");
    let mut cmd = daemon.vtuber();
    cmd.args(["web", "url", "--json"]);
    let json: Value = serde_json::from_str(&stdout(&run(cmd).await)).unwrap();
    assert_eq!(json, json!({"web_url": base, "web_auth": "token"}));

    // Neither the token nor the cookie is ever logged.
    let log = daemon.log_text();
    let cookie_value = cookie.split_once('=').unwrap().1;
    assert!(!log.contains(&token) && !log.contains(cookie_value));

    // A restart keeps the token, so bookmarks keep working.
    drop((ws, by_cookie));
    let mut daemon = tokio::task::spawn_blocking(move || {
        let mut daemon = daemon;
        daemon.terminate().expect("stops");
        daemon.start().expect("starts again");
        daemon
    })
    .await
    .unwrap();
    let again = web_url(&daemon).await;
    assert_eq!(
        PageUrl::parse(&again).token.as_deref(),
        Some(token.as_str())
    );
    assert_eq!(mode_of(&file), 0o600);
    let mut ws = Ws::connect(&again).await;
    assert_eq!(ws.greeting().await[0]["text"], "Connection established");
    tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap()
        .expect("stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn web_auth_none_opens_the_socket_to_anyone_and_status_warns() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Ok.")).expect("mock");
    let daemon = TestDaemon::spawn(&format!(
        "{}character:\n  default: sage\nweb:\n  port: 0\n  auth: none\n",
        openai_config(&mock.base_url())
    ))
    .unwrap();
    let base = web_url(&daemon).await;
    assert!(!base.contains("token"), "{base}");
    let mut ws = Ws::connect_with(&base, "", &[])
        .await
        .expect("no token needed");
    assert_eq!(ws.greeting().await[0]["text"], "Connection established");
    let (status, body) = raw_get(&base, "/api/page-config", None).await;
    assert_eq!(status, 200);
    let cfg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["token_required"], false);
    assert_eq!(cfg["authorized"], true);
    // A token in the address is no use and no harm: the page is served.
    assert_eq!(raw_get(&base, "/?token=whatever", None).await.0, 200);
    // The Origin check stays.
    assert_eq!(
        Ws::connect_with(&base, "", &[("Origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
    // No token file is made.
    assert!(
        !daemon
            .dir
            .path()
            .join("data/vtuber/private/web-token")
            .exists()
    );

    // Warned about in the log and in `status`.
    assert!(daemon.log_text().contains("web.auth is none"));
    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let json: Value = serde_json::from_str(&stdout(&run(cmd).await)).unwrap();
    assert_eq!(json["web_auth"], "none");
    let mut cmd = daemon.vtuber();
    cmd.arg("status");
    let text = stdout(&run(cmd).await);
    assert!(
        text.lines().any(|l| l.starts_with("web auth")
            && l.contains("none")
            && l.contains("web.auth: token")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn static_routes() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("Ok.")).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{}{}", root(&base), path.trim_start_matches('/'));
        let http = http.clone();
        async move { http.get(url).send().await.expect("GET") }
    };

    let r = get("/").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.text().await.unwrap().contains("/assets/app.js"));
    let r = get("/assets/app.js").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        get("/assets/style.css").await.headers()["content-type"],
        "text/css; charset=utf-8"
    );
    assert_eq!(get("/assets/nope.js").await.status(), 404);

    // The page, its scripts and its config are public (no token asked for above); the
    // config says a token is needed and that this request has none.
    let cfg: Value = get("/api/page-config").await.json().await.unwrap();
    assert_eq!(cfg["live2d_runtime"], false);
    assert_eq!(cfg["token_required"], true);
    assert_eq!(cfg["authorized"], false);
    assert!(cfg["version"].is_string());
    assert_eq!(get("/libs/live2d.core.js").await.status(), 404);

    // Install some assets where the default assets folder is.
    let assets = daemon.dir.path().join("data/vtuber/web");
    std::fs::create_dir_all(assets.join("libs")).unwrap();
    std::fs::create_dir_all(assets.join("live2d-models/shizuku")).unwrap();
    std::fs::create_dir_all(assets.join("bg")).unwrap();
    std::fs::write(assets.join("libs/live2d.core.js"), "export default 1;").unwrap();
    std::fs::write(
        assets.join("live2d-models/shizuku/shizuku.model.json"),
        "{}",
    )
    .unwrap();
    std::fs::write(assets.join("live2d-models/shizuku/shizuku.png"), "png").unwrap();
    std::fs::write(assets.join("bg/room.jpg"), "jpg").unwrap();
    std::fs::write(
        daemon.dir.path().join("data/vtuber/secret.txt"),
        "top secret",
    )
    .unwrap();

    let cfg: Value = get("/api/page-config").await.json().await.unwrap();
    assert_eq!(cfg["live2d_runtime"], true);
    let r = get("/libs/live2d.core.js").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = get("/live2d-models/shizuku/shizuku.model.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let info: Value = get("/live2d-models/info").await.json().await.unwrap();
    assert_eq!(
        info,
        json!({"type": "live2d-models/info", "count": 1, "characters": [{
            "name": "shizuku",
            "avatar": "/live2d-models/shizuku/shizuku.png",
            "model_path": "/live2d-models/shizuku/shizuku.model.json"}]})
    );
    assert_eq!(get("/bg/room.jpg").await.status(), 200);
    let mut ws = Ws::connect(&base).await;
    ws.greeting().await;
    ws.send(json!({"type": "fetch-backgrounds"})).await;
    assert_eq!(
        ws.expect("background-files").await["files"],
        json!(["room.jpg"])
    );

    // Traversal, encoded so no client library normalises it away.
    for path in [
        "/libs/..%2f..%2fsecret.txt",
        "/libs/%2e%2e/%2e%2e/secret.txt",
        "/live2d-models/.%2e/.%2e/secret.txt",
    ] {
        let (status, body) = raw_get(&base, path, None).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(!body.contains("top secret"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn microphone_audio_is_transcribed_and_answered() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("I heard you.")).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut ws = Ws::connect(&base).await;
    ws.greeting().await;

    let wav = daemon.dir.path().join("speech.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg("What is the weather like today?")
        .status()
        .expect("espeak-ng runs");
    assert!(status.success());
    let pcm = Pcm::from_wav(&std::fs::read(&wav).unwrap())
        .unwrap()
        .resampled(16_000)
        .unwrap();
    for chunk in pcm.samples.chunks(4096) {
        ws.send(json!({"type": "mic-audio-data", "audio": chunk}))
            .await;
    }
    // A camera frame goes with the utterance, as Open-LLM-VTuber's frontend sends it.
    ws.send(json!({"type": "mic-audio-end", "images": [
        {"source": "camera", "data": format!("data:image/png;base64,{PNG_1X1}"), "mime_type": "image/png"}
    ]}))
    .await;
    let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
    let k = kinds(&turn);
    let heard = turn
        .iter()
        .find(|m| m["type"] == "user-input-transcription")
        .unwrap_or_else(|| panic!("no transcription: {k:?}"));
    assert!(
        heard["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("weather"),
        "{heard}"
    );
    // A spoken turn is listed once, as a transcription, not also as `user-input`.
    assert!(!k.contains(&"user-input".to_owned()), "{k:?}");
    let audio: Vec<&Value> = turn.iter().filter(|m| m["type"] == "audio").collect();
    assert_eq!(audio.len(), 1);
    check_audio(audio[0]);
    let reqs = mock.requests();
    assert!(
        reqs.last()
            .unwrap()
            .last_user_message()
            .unwrap()
            .to_lowercase()
            .contains("weather")
    );
    let images = reqs.last().unwrap().last_user_images();
    assert_eq!(images.len(), 1, "the camera frame went with the words");
    assert!(images[0].starts_with("data:image/"), "{images:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exposed_bind_with_tls_and_token_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_certificate(&cert, &key, "localhost");
    let config = format!(
        "speech:\n  enabled: false\nweb:\n  host: 0.0.0.0\n  port: 0\n  token: tls-test-token\n  tls:\n    cert: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    let daemon = TestDaemon::spawn(&config).expect("daemon starts with TLS and a token");
    let url = web_url(&daemon).await;
    assert!(url.starts_with("https://localhost:"), "{url}");
    assert!(url.ends_with("/?token=tls-test-token"), "{url}");
    let port = PageUrl::parse(&url).port();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let cfg: Value = http
        .get(format!("https://127.0.0.1:{port}/api/page-config"))
        .send()
        .await
        .expect("HTTPS answers")
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["token_required"], true);
    // Over TLS the page's cookie is `Secure`.
    let r = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("https://127.0.0.1:{port}/?token=tls-test-token"))
        .send()
        .await
        .expect("HTTPS answers");
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // A certificate that cannot be read stops the daemon with the setting to fix.
    let mut bad = TestDaemon::new(&format!(
        "speech:\n  enabled: false\nweb:\n  port: 0\n  tls:\n    cert: {}/missing.pem\n    key: {}\n",
        dir.path().display(),
        key.display()
    ))
    .unwrap();
    let err = bad.start().expect_err("must refuse").to_string();
    assert!(
        err.contains("web.tls") && err.contains("missing.pem"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupt_ends_the_chain_at_once() {
    let reply = MockReply::text(
        "This first sentence arrives quickly. Then the rest of this reply trickles in word by word so it can be cut.",
    )
    .with_rate(6.0);
    let mock = MockLlm::start_blocking(MockBehaviour::Reply(reply)).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut local = daemon.client("e2e-local").await.unwrap();
    let mut ws = Ws::connect(&base).await;
    ws.greeting().await;
    ws.send(json!({"type": "text-input", "text": "talk for a while"}))
        .await;
    let first = ws.expect("audio").await;
    check_audio(&first);
    ws.send(json!({"type": "interrupt-signal", "text": "This first sentence"}))
        .await;
    let end = ws.until(|m| is_control(m, "conversation-chain-end")).await;
    let k = kinds(&end);
    assert!(k.contains(&"control:interrupt".to_owned()), "{k:?}");
    assert!(!k.contains(&"backend-synth-complete".to_owned()), "{k:?}");
    assert_eq!(
        &k[k.len() - 2..],
        ["force-new-message", "control:conversation-chain-end"]
    );
    let events = local
        .events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .unwrap();
    assert!(matches!(
        events.last().unwrap().1,
        Event::TurnEnded {
            outcome: TurnOutcome::Interrupted,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_turn_reports_the_error_and_still_ends() {
    let mock = MockLlm::start_blocking(MockBehaviour::status(401)).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut ws = Ws::connect(&base).await;
    ws.greeting().await;
    ws.send(json!({"type": "text-input", "text": "hello?"}))
        .await;
    let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
    let error = turn
        .iter()
        .find(|m| m["type"] == "error")
        .unwrap_or_else(|| panic!("{:?}", kinds(&turn)));
    assert!(
        error["message"].as_str().unwrap().contains("401"),
        "{error}"
    );
    ws.send(json!({"type": "frontend-playback-complete"})).await;
    ws.until(|m| is_control(m, "conversation-chain-end")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_clients_follow_one_turn_and_shutdown_closes_them() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply(
        "Hello, everyone. Nice to see you all.",
    ))
    .expect("mock");
    let mut daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut ws = Ws::connect(&base).await;
        ws.greeting().await;
        clients.push(ws);
    }
    clients[0]
        .send(json!({"type": "text-input", "text": "hi all"}))
        .await;
    let turns = futures::future::join_all(clients.iter_mut().map(|ws| async move {
        let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
        ws.send(json!({"type": "frontend-playback-complete"})).await;
        ws.until(|m| is_control(m, "conversation-chain-end")).await;
        turn
    }))
    .await;
    let first: Vec<Value> = turns[0]
        .iter()
        .filter(|m| m["type"] == "audio")
        .cloned()
        .collect();
    assert_eq!(first.len(), 2);
    for turn in &turns {
        let audio: Vec<Value> = turn
            .iter()
            .filter(|m| m["type"] == "audio")
            .cloned()
            .collect();
        assert_eq!(audio, first, "every client gets the same audio");
    }
    // Shutdown closes every page with 1001 and the daemon exits cleanly.
    let status = tokio::task::spawn_blocking(move || {
        let s = daemon.terminate();
        (s, daemon)
    })
    .await
    .unwrap();
    assert!(status.0.expect("terminates").success());
    for ws in clients.iter_mut().take(3) {
        let mut notices = Vec::new();
        let code = loop {
            match ws.next_raw(WAIT).await {
                Ok(m) => notices.push(m),
                Err(code) => break code,
            }
        };
        assert_eq!(code, Some(1001));
        assert!(
            notices.contains(&json!({"type": "full-text", "text": "The daemon is shutting down"})),
            "{notices:?}"
        );
    }
}

/// One frame read off the wire by hand: (final, opcode, payload).
async fn read_frame(tcp: &mut tokio::net::TcpStream) -> (bool, u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.expect("frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).await.expect("length");
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).await.expect("length");
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).expect("length fits")];
    tcp.read_exact(&mut payload).await.expect("payload");
    (head[0] & 0x80 != 0, head[0] & 0x0f, payload)
}

#[tokio::test(flavor = "multi_thread")]
async fn long_messages_go_out_as_fragments_that_join_back() {
    // One long sentence: its audio message is several times the 64 KiB frame size.
    let sentence = "This sentence is long on purpose, so that the sound of it, written out as base sixty four inside a single message, is several times larger than one frame.";
    let mock = MockLlm::start_blocking(MockBehaviour::reply(sentence)).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let host = host_port(&base);
    let mut tcp = tokio::net::TcpStream::connect(&host).await.expect("tcp");
    let request = format!(
        "GET /client-ws{} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        token_query(&base)
    );
    tcp.write_all(request.as_bytes()).await.expect("upgrade");
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.expect("response");
        response.push(b[0]);
    }
    let response = String::from_utf8_lossy(&response).to_lowercase();
    assert!(response.starts_with("http/1.1 101"), "{response}");
    // RFC 6455's own example key and answer.
    assert!(
        response.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{response}"
    );

    // A masked client text frame.
    let text = json!({"type": "text-input", "text": "go on"}).to_string();
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | u8::try_from(text.len()).expect("short")];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&frame).await.expect("send");

    let mut message = Vec::new();
    let mut frames_in_message = 0;
    let mut fragmented = 0;
    let mut texts = Vec::new();
    let mut spoken_ms = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no backend-synth-complete");
        let (fin, opcode, payload) = read_frame(&mut tcp).await;
        assert!(
            payload.len() <= 64 * 1024,
            "frame of {} bytes",
            payload.len()
        );
        match opcode {
            0x1 => assert!(message.is_empty(), "a new message inside a fragmented one"),
            0x0 => assert!(
                !message.is_empty(),
                "a continuation with nothing to continue"
            ),
            0x9 | 0xA => continue,
            other => panic!("unexpected opcode {other}"),
        }
        message.extend_from_slice(&payload);
        frames_in_message += 1;
        if !fin {
            continue;
        }
        // Full frames until the last: as few frames as the size allows.
        assert_eq!(
            frames_in_message,
            message.len().div_ceil(64 * 1024).max(1),
            "{} bytes",
            message.len()
        );
        if frames_in_message > 1 {
            fragmented += 1;
        }
        let m: Value = serde_json::from_slice(&message).expect("whole JSON once joined");
        if m["type"] == "audio" {
            spoken_ms += check_audio(&m).duration_ms();
            texts.push(
                m["display_text"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        } else if m["type"] == "backend-synth-complete" {
            break;
        }
        message.clear();
        frames_in_message = 0;
    }
    assert!(fragmented >= 1, "no message was long enough to fragment");
    assert_eq!(texts.join(" "), sentence);
    assert!(spoken_ms > 3000, "{spoken_ms} ms");
}

/// A self-signed certificate for `name`, made by openssl, written to `cert` and `key`.
fn make_certificate(cert: &std::path::Path, key: &std::path::Path, name: &str) {
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (it makes the test certificate)");
    assert!(status.success());
}

/// The subject line of the certificate the server at `port` presents.
fn served_subject(port: u16) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .expect("openssl s_client runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_certificate(&cert, &key, "first-certificate");
    let config = format!(
        "speech:\n  enabled: false\nweb:\n  port: 0\n  tls:\n    cert: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    let daemon = TestDaemon::spawn(&config).expect("daemon starts with TLS");
    let port = PageUrl::parse(&web_url(&daemon).await).port();
    let subject = tokio::task::block_in_place(|| served_subject(port));
    assert!(subject.contains("first-certificate"), "{subject}");

    // A renewal that is not a certificate yet: the old one keeps serving.
    std::fs::write(&cert, b"half written").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon
        .log_text()
        .contains("the previous certificate keeps serving")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subject = tokio::task::block_in_place(|| served_subject(port));
    assert!(subject.contains("first-certificate"), "{subject}");

    // The finished renewal is served to new connections, with no restart.
    let (new_cert, new_key) = (
        dir.path().join("new-cert.pem"),
        dir.path().join("new-key.pem"),
    );
    make_certificate(&new_cert, &new_key, "renewed-certificate");
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    let pid = daemon.pid();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let subject = tokio::task::block_in_place(|| served_subject(port));
        if subject.contains("renewed-certificate") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {subject}:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(daemon.pid(), pid);
}

/// A 1×1 PNG, base64.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[tokio::test(flavor = "multi_thread")]
async fn olv_text_input_images_reach_the_model_and_bad_ones_are_refused() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("A dot.")).expect("mock");
    let daemon = web_daemon(&mock, "");
    let base = web_url(&daemon).await;
    let mut ws = Ws::connect(&base).await;
    ws.greeting().await;

    // A picture that is not one: an `error` message, no turn.
    ws.send(json!({"type": "text-input", "text": "look", "images": [
        {"source": "upload", "data": "data:image/png;base64,aGVsbG8=", "mime_type": "image/png"}
    ]}))
    .await;
    let refused = ws.expect("error").await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("image 0"),
        "{refused}"
    );

    // A 1×1 PNG as Open-LLM-VTuber sends it (a data URL).
    ws.send(json!({"type": "text-input", "text": "what is this?", "images": [
        {"source": "camera", "data": format!("data:image/png;base64,{PNG_1X1}"), "mime_type": "image/png"}
    ]}))
    .await;
    ws.expect("backend-synth-complete").await;
    ws.send(json!({"type": "frontend-playback-complete"})).await;
    ws.until(|m| is_control(m, "conversation-chain-end")).await;

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1, "the refused message reached the model");
    let user = reqs[0].messages().last().cloned().unwrap_or_default();
    assert_eq!(user["content"][0]["text"], "what is this?", "{user:#}");
    let url = user["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap_or("");
    assert!(url.starts_with("data:image/"), "{user:#}");
}
