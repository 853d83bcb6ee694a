//! The daemon under a service manager: `sd_notify` messages on a `NOTIFY_SOCKET` the
//! test listens on, logs fit for the journal (and free of colour codes in a file), and
//! no finished turn lost to `kill -9`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::*;
use vtuber_shared::{Event, Reply, Request};
use vtuber_test_support::daemon::TestDaemon;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm};

/// What the daemon told the notify socket, in order.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    /// Reads datagrams until `count` of them hold a line that starts with `want`;
    /// returns the last such one.
    fn wait_for(&mut self, want: &str, count: usize) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 4096];
        loop {
            let matching: Vec<&String> = self
                .seen
                .iter()
                .filter(|m| m.lines().any(|l| l.starts_with(want)))
                .collect();
            if matching.len() >= count {
                return matching[count - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no `{want}` ×{count} from vtuberd; got {:?}",
                self.seen
            );
            self.socket
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .expect("timeout");
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_manager_hears_ready_status_watchdog_and_stopping() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("ok")).expect("mock LLM starts");
    let mut daemon = TestDaemon::new(&openai_config(&mock.base_url())).expect("daemon");
    let notify_path = daemon.log.with_file_name("notify.sock");
    let mut manager = Manager {
        socket: UnixDatagram::bind(&notify_path).expect("bind the notify socket"),
        seen: Vec::new(),
    };
    daemon.extra_env.extend([
        (
            "NOTIFY_SOCKET".to_owned(),
            notify_path.to_string_lossy().into_owned(),
        ),
        // A 0.6 s watchdog: a ping every 0.3 s while the conversation answers.
        ("WATCHDOG_USEC".to_owned(), "600000".to_owned()),
    ]);
    daemon.start().expect("daemon starts");

    let ready = tokio::task::block_in_place(|| manager.wait_for("READY=1", 1));
    assert!(ready.contains("STATUS=ready: "), "{ready}");
    assert!(
        ready.contains(", openai_compatible LLM mock-model, 0 clients"),
        "{ready}"
    );
    // READY=1 came when the socket accepts: a client gets in at once, and the status
    // line follows the count.
    let mut client = daemon.client("svc").await.expect("client connects");
    let status = tokio::task::block_in_place(|| manager.wait_for("STATUS=ready: ", 2));
    assert!(status.ends_with(", 1 client"), "{status}");
    tokio::task::block_in_place(|| manager.wait_for("WATCHDOG=1", 3));
    assert_eq!(
        manager
            .seen
            .iter()
            .filter(|m| m.contains("READY=1"))
            .count(),
        1
    );

    assert_eq!(
        client.request(Request::Shutdown).await.unwrap(),
        Ok(Reply::ShuttingDown)
    );
    tokio::task::block_in_place(|| manager.wait_for("STOPPING=1", 1));
    tokio::task::block_in_place(|| daemon.wait_exit(WAIT)).expect("daemon exits");

    // stderr is a file here: no colour codes in it.
    let log = daemon.log_text();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_take_the_journal_form_when_stderr_is_the_journal() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("ok")).expect("mock LLM starts");
    let mut daemon = TestDaemon::new(&openai_config(&mock.base_url())).expect("daemon");
    // systemd names the stream it gives as stderr; here the log file is that stream.
    std::fs::write(&daemon.log, b"").expect("log file");
    let meta = std::fs::metadata(&daemon.log).expect("log metadata");
    daemon.extra_env.push((
        "JOURNAL_STREAM".to_owned(),
        format!("{}:{}", meta.dev(), meta.ino()),
    ));
    daemon.start().expect("daemon starts");
    let mut client = daemon.client("svc").await.expect("client");
    let _ = client.request(Request::Shutdown).await;
    tokio::task::block_in_place(|| daemon.wait_exit(WAIT)).expect("daemon exits");
    let log = daemon.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        let ok = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(ok, "a line without a journal priority: {line:?}\n{log}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("accepting clients")),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_the_middle_of_a_reply_loses_no_finished_turn() {
    let mock = MockLlm::start_blocking(MockBehaviour::Script(vec![
        MockBehaviour::reply("The first answer."),
        MockBehaviour::Endless {
            token: "la ".into(),
            tokens_per_sec: 50.0,
        },
        MockBehaviour::reply("After the crash."),
    ]))
    .expect("mock LLM starts");
    let mut daemon = TestDaemon::spawn(&openai_config(&mock.base_url())).expect("daemon");
    let mut c = daemon.client("t").await.expect("client");
    let is_end = |e: &Event| matches!(e, Event::TurnEnded { .. });
    let first = Request::SendText {
        text: "first question".into(),
        images: Vec::new(),
    };
    let conversation_id = match c.request(first).await.unwrap() {
        Ok(Reply::TurnAccepted {
            conversation_id, ..
        }) => conversation_id,
        other => panic!("first turn refused: {other:?}"),
    };
    c.events_until(WAIT, is_end).await.expect("first turn ends");
    c.request(Request::SendText {
        text: "second question".into(),
        images: Vec::new(),
    })
    .await
    .unwrap()
    .expect("second turn accepted");
    // The second reply is streaming when the daemon dies.
    c.events_until(WAIT, |e| matches!(e, Event::Delta { .. }))
        .await
        .expect("second reply streams");
    tokio::task::block_in_place(|| daemon.kill9()).expect("kill -9");

    daemon.start().expect("daemon restarts");
    let mut c = daemon.client("t").await.expect("client");
    let messages = conversation_messages(&mut c, conversation_id).await;
    let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts[..3],
        ["first question", "The first answer.", "second question"],
        "{texts:?}"
    );
    assert!(!messages[1].interrupted);
    // The cut reply is absent or marked, never stored as a whole one (issue 19).
    assert!(messages[3..].iter().all(|m| m.interrupted), "{messages:#?}");
    crate::faults::assert_history_intact(&daemon);
    // And the daemon talks again.
    let turn = c
        .request(Request::SendText {
            text: "still there?".into(),
            images: Vec::new(),
        })
        .await
        .unwrap();
    assert!(matches!(turn, Ok(Reply::TurnAccepted { .. })), "{turn:?}");
    let events = c.events_until(WAIT, is_end).await.expect("the turn ends");
    assert!(
        matches!(events.last(), Some((_, Event::TurnEnded { text, .. })) if text == "After the crash."),
        "{events:?}"
    );
}

