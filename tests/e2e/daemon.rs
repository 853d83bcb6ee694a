//! The daemon as a process and a socket server: framing errors, handshake, single
//! instance, stale sockets, signals, status, config errors, characters.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::*;
use vtuber_shared::{
    DaemonState, ErrorCode, Event, Outcome, PROTOCOL_VERSION, Reply, Request, ServerFrame,
    framing::MAX_FRAME_BYTES,
};
use vtuber_test_support::daemon::{TestClient, TestDaemon};
use vtuber_test_support::mock_llm::MockBehaviour;

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_errors_and_the_connection_carries_on() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mut c = daemon.client("fuzz").await.unwrap();

    c.send_raw(b"this is not json\n").await.unwrap();
    let r = c.response_to(None).await.unwrap().unwrap_err();
    assert_eq!(r.code, ErrorCode::BadRequest);
    assert!(r.hint.is_some());

    c.send_raw(b"{\"id\": 41, \"request\": {\"type\": \"fly_to_the_moon\"}}\n")
        .await
        .unwrap();
    let r = c.response_to(Some(41)).await.unwrap().unwrap_err();
    assert_eq!(r.code, ErrorCode::BadRequest);
    assert!(r.message.contains("fly_to_the_moon"), "{}", r.message);

    c.send_raw(&[0xff, 0xfe, b'\n']).await.unwrap();
    assert_eq!(
        c.response_to(None).await.unwrap().unwrap_err().code,
        ErrorCode::BadRequest
    );

    let mut big = vec![b'x'; MAX_FRAME_BYTES + 100];
    big.push(b'\n');
    c.send_raw(&big).await.unwrap();
    let r = c.response_to(None).await.unwrap().unwrap_err();
    assert_eq!(r.code, ErrorCode::FrameTooLarge);

    // Still alive, and so is everyone else.
    assert_eq!(c.request(Request::Ping).await.unwrap(), Ok(Reply::Pong));
    let mut other = daemon.client("other").await.unwrap();
    assert_eq!(other.request(Request::Ping).await.unwrap(), Ok(Reply::Pong));
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_comes_first_and_versions_are_checked() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mut raw = TestClient::connect_raw(&daemon.socket).await.unwrap();
    let r = raw.request(Request::Status).await.unwrap().unwrap_err();
    assert_eq!(r.code, ErrorCode::Handshake);

    let mut raw = TestClient::connect_raw(&daemon.socket).await.unwrap();
    let r = raw
        .request(Request::Hello {
            protocol: 999,
            client: "future".into(),
            subscribe: true,
            audio: true,
            cookie: vtuber_shared::cookie::read_cookie(&daemon.socket).ok(),
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(r.code, ErrorCode::Handshake);
    assert!(r.message.contains("999"));
}

/// Same user is not enough: a client must present the cookie the daemon wrote beside its
/// socket (tool servers run as the same user but cannot read it).
#[tokio::test(flavor = "multi_thread")]
async fn hello_needs_the_socket_cookie() {
    use std::os::unix::fs::PermissionsExt;
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let cookie_file = vtuber_shared::cookie::cookie_path(&daemon.socket);
    let mode = std::fs::metadata(&cookie_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "cookie file mode {mode:o}");
    let cookie = vtuber_shared::cookie::read_cookie(&daemon.socket).unwrap();

    for (presented, why) in [
        (None, "no cookie"),
        (Some("0".repeat(64)), "not this daemon's"),
        (Some(format!("{}x", &cookie[..63])), "not this daemon's"),
    ] {
        let mut raw = TestClient::connect_raw(&daemon.socket).await.unwrap();
        let r = raw
            .request(Request::Hello {
                protocol: PROTOCOL_VERSION,
                client: "intruder".into(),
                subscribe: true,
                audio: true,
                cookie: presented,
            })
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(r.code, ErrorCode::Handshake);
        assert!(r.message.contains(why), "{r:?}");
        assert!(
            r.hint.as_deref().unwrap_or_default().contains(".cookie"),
            "{r:?}"
        );
        // Refused for good: the connection is closed, nothing else is served.
        assert!(raw.request(Request::Status).await.is_err());
    }
    let mut ok = TestClient::connect(&daemon.socket, "owner", false)
        .await
        .unwrap();
    assert_eq!(ok.request(Request::Ping).await.unwrap(), Ok(Reply::Pong));

    drop(ok);

    // A new cookie at every start; the old one is worthless.
    let mut daemon = daemon;
    assert!(daemon.terminate().unwrap().success());
    assert!(!cookie_file.exists(), "cookie removed on a clean stop");
    daemon.start().unwrap();
    let fresh = vtuber_shared::cookie::read_cookie(&daemon.socket).unwrap();
    assert_ne!(fresh, cookie);
    let mut raw = TestClient::connect_raw(&daemon.socket).await.unwrap();
    let r = raw
        .request(Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "replay".into(),
            subscribe: false,
            audio: true,
            cookie: Some(cookie),
        })
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn welcome_and_status_report_the_daemon() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let c = daemon.client("st").await.unwrap();
    let Some(Reply::Welcome {
        status, protocol, ..
    }) = &c.welcome
    else {
        panic!("no welcome");
    };
    assert_eq!(*protocol, vtuber_shared::PROTOCOL_VERSION);
    assert_eq!(status.character, "mao");
    assert_eq!(status.llm.backend, "openai_compatible");
    assert_eq!(status.llm.model, "mock-model");
    assert_eq!(status.state, DaemonState::Idle);
    assert_eq!(status.clients, 1);
    assert_eq!(status.pid, daemon.pid().unwrap());

    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "state",
        "character",
        "llm",
        "model_load",
        "clients",
        "daemon_version",
        "uptime_secs",
    ] {
        assert!(v.get(key).is_some(), "status --json lacks {key}: {v}");
    }
    assert_eq!(v["llm"]["backend"], "openai_compatible");
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_is_private() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(daemon.socket.parent().unwrap()), 0o700);
}

