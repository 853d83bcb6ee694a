//! Open-LLM-VTuber's own web frontend (Open-LLM-VTuber-Web, web build 1.2.1) against
//! vtuberd: a replay of what that build sends and needs, served from another origin
//! (its dev server or its own host), as a user runs it.
//!
//! Based on the build in the Open-LLM-VTuber/Open-LLM-VTuber-Web repository
//! (`index.html` → `assets/main-DEq_50mU.js`, commit ae7233a7):
//! - `WebSocketHandler` (near the end of that bundle): `set-model-and-conf` prefixes
//!   `model_info.url` with its base URL and hands it to the Live2D loader; `control`
//!   knows `start-mic`, `stop-mic`, `conversation-chain-start`/`-end` only; the message
//!   `interrupt-signal` calls its `interrupt(false)` (stops playback); `error` is a
//!   toast; `group-update` only updates the member list (its error is not shown);
//!   `new-history-created` empties its chat; `history-data` replaces it.
//! - `useGroupDrawer` (same bundle, before the footer): an invite sends
//!   `add-client-to-group` then `request-group-info` 100 ms later.
//! - On connect its `wsService` sends `fetch-backgrounds`, `fetch-configs`,
//!   `fetch-history-list`, `create-new-history` (its websocket service's set-up after the
//!   socket opens; the order does not matter to the daemon).
//! - Its Live2D loader loads `<dir>/<name>.model3.json` only (so `x.model.json` becomes
//!   `x.model.json.model3.json`), and plays the model's `idleMotionGroupName` group.

use std::time::Duration;

use crate::common::*;
use crate::web::{Ws, check_audio, kinds, root};
use serde_json::{Value, json};
use vtuber_shared::{Event, Reply, Request};
use vtuber_test_support::daemon::{TestClient, TestDaemon, link_models};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};
use vtuber_test_support::web::PageUrl;
use vtuberd::pcm::Pcm;

/// Where the frontend is served from: not the daemon's own origin.
const OLV_ORIGIN: &str = "http://localhost:3000";

const MODEL_URL: &str = "/live2d-models/haru/runtime/haru.model3.json";

/// A daemon whose character uses a Cubism 3 model installed the way Open-LLM-VTuber
/// installs them (`<name>/runtime/<name>.model3.json`, motion group `Idle`), one
/// background in `web.backgrounds_dir`, and the frontend's origin allowed.
fn olv_daemon(mock: &MockLlm, backgrounds: &std::path::Path) -> TestDaemon {
    let config = format!(
        "{}character:\n  default: haru\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: none\n  playback: clients\nweb:\n  port: 0\n  allowed_origins: [\"{OLV_ORIGIN}\"]\n  backgrounds_dir: {}\n",
        openai_config(&mock.base_url()),
        backgrounds.display()
    );
    let mut daemon = TestDaemon::new(&config).expect("daemon home");
    let characters = daemon.dir.path().join("config/vtuber/characters");
    std::fs::create_dir_all(&characters).unwrap();
    std::fs::write(
        characters.join("haru.toml"),
        "name = \"Haru\"\npersona = \"You are Haru.\"\n\n[avatar]\nmodel = \"haru\"\n\n[avatar.emotions]\nneutral = 0\njoy = 1\n\n[voice]\ntts = \"espeak\"\nvoice = \"en\"\nlanguage = \"en\"\n",
    )
    .unwrap();
    let assets = daemon.dir.path().join("data/vtuber/web");
    let runtime = assets.join("live2d-models/haru/runtime");
    std::fs::create_dir_all(runtime.join("haru.2048")).unwrap();
    let model3 = json!({"Version": 3, "FileReferences": {
        "Moc": "haru.moc3",
        "Textures": ["haru.2048/texture_00.png"],
        "Motions": {"Idle": [{"File": "motion/idle.motion3.json"}], "TapBody": []}}});
    std::fs::write(runtime.join("haru.model3.json"), model3.to_string()).unwrap();
    std::fs::write(runtime.join("haru.2048/texture_00.png"), "png").unwrap();
    // The frontend's default background, as Open-LLM-VTuber ships it in `backgrounds/`,
    // in the configured folder.
    std::fs::write(backgrounds.join("ceiling-window-room-night.jpeg"), "jpeg").unwrap();
    link_models(&daemon.models_dir()).expect("models (run scripts/setup.sh)");
    daemon.start().expect("daemon starts");
    daemon
}