/// SIGHUP and `reload`: what can change live does (the LLM model from a `conf.d/`
/// overlay, a tool server added), what cannot is named and left as it runs (the web
/// port), and a broken file changes nothing while its error reaches the caller and
/// `status`. The service manager hears `RELOADING=1` then `READY=1` each time.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_applies_what_it_can_and_a_broken_file_changes_nothing() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("ok")).expect("mock LLM starts");
    let mut daemon = TestDaemon::new(&openai_config(&mock.base_url())).expect("daemon");
    let notify_path = daemon.log.with_file_name("notify.sock");
    let mut manager = Manager {
        socket: UnixDatagram::bind(&notify_path).expect("bind the notify socket"),
        seen: Vec::new(),
    };
    daemon.extra_env.push((
        "NOTIFY_SOCKET".to_owned(),
        notify_path.to_string_lossy().into_owned(),
    ));
    daemon.start().expect("daemon starts");
    tokio::task::block_in_place(|| manager.wait_for("READY=1", 1));
    let mut client = daemon.client("reload").await.expect("client");
    let before = status(&mut client).await;
    assert_eq!(before.llm.model, "mock-model");
    let web_before = before.web_url.clone().expect("web page runs");

    // An overlay: a new model, a tool server, and a web port (that needs a restart).
    let overlays = daemon.config.with_file_name("conf.d");
    std::fs::create_dir_all(&overlays).expect("conf.d");
    let server = vtuber_test_support::mcp::test_server_bin();
    std::fs::write(
        overlays.join("10-live.yaml"),
        format!(
            "llm:\n  model: second-model\nmcp:\n  servers:\n    probe:\n      command: {}\n      sandbox: {{enabled: false}}\nweb:\n  port: 1\n",
            server.display()
        ),
    )
    .expect("overlay");
    let pid = daemon.pid().expect("pid");
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let reloading = tokio::task::block_in_place(|| manager.wait_for("RELOADING=1", 1));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ready = tokio::task::block_in_place(|| manager.wait_for("READY=1", 2));
    assert!(ready.contains("second-model"), "{ready}");
    let after = status(&mut client).await;
    assert_eq!(after.llm.model, "second-model");
    assert_eq!(after.needs_restart, ["web.port"]);
    assert_eq!(after.web_url.as_deref(), Some(web_before.as_str()));
    assert!(after.reload_error.is_none());
    assert_eq!(after.config_files.len(), 2, "{:?}", after.config_files);
    assert!(after.config_files[1].ends_with("conf.d/10-live.yaml"));
    let deadline = Instant::now() + WAIT;
    loop {
        let servers = match client.request(Request::ListMcpServers).await.unwrap() {
            Ok(Reply::McpServers { servers }) => servers,
            other => panic!("{other:?}"),
        };
        if servers
            .iter()
            .any(|s| s.name == "probe" && s.state == vtuber_shared::McpServerState::Ready)
        {
            break;
        }
        assert!(Instant::now() < deadline, "probe never ready: {servers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next turn goes to the new model.
    let turn = client
        .request(Request::SendText {
            text: "hi".into(),
            images: Vec::new(),
        })
        .await
        .unwrap();
    assert!(matches!(turn, Ok(Reply::TurnAccepted { .. })), "{turn:?}");
    client
        .events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .expect("the turn ends");
    let asked = mock.requests();
    let last = asked.last().expect("the mock was asked");
    assert_eq!(last.body["model"], "second-model", "{:?}", last.body);

    // A mistake: nothing changes; the caller gets file, line and key.
    std::fs::write(
        overlays.join("20-broken.yaml"),
        "llm:\n  model: third-model\n  temprature: 2\n",
    )
    .expect("broken overlay");
    let err = match client.request(Request::Reload).await.unwrap() {
        Err(e) => e,
        Ok(r) => panic!("a broken file was applied: {r:?}"),
    };
    assert!(err.message.contains("20-broken.yaml:3"), "{}", err.message);
    assert!(err.message.contains("llm.temprature"), "{}", err.message);
    let broken = status(&mut client).await;
    assert_eq!(broken.llm.model, "second-model");
    assert_eq!(
        broken.reload_error.as_ref().map(|e| e.message.clone()),
        Some(err.message.clone())
    );
    tokio::task::block_in_place(|| manager.wait_for("RELOADING=1", 2));
    let ready = tokio::task::block_in_place(|| manager.wait_for("READY=1", 3));
    assert!(ready.contains("reload failed"), "{ready}");

    // Fixed, through the command line this time: applied, and the error is gone.
    std::fs::remove_file(overlays.join("20-broken.yaml")).expect("remove");
    std::fs::write(
        overlays.join("20-fixed.yaml"),
        "llm:\n  model: third-model\n",
    )
    .expect("fixed overlay");
    let mut reload = daemon.vtuber();
    reload.args(["daemon", "reload"]);
    let out = run(reload).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("applied: llm.model"), "{stdout}");
    assert!(stdout.contains("waiting for a restart"), "{stdout}");
    let fixed = status(&mut client).await;
    assert_eq!(fixed.llm.model, "third-model");
    assert!(fixed.reload_error.is_none());
    let log = daemon.log_text();
    assert!(log.contains("reload refused, nothing changed"), "{log}");
}