#[test]
fn a_second_daemon_refuses_to_start() {
    let first = TestDaemon::spawn(&openai_config("http://127.0.0.1:9/v1")).unwrap();
    let out = first.vtuberd().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already owns"), "{err}");
    assert!(err.contains(&first.pid().unwrap().to_string()), "{err}");
    // The first one is unharmed.
    assert!(std::os::unix::net::UnixStream::connect(&first.socket).is_ok());
}

#[test]
fn a_stale_socket_is_replaced() {
    let mut d = TestDaemon::new(&openai_config("http://127.0.0.1:9/v1")).unwrap();
    std::fs::create_dir_all(d.socket.parent().unwrap()).unwrap();
    // A socket file whose listener is gone, as a crash leaves it.
    drop(std::os::unix::net::UnixListener::bind(&d.socket).unwrap());
    assert!(d.socket.exists());
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_err());
    d.start().unwrap();
    assert!(d.log_text().contains("stale socket"), "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_tells_clients() {
    let (_mock, mut daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mut c = daemon.client("watcher").await.unwrap();
    let status = tokio::task::block_in_place(|| daemon.terminate()).unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket.exists(), "socket file left behind");
    let events = c
        .events_until(WAIT, |e| matches!(e, Event::ShuttingDown))
        .await
        .unwrap();
    assert!(matches!(events.last(), Some((_, Event::ShuttingDown))));
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_request_stops_the_daemon() {
    let (_mock, mut daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mut c = daemon.client("stopper").await.unwrap();
    assert_eq!(
        c.request(Request::Shutdown).await.unwrap(),
        Ok(Reply::ShuttingDown)
    );
    let status = tokio::task::block_in_place(|| daemon.wait_exit(Duration::from_secs(20))).unwrap();
    assert!(status.success());
}

#[test]
fn config_check_reports_every_problem_with_file_line_and_key() {
    let d = TestDaemon::new(
        "llm:\n  provider: openai\n  temprature: 0.2\nhistory:\n  token_budget: lots\n",
    )
    .unwrap();
    let out = d.vtuber().args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).replace(&d.config.display().to_string(), "CONF");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("CONF:2:"), "{text}");
    assert!(lines[0].contains("llm.provider"), "{text}");
    assert!(
        lines[0].contains("openai_compatible"),
        "expected values listed: {text}"
    );
    assert!(lines[1].starts_with("CONF:5:"), "{text}");
    assert!(lines[1].contains("history.token_budget"), "{text}");

    // The daemon refuses to start on it, pointing at the checker.
    let out = d.vtuberd().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vtuber config check"));

    let good = TestDaemon::new("llm:\n  provider: openai_compatible\n  model: m\n").unwrap();
    let out = good.vtuber().args(["config", "check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn characters_switch_and_reload_on_save() {
    let (mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mut c = daemon.client("chars").await.unwrap();
    let Ok(Reply::Characters {
        current,
        characters,
    }) = c.request(Request::ListCharacters).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(current, "mao");
    assert!(characters.iter().any(|ch| ch.id == "sage"));

    let r = c
        .request(Request::SwitchCharacter {
            name: "nobody".into(),
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(r.code, ErrorCode::NotFound);
    assert!(r.hint.unwrap_or_default().contains("sage"));

    let mut cmd = daemon.vtuber();
    cmd.args(["characters", "switch", "sage"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    c.events_until(
        WAIT,
        |e| matches!(e, Event::CharacterChanged { character, .. } if character.id == "sage"),
    )
    .await
    .unwrap();

    // A new character file appears, then is edited: both take effect without restart.
    let dir = daemon.dir.path().join("config/vtuber/characters");
    std::fs::write(
        dir.join("kit.toml"),
        "name = \"Kit\"\npersona = \"You are Kit, version one.\"\n",
    )
    .unwrap();
    c.events_until(WAIT, |e| matches!(e, Event::CharactersReloaded { characters } if characters.iter().any(|ch| ch.id == "kit")))
        .await
        .unwrap();
    c.request(Request::SwitchCharacter { name: "kit".into() })
        .await
        .unwrap()
        .unwrap();
    // The switch itself announces kit; the edit below must announce it again.
    c.events_until(
        WAIT,
        |e| matches!(e, Event::CharacterChanged { character, .. } if character.id == "kit"),
    )
    .await
    .unwrap();
    std::fs::write(
        dir.join("kit.toml"),
        "name = \"Kit\"\npersona = \"You are Kit, version two.\"\n",
    )
    .unwrap();
    c.events_until(
        WAIT,
        |e| matches!(e, Event::CharacterChanged { character, .. } if character.id == "kit"),
    )
    .await
    .unwrap();
    c.request(Request::SendText {
        text: "who are you?".into(),
        images: Vec::new(),
    })
    .await
    .unwrap()
    .unwrap();
    c.events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .unwrap();
    let system = mock.requests().pop().unwrap().messages()[0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(system.contains("version two"), "{system}");
    let _ = (
        Outcome::Ok(Reply::Pong),
        ServerFrame::Event {
            seq: 0,
            event: Event::ShuttingDown,
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_llm_vtuber_character_is_imported_and_talked_to() {
    let (mock, daemon) = daemon_with_mock(MockBehaviour::reply("Hello!"));
    let mut c = daemon.client("import").await.unwrap();
    let olv = daemon.dir.path().join("aoi.yaml");
    std::fs::write(
        &olv,
        "character_config:\n  conf_uid: aoi_001\n  character_name: Aoi\n  live2d_model_name: shizuku\n  persona_prompt: |\n    You are Aoi, a quiet painter.\n  tts_config:\n    tts_model: edge_tts\n",
    )
    .unwrap();
    let mut cmd = daemon.vtuber();
    cmd.args(["characters", "import", "--write"]).arg(&olv);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("edge_tts"), "{}", stderr(&out));
    // Written where the daemon looks, picked up without a restart; a second import
    // does not overwrite it.
    c.events_until(WAIT, |e| {
        matches!(e, Event::CharactersReloaded { characters } if characters.iter().any(|ch| ch.id == "aoi_001"))
    })
    .await
    .unwrap();
    let mut again = daemon.vtuber();
    again.args(["characters", "import", "--write"]).arg(&olv);
    let out = run(again).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));

    c.request(Request::SwitchCharacter {
        name: "aoi_001".into(),
    })
    .await
    .unwrap()
    .unwrap();
    let mut say = daemon.vtuber();
    say.args(["say", "hi"]);
    let out = run(say).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let system = mock.requests()[0].messages()[0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(system.contains("You are Aoi, a quiet painter."), "{system}");
}