/// The frontend's model-URL rule: the loader takes the file's folder and its name up
/// to `.model3.json`, and loads `<folder>/<name>.model3.json`.
fn olv_model_load_url(url: &str) -> String {
    let (dir, file) = url.rsplit_once('/').unwrap_or(("", url));
    let name = file.strip_suffix(".model3.json").unwrap_or(file);
    format!("{dir}/{name}.model3.json")
}

async fn current_conversation(c: &mut TestClient) -> Option<i64> {
    match c.request(Request::Status).await.unwrap() {
        Ok(Reply::Status(s)) => s.conversation_id,
        other => panic!("status: {other:?}"),
    }
}

#[test]
fn the_frontends_model_url_rule() {
    assert_eq!(olv_model_load_url(MODEL_URL), MODEL_URL);
    assert_eq!(
        olv_model_load_url("/live2d-models/shizuku/shizuku.model.json"),
        "/live2d-models/shizuku/shizuku.model.json.model3.json"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn open_llm_vtubers_own_frontend_works_unchanged() {
    let reply = MockReply::text(
        "[joy] This first sentence arrives quickly. Then the rest of this reply trickles in word by word so it can be cut.",
    )
    .with_rate(6.0);
    let mock = MockLlm::start_blocking(MockBehaviour::Reply(reply)).expect("mock");
    let backgrounds = tempfile::tempdir().unwrap();
    let daemon = olv_daemon(&mock, backgrounds.path());
    let base = web_url(&daemon).await;
    let page = PageUrl::parse(&base);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{}", root(&base), path.trim_start_matches('/'));

    // The terminal user talks first: the conversation has messages (and a tag).
    let mut terminal = daemon.client("e2e-terminal").await.unwrap();
    let mut events = daemon.client("e2e-events").await.unwrap();
    terminal
        .request(Request::SendText {
            text: "hello".into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
        .expect("send_text");
    events
        .events_until(WAIT, |e| matches!(e, Event::Sentence { .. }))
        .await
        .unwrap();
    terminal.request(Request::Interrupt).await.unwrap().ok();
    events
        .events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .unwrap();
    let terminals = current_conversation(&mut terminal)
        .await
        .expect("a conversation");

    // The page connects from its own origin, with the token in the address it was given.
    let mut ws = Ws::connect_with(&base, &page.token_query(), &[("Origin", OLV_ORIGIN)])
        .await
        .expect("the frontend's origin is allowed");
    let greeting = ws.greeting().await;
    let conf = &greeting[1];
    assert_eq!(conf["type"], "set-model-and-conf");
    let info = &conf["model_info"];
    // A Cubism 3 model: the model3.json itself, which the frontend's rule leaves alone.
    assert_eq!(info["url"], MODEL_URL);
    assert_eq!(olv_model_load_url(MODEL_URL), MODEL_URL);
    // Its connect-time requests.
    for t in [
        "fetch-backgrounds",
        "fetch-configs",
        "fetch-history-list",
        "create-new-history",
    ] {
        ws.send(json!({ "type": t })).await;
    }
    let bg = ws.expect("background-files").await;
    assert!(
        bg["files"]
            .as_array()
            .unwrap()
            .contains(&json!("ceiling-window-room-night.jpeg")),
        "{bg}"
    );
    ws.expect("config-files").await;
    ws.expect("history-list").await;
    // Connecting did not move the terminal user to a new conversation: the page is told
    // the current one and shown its messages, tags removed as in live subtitles.
    let created = ws.expect("new-history-created").await;
    assert_eq!(created["history_uid"], terminals.to_string());
    let history = ws.expect("history-data").await;
    let messages = history["messages"].as_array().unwrap();
    assert!(messages.iter().any(|m| m["role"] == "ai"), "{history}");
    for m in messages {
        let text = m["content"].as_str().unwrap();
        assert!(!text.contains("[joy]"), "{history}");
    }
    assert_eq!(current_conversation(&mut terminal).await, Some(terminals));

    // Its asset requests, cross-origin: a preflight, then the files, with CORS headers.
    let r = http
        .request(reqwest::Method::OPTIONS, url(MODEL_URL))
        .header("Origin", OLV_ORIGIN)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], OLV_ORIGIN);
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_eq!(r.headers()["access-control-allow-headers"], "content-type");
    let r = http
        .get(url(&olv_model_load_url(MODEL_URL)))
        .header("Origin", OLV_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], OLV_ORIGIN);
    let model: Value = r.json().await.unwrap();
    // The idle group it will play is one the model has, spelled as the model spells it.
    let idle = info["idleMotionGroupName"].as_str().unwrap();
    assert_eq!(idle, "Idle");
    assert!(model["FileReferences"]["Motions"].get(idle).is_some());
    for path in [
        "/live2d-models/haru/runtime/haru.2048/texture_00.png",
        "/bg/ceiling-window-room-night.jpeg",
    ] {
        let r = http
            .get(url(path))
            .header("Origin", OLV_ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], OLV_ORIGIN);
    }
    // A missing background is a plain 404 the frontend can read (no CORS error).
    let r = http
        .get(url("/bg/no-such-room.jpeg"))
        .header("Origin", OLV_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["access-control-allow-origin"], OLV_ORIGIN);
    // Other sites may not read the assets, nor preflight them.
    let r = http
        .get(url(MODEL_URL))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = http
        .request(reqwest::Method::OPTIONS, url(MODEL_URL))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The WebSocket keeps its rules: no CORS there, and the token is still needed.
    assert_eq!(
        Ws::connect_with(&base, "", &[("Origin", OLV_ORIGIN)])
            .await
            .err(),
        Some(401)
    );

    // A turn from the page, interrupted from the terminal: the page gets the message
    // that stops its playback (`interrupt-signal`) before the chain ends.
    ws.send(json!({"type": "text-input", "text": "talk for a while", "images": []}))
        .await;
    let first = ws.expect("audio").await;
    check_audio(&first);
    assert!(
        !first["display_text"]["text"]
            .as_str()
            .unwrap()
            .contains("[joy]")
    );
    terminal.request(Request::Interrupt).await.unwrap().ok();
    let end = ws
        .until(|m| m["type"] == "control" && m["text"] == "conversation-chain-end")
        .await;
    let k = kinds(&end);
    let stop = k.iter().position(|t| t == "interrupt-signal");
    let chain_end = k.len() - 1;
    assert!(stop.is_some_and(|i| i < chain_end), "{k:?}");

    // A spoken turn, as its in-browser voice detection sends one: the utterance's
    // 16 kHz samples in `mic-audio-data` messages, then `mic-audio-end`; once it has
    // played the reply, `frontend-playback-complete`.
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
    ws.send(json!({"type": "mic-audio-end", "images": []}))
        .await;
    let turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
    let heard = turn
        .iter()
        .find(|m| m["type"] == "user-input-transcription")
        .unwrap_or_else(|| panic!("no transcription: {:?}", kinds(&turn)));
    assert!(
        heard["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("weather"),
        "{heard}"
    );
    ws.send(json!({"type": "frontend-playback-complete"})).await;
    let end = ws
        .until(|m| m["type"] == "control" && m["text"] == "conversation-chain-end")
        .await;
    let k = kinds(&end);
    assert_eq!(
        &k[k.len() - 2..],
        ["force-new-message", "control:conversation-chain-end"]
    );

    // An invite: the frontend shows only `error` messages.
    ws.send(json!({"type": "add-client-to-group", "invitee_uid": "someone"}))
        .await;
    ws.send(json!({"type": "request-group-info"})).await;
    ws.expect_error("groups are not supported").await;

    // A "new chat" click later does start a new conversation, for everyone.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(json!({"type": "create-new-history"})).await;
    let created = ws.expect("new-history-created").await;
    let new_id: i64 = created["history_uid"].as_str().unwrap().parse().unwrap();
    assert_ne!(new_id, terminals);
    assert_eq!(current_conversation(&mut terminal).await, Some(new_id));
}