async fn status(client: &mut vtuber_test_support::daemon::TestClient) -> vtuber_shared::Status {
    match client.request(Request::Status).await.unwrap() {
        Ok(Reply::Status(status)) => status,
        other => panic!("{other:?}"),
    }
}

/// `daemon.log_level` sets what the log shows, and a reload changes it live.
#[tokio::test(flavor = "multi_thread")]
async fn the_log_level_comes_from_the_config_and_changes_on_reload() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("ok")).expect("mock LLM starts");
    let mut daemon = TestDaemon::new(&format!(
        "{}daemon:\n  log_level: warn\n",
        openai_config(&mock.base_url())
    ))
    .expect("daemon");
    // Neither variable chooses the filter: the config does.
    daemon.log_filter = String::new();
    daemon
        .extra_env
        .push(("RUST_LOG".to_owned(), String::new()));
    daemon.start().expect("daemon starts");
    let mut client = daemon.client("log").await.expect("client");
    let quiet = daemon.log_text();
    assert!(
        !quiet.contains("accepting clients"),
        "info lines at warn:\n{quiet}"
    );

    let overlays = daemon.config.with_file_name("conf.d");
    std::fs::create_dir_all(&overlays).expect("conf.d");
    std::fs::write(overlays.join("debug.yaml"), "daemon:\n  log_level: info\n").expect("overlay");
    match client.request(Request::Reload).await.unwrap() {
        Ok(Reply::Reloaded { report }) => {
            assert_eq!(report.applied, ["daemon.log_level"], "{report:?}");
        }
        other => panic!("{other:?}"),
    }
    let deadline = Instant::now() + WAIT;
    while !daemon.log_text().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
