//! The fault matrix of the reliability suite (issue 19), for the faults the other files
//! do not already cover end to end (`kill -9` mid-reply is in `service.rs`, just after
//! a turn in `conversation.rs`). Each runs the real daemon against a real (mock)
//! server that misbehaves, and checks the same five things: the daemon stays up and
//! answers `status`; the client whose turn it was gets a clear error with a hint; another
//! client carries on; no finished turn is lost; the history passes
//! `PRAGMA integrity_check`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vtuber_shared::{Event, Reply, Request, Role, StoredMessage, TurnOutcome};
use vtuber_test_support::daemon::{TestClient, TestDaemon};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

use crate::common::*;

/// The history database of `daemon`.
fn history_db(daemon: &TestDaemon) -> PathBuf {
    daemon.dir.path().join("data/vtuber/history.sqlite3")
}

/// `PRAGMA integrity_check` of the history says `ok`.
pub(crate) fn assert_history_intact(daemon: &TestDaemon) {
    let db = rusqlite::Connection::open(history_db(daemon)).expect("history opens");
    let verdict: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(verdict, ["ok"], "integrity_check");
}

/// Sends `text` and reads this client's events to the turn's end: its outcome and text.
async fn turn(client: &mut TestClient, text: &str) -> (u64, TurnOutcome, String) {
    let turn_id = match client
        .request(Request::SendText {
            text: text.into(),
            images: Vec::new(),
        })
        .await
        .expect("send_text answered")
    {
        Ok(Reply::TurnAccepted { turn_id, .. }) => turn_id,
        other => panic!("send_text: {other:?}"),
    };
    let (outcome, reply) = ended(client, turn_id).await;
    (turn_id, outcome, reply)
}

/// Reads `client`'s events until turn `turn_id` ends.
async fn ended(client: &mut TestClient, turn_id: u64) -> (TurnOutcome, String) {
    let events = client
        .events_until(
            WAIT * 2,
            |e| matches!(e, Event::TurnEnded { turn_id: t, .. } if *t == turn_id),
        )
        .await
        .expect("the turn ends");
    match events.into_iter().next_back().map(|(_, e)| e) {
        Some(Event::TurnEnded { outcome, text, .. }) => (outcome, text),
        other => panic!("{other:?}"),
    }
}

async fn status(client: &mut TestClient) -> vtuber_shared::Status {
    match client
        .request(Request::Status)
        .await
        .expect("status answered")
    {
        Ok(Reply::Status(s)) => s,
        other => panic!("status: {other:?}"),
    }
}

/// The current conversation's stored messages.
async fn stored(client: &mut TestClient) -> Vec<StoredMessage> {
    let id = status(client)
        .await
        .conversation_id
        .expect("a conversation");
    conversation_messages(client, id).await
}

/// A finished exchange `question` → `answer` is stored whole.
fn assert_kept(messages: &[StoredMessage], question: &str, answer: &str) {
    let q = messages
        .iter()
        .position(|m| m.role == Role::User && m.text == question)
        .unwrap_or_else(|| panic!("`{question}` lost: {messages:#?}"));
    let a = &messages[q + 1..]
        .iter()
        .find(|m| m.role == Role::Assistant)
        .unwrap_or_else(|| panic!("the answer to `{question}` lost: {messages:#?}"));
    assert_eq!(a.text, answer, "{messages:#?}");
    assert!(!a.interrupted, "{messages:#?}");
}

/// A daemon whose LLM answers the first turn, then misbehaves as `fault` for the second,
/// then answers again; LLM timeouts short so a hang costs seconds. Checks the five
/// things of the module doc. `expect` must be in the failed turn's message, `hint` in
/// its hint.
async fn llm_fault(fault: MockBehaviour, expect: &str, hint: &str) {
    let mock = MockLlm::start_blocking(MockBehaviour::Script(vec![
        MockBehaviour::reply("First answer."),
        fault,
        MockBehaviour::reply("Third answer."),
    ]))
    .expect("mock LLM starts");
    let config = openai_config(&mock.base_url()).replace("timeout_secs: 10", "timeout_secs: 3");
    let daemon = TestDaemon::spawn(&config).expect("daemon starts");
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();

    let (_, outcome, _) = turn(&mut a, "first question").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    let started = Instant::now();
    let (turn_id, outcome, _) = turn(&mut a, "second question").await;
    let TurnOutcome::Failed { error } = outcome else {
        panic!("the faulty turn did not fail: {outcome:?}");
    };
    assert!(
        error.message.contains(expect),
        "`{expect}` not in: {error:?}"
    );
    assert!(
        error.hint.as_deref().is_some_and(|h| h.contains(hint)),
        "`{hint}` not in the hint: {error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    // The other client saw the same end, and the daemon answers it.
    let (b_outcome, _) = ended(&mut b, turn_id).await;
    assert!(matches!(b_outcome, TurnOutcome::Failed { .. }));
    let s = status(&mut b).await;
    assert_eq!(s.clients, 2);
    // And carries on: the next turn, from the other client, works.
    let (_, outcome, text) = turn(&mut b, "third question").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, "Third answer.");
    let messages = stored(&mut b).await;
    assert_kept(&messages, "first question", "First answer.");
    assert_kept(&messages, "third question", "Third answer.");
    assert_history_intact(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_http_500() {
    llm_fault(MockBehaviour::status(500), "HTTP 500", "try again").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_connection_reset_mid_stream() {
    llm_fault(
        MockBehaviour::CloseAfter {
            reply: MockReply::text("a reply that will be cut off before its end"),
            after_tokens: 3,
        },
        "broke mid-reply",
        "try again",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_hangs_before_the_first_token() {
    llm_fault(
        MockBehaviour::HangBeforeFirstByte,
        "no reply from the LLM server within 3 s",
        "llm.timeout_secs",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_goes_silent_mid_stream() {
    llm_fault(
        MockBehaviour::HangAfter {
            reply: MockReply::text("a reply that stops halfway and never ends"),
            after_tokens: 3,
        },
        "no reply from the LLM server within 3 s",
        "llm.timeout_secs",
    )
    .await;
}

/// The LLM server goes away between turns (the config now points at a port where
/// nothing listens) and comes back.
#[tokio::test(flavor = "multi_thread")]
async fn llm_unreachable_mid_conversation() {
    let mock = MockLlm::start_blocking(MockBehaviour::echo_last_user()).expect("mock");
    let good = openai_config(&mock.base_url());
    let daemon = TestDaemon::spawn(&good).expect("daemon starts");
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();
    let (_, outcome, _) = turn(&mut a, "before").await;
    assert_eq!(outcome, TurnOutcome::Finished);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = openai_config(&format!("http://127.0.0.1:{port}/v1"));
    let reload = |yaml: &str| {
        std::fs::write(
            &daemon.config,
            vtuber_test_support::daemon::with_test_defaults(yaml),
        )
        .unwrap()
    };
    reload(&gone);
    assert!(matches!(
        b.request(Request::Reload).await.unwrap(),
        Ok(Reply::Reloaded { .. })
    ));
    let (_, outcome, _) = turn(&mut a, "during").await;
    let TurnOutcome::Failed { error } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(error.message.contains("cannot reach"), "{error:?}");
    assert!(error.hint.is_some(), "{error:?}");
    status(&mut b).await;

    reload(&good);
    assert!(matches!(
        b.request(Request::Reload).await.unwrap(),
        Ok(Reply::Reloaded { .. })
    ));
    let (_, outcome, text) = turn(&mut b, "after").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, "You said: after");
    let messages = stored(&mut b).await;
    assert_kept(&messages, "before", "You said: before");
    assert_kept(&messages, "after", "You said: after");
    assert_history_intact(&daemon);
}

/// The client whose turn it is goes away mid-reply: the turn runs to its end for the
/// others and is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_vanishes_mid_turn() {
    let reply = "one two three four five six seven eight nine ten";
    let (_mock, daemon) =
        daemon_with_mock(MockBehaviour::Reply(MockReply::text(reply).with_rate(20.0)));
    let mut b = daemon.client("b").await.unwrap();
    let mut a = daemon.client("a").await.unwrap();
    let turn_id = match a
        .request(Request::SendText {
            text: "tell me".into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
    {
        Ok(Reply::TurnAccepted { turn_id, .. }) => turn_id,
        other => panic!("{other:?}"),
    };
    // Gone once the reply is flowing.
    b.events_until(WAIT, |e| matches!(e, Event::Delta { .. }))
        .await
        .unwrap();
    drop(a);
    let (outcome, text) = ended(&mut b, turn_id).await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, reply);
    // Counted out once the daemon notices.
    let deadline = Instant::now() + WAIT;
    while status(&mut b).await.clients != 1 {
        assert!(
            Instant::now() < deadline,
            "the vanished client is still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_kept(&stored(&mut b).await, "tell me", reply);
    assert_history_intact(&daemon);
}

/// A client that says hello, subscribes and never reads: its socket fills, the daemon
/// stops writing to it and drops it with a log line after the stall limit (30 s), while
/// another client's turns go on at full speed.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_dropped_and_delays_no_one() {
    use std::io::{Read as _, Write as _};
    // Many small pieces: far more event bytes than a socket buffer holds.
    let long = "word ".repeat(60_000);
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::Script(vec![
        MockBehaviour::reply(long.trim_end()),
        MockBehaviour::reply("Quick one."),
    ]));
    let cookie = vtuber_shared::cookie::read_cookie(&daemon.socket).unwrap();
    let mut deaf = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    let hello = vtuber_shared::ClientFrame {
        id: 1,
        request: Request::Hello {
            protocol: vtuber_shared::PROTOCOL_VERSION,
            client: "deaf".into(),
            subscribe: true,
            audio: true,
            cookie: Some(cookie),
        },
    };
    deaf.write_all(&vtuber_shared::framing::encode(&hello).unwrap())
        .unwrap();
    let mut b = daemon.client("b").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while status(&mut b).await.clients != 2 {
        assert!(Instant::now() < deadline, "the deaf client was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let (_, outcome, _) = turn(&mut b, "a long one").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    let long_turn = started.elapsed();
    let started = Instant::now();
    let (_, outcome, text) = turn(&mut b, "a short one").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, "Quick one.");
    // Well inside the stall limit: the deaf client held no one up.
    assert!(
        long_turn < Duration::from_secs(25) && started.elapsed() < Duration::from_secs(10),
        "turns took {long_turn:?} and {:?}",
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    while !daemon.log_text().contains("stopped reading") {
        assert!(
            Instant::now() < deadline,
            "no log line for the deaf client:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its connection is closed: reading what was queued ends in EOF.
    deaf.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    deaf.read_to_end(&mut sink)
        .expect("the daemon closed the deaf client's connection");
    let deadline = Instant::now() + WAIT;
    while status(&mut b).await.clients != 1 {
        assert!(
            Instant::now() < deadline,
            "the deaf client is still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_history_intact(&daemon);
}

/// A stdio MCP server in Python that answers the handshake and `tools/list` properly,
/// then misbehaves on `tools/call` as `mode` says: `flood` writes 64 MiB without a line
/// end and then 200,000 lines of noise and never answers; `garbage` writes lines that
/// are not JSON-RPC (text, an array, a reply to an unknown id, a number as a message)
/// and then the real answer.
const MISBEHAVING_SERVER: &str = r#"
import json, sys, time
mode = sys.argv[1]
out = sys.stdout
def send(obj):
    out.write(json.dumps(obj) + "\n")
    out.flush()
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, mid = msg.get("method"), msg.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bad", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [{
            "name": "go", "description": "misbehaves",
            "inputSchema": {"type": "object", "properties": {}}}]}})
    elif method == "tools/call":
        if mode == "flood":
            chunk = "x" * 65536
            for _ in range(1024):
                out.write(chunk)
            out.write("\n")
            for i in range(200000):
                out.write("noise %d\n" % i)
            out.flush()
            time.sleep(3600)
        else:
            out.write("this is not JSON-RPC\n[1, 2, 3]\n42\n")
            send({"jsonrpc": "2.0", "id": 987654, "result": {"content": []}})
            send({"jsonrpc": "2.0", "method": "no/such/notification"})
            send({"jsonrpc": "2.0", "id": mid, "result": {
                "content": [{"type": "text", "text": "survived the garbage"}]}})
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
"#;

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs one turn that calls the misbehaving server's tool, then checks the five things.
async fn mcp_fault(mode: &str) -> (vtuber_shared::ToolOutcome, String) {
    use vtuber_test_support::mcp::{McpConfig, McpDaemon, ServerSpec, call};
    let mock = MockLlm::start_blocking(MockBehaviour::Script(vec![
        MockBehaviour::Reply(MockReply::tool_calls(vec![call(
            "c1",
            "bad__go",
            serde_json::json!({}),
        )])),
        MockBehaviour::reply("Tool done."),
        MockBehaviour::reply("Still here."),
    ]))
    .expect("mock");
    let server = ServerSpec::stdio("bad", "/usr/bin/python3", &["-c", MISBEHAVING_SERVER, mode])
        .sandbox_off()
        .allow_all();
    let mut config = McpConfig::new(&mock.base_url(), vec![server]);
    config.call_timeout_secs = 5;
    let daemon = McpDaemon::spawn(&config.to_yaml(), &[]).expect("daemon starts");
    let mut j = daemon.client("mcp").await.unwrap();
    j.wait_server_ready("bad", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_text()));
    let pid = daemon.pid().unwrap();
    let rss_before = rss_kib(pid);
    let mut a = daemon.daemon.client("a").await.unwrap();
    let mut b = daemon.daemon.client("b").await.unwrap();
    let (turn_id, outcome, text) = turn(&mut a, "use the tool").await;
    assert_eq!(outcome, TurnOutcome::Finished, "{}", daemon.log_text());
    assert_eq!(text, "Tool done.");
    let events = b
        .events_until(
            WAIT,
            |e| matches!(e, Event::TurnEnded { turn_id: t, .. } if *t == turn_id),
        )
        .await
        .unwrap();
    let (tool_outcome, summary) = events
        .into_iter()
        .find_map(|(_, e)| match e {
            Event::ToolCallEnded {
                outcome, summary, ..
            } => Some((outcome, summary)),
            _ => None,
        })
        .expect("the call ended");
    status(&mut b).await;
    let (_, outcome, text) = turn(&mut b, "and now?").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, "Still here.");
    assert_kept(&stored(&mut b).await, "and now?", "Still here.");
    // Nothing the server wrote was kept whole: memory and the log stay small.
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 200 * 1024, "the daemon grew by {grown} KiB");
    let log_len = std::fs::metadata(&daemon.daemon.log).unwrap().len();
    if log_len >= 8 << 20 {
        let log = daemon.log_text();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        panic!(
            "the log grew to {log_len} bytes in {} lines; its last ones: {tail:#?}",
            log.lines().count()
        );
    }
    assert_history_intact(&daemon.daemon);
    (tool_outcome, summary)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_server_flooding_stdout() {
    let (outcome, summary) = mcp_fault("flood").await;
    assert_eq!(outcome, vtuber_shared::ToolOutcome::TimedOut, "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_server_writing_invalid_json_rpc() {
    let (outcome, summary) = mcp_fault("garbage").await;
    assert_eq!(outcome, vtuber_shared::ToolOutcome::Ok, "{summary}");
    assert!(summary.contains("survived the garbage"), "{summary}");
}

/// A small tmpfs mounted over a folder for the length of a test (root only).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `Err` with mount's complaint when this machine does not allow it (a container
    /// without the capability).
    fn mount(at: &std::path::Path, size: &str) -> Result<Self, String> {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Self(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the daemon may still hold files there while it is being killed.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `path` until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).and_then(|()| f.sync_data()).is_err() {
            break;
        }
    }
    // And the last few bytes a partial chunk left.
    while f
        .write_all(&[0u8; 512])
        .and_then(|()| f.sync_data())
        .is_ok()
    {}
}

/// The data folder (history, pictures) fills up mid-conversation: the turn that cannot
/// be stored says so with a hint, nothing stored is damaged, and once space returns
/// the daemon stores turns again without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_folder_fills_up_and_recovers() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root (tests run as root in CI)");
        return;
    }
    let mock = MockLlm::start_blocking(MockBehaviour::echo_last_user()).expect("mock");
    let mut daemon = TestDaemon::new(&openai_config(&mock.base_url())).expect("home");
    let data = daemon.dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, "4m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here: {why}");
            return;
        }
    };
    daemon.start().expect("daemon starts");
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();
    let (_, outcome, _) = turn(&mut a, "before the disk fills").await;
    assert_eq!(outcome, TurnOutcome::Finished);

    let filler = data.join("filler");
    fill(&filler);
    let long = format!("while full {}", "many words ".repeat(2000));
    // Refused at once, or failed at the end: either way said, with a hint.
    let error = match a
        .request(Request::SendText {
            text: long.trim_end().into(),
            images: Vec::new(),
        })
        .await
        .expect("send_text answered")
    {
        Err(error) => error,
        Ok(Reply::TurnAccepted { turn_id, .. }) => match ended(&mut a, turn_id).await {
            (TurnOutcome::Failed { error }, _) => error,
            other => panic!("a turn that could not be stored: {other:?}"),
        },
        Ok(other) => panic!("{other:?}"),
    };
    assert_eq!(error.code, vtuber_shared::ErrorCode::Storage, "{error:?}");
    assert!(error.message.contains("full"), "{error:?}");
    assert!(
        error.hint.as_deref().is_some_and(|h| h.contains("disk")),
        "{error:?}"
    );
    status(&mut b).await;

    std::fs::remove_file(&filler).unwrap();
    let (_, outcome, text) = turn(&mut b, "after space returns").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, "You said: after space returns");
    let messages = stored(&mut b).await;
    assert_kept(
        &messages,
        "before the disk fills",
        "You said: before the disk fills",
    );
    assert_kept(
        &messages,
        "after space returns",
        "You said: after space returns",
    );
    assert_history_intact(&daemon);
    daemon.kill9().unwrap();
}

/// The speech engine fails on one sentence and hangs on another: the reply's text goes
/// on to its end, every sentence is delivered (those not spoken without audio), an
/// error event says speech failed and how to fix it, and the next turn speaks again.
#[tokio::test(flavor = "multi_thread")]
async fn tts_fails_on_one_sentence_and_hangs_on_another() {
    use vtuber_test_support::mock_speech::{MockSpeech, SpeechAnswer};
    let reply = "This first sentence is spoken fine. This broken sentence makes the engine fail. \
                 This hanging sentence never gets an answer. This last sentence is spoken fine again.";
    let mock = MockLlm::start_blocking(MockBehaviour::Script(vec![
        MockBehaviour::reply(reply),
        MockBehaviour::reply("And this one is spoken as usual."),
    ]))
    .expect("mock LLM");
    let tone = vtuberd::pcm::Pcm::new(vec![0.25; 8_000], 16_000).to_wav();
    let tts = MockSpeech::start(move |r| {
        let text = r.json()["text"].as_str().unwrap_or_default().to_owned();
        if text.contains("broken") {
            SpeechAnswer::json(500, &serde_json::json!({"message": "tts failed"}))
        } else if text.contains("hanging") {
            SpeechAnswer::audio("audio/wav", tone.clone()).streamed(64, Duration::from_secs(120))
        } else {
            SpeechAnswer::audio("audio/wav", tone.clone())
        }
    })
    .await
    .expect("mock speech");
    let config = format!(
        "{}character:\n  default: tester\nspeech:\n  enabled: true\n  tts:\n    gpt_sovits:\n      base_url: {}\n      timeout_secs: 2\naudio:\n  input: none\n  output: none\n  playback: clients\n",
        openai_config(&mock.base_url()),
        tts.url()
    );
    let mut daemon = TestDaemon::new(&config).expect("home");
    std::fs::write(
        daemon
            .dir
            .path()
            .join("config/vtuber/characters/tester.toml"),
        "name = \"Tester\"\npersona = \"You test.\"\n\n[voice]\ntts = \"gpt_sovits\"\nvoice = \"/refs/a.wav\"\nlanguage = \"en\"\n",
    )
    .unwrap();
    daemon.start().expect("daemon starts");
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();

    let (turn_id, outcome, text) = turn(&mut a, "speak").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, reply);
    let events = b
        .events_until(
            WAIT * 2,
            |e| matches!(e, Event::SpeechFinished { turn_id: t, .. } if *t == turn_id),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_text()));
    let sentences: Vec<(String, bool)> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Sentence { text, audio, .. } => Some((text.clone(), audio.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(sentences.len(), 4, "{sentences:#?}");
    for (text, spoken) in &sentences {
        let should = !(text.contains("broken") || text.contains("hanging"));
        assert_eq!(*spoken, should, "{sentences:#?}");
    }
    let errors: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Error { error } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("speech synthesis failed") && e.hint.is_some()),
        "{errors:#?}"
    );
    status(&mut b).await;
    let (_, outcome, _) = turn(&mut b, "again").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_kept(&stored(&mut b).await, "speak", reply);
    assert_history_intact(&daemon);
}

/// The current character's file is replaced by garbage while the daemon runs: the last
/// good character stays in force, connected clients get an error naming the file with a
/// hint, and turns go on with the old persona.
#[tokio::test(flavor = "multi_thread")]
async fn a_character_file_turned_to_garbage_keeps_the_last_good_one() {
    let (mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();
    let file = daemon.dir.path().join("config/vtuber/characters/kit.toml");
    std::fs::write(
        &file,
        "name = \"Kit\"\npersona = \"You are Kit, version one.\"\n",
    )
    .unwrap();
    a.events_until(WAIT, |e| {
        matches!(e, Event::CharactersReloaded { characters } if characters.iter().any(|c| c.id == "kit"))
    })
    .await
    .unwrap();
    a.request(Request::SwitchCharacter { name: "kit".into() })
        .await
        .unwrap()
        .unwrap();
    let before = status(&mut a).await.character;

    std::fs::write(&file, b"name = [\"unterminated\n\x00\xff persona =\n").unwrap();
    let events = a
        .events_until(
            WAIT,
            |e| matches!(e, Event::Error { error } if error.message.contains("kit")),
        )
        .await
        .unwrap_or_else(|e| panic!("no error for the broken file: {e:#}\n{}", daemon.log_text()));
    let Some((_, Event::Error { error })) = events.last() else {
        unreachable!()
    };
    assert_eq!(error.code, vtuber_shared::ErrorCode::Config, "{error:?}");
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("fix the file")),
        "{error:?}"
    );
    assert_eq!(status(&mut b).await.character, before);
    let (_, outcome, _) = turn(&mut b, "who are you?").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    let system = mock.requests().pop().unwrap().messages()[0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(system.contains("version one"), "{system}");
    assert_history_intact(&daemon);
}

/// The speech recognition service fails on one utterance: the client that sent it gets
/// the service's error with a hint, nothing is started or stored for it, and the next
/// utterance is heard and answered.
#[tokio::test(flavor = "multi_thread")]
async fn asr_fails_on_one_utterance() {
    use base64::Engine as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use vtuber_test_support::mock_speech::{MockSpeech, SpeechAnswer};
    let llm = MockLlm::start_blocking(MockBehaviour::echo_last_user()).expect("mock LLM");
    // Broken until the test says otherwise (the daemon retries a 500 on its own).
    let broken = std::sync::Arc::new(AtomicBool::new(true));
    let failing = broken.clone();
    let asr = MockSpeech::start(move |_| {
        if failing.load(Ordering::SeqCst) {
            return SpeechAnswer::json(
                500,
                &serde_json::json!({"err_code": "INTERNAL", "err_msg": "the recognizer crashed"}),
            );
        }
        SpeechAnswer::json(
            200,
            &serde_json::json!({"results": {"channels": [{"alternatives": [
                {"transcript": "Second try works.", "confidence": 0.9}
            ]}]}}),
        )
    })
    .await
    .expect("mock speech");
    let config = format!(
        "{}speech:\n  enabled: true\n  asr:\n    backend: deepgram\n    language: en\n    deepgram:\n      base_url: {}\n      api_key_env: E2E_ASR_KEY\naudio:\n  input: none\n  output: none\n  playback: clients\n",
        openai_config(&llm.base_url()),
        asr.url()
    );
    let mut daemon = TestDaemon::new(&config).expect("home");
    daemon
        .extra_env
        .push(("E2E_ASR_KEY".into(), "asr-key".into()));
    daemon.start().expect("daemon starts");
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();
    let tone: Vec<f32> = (0..8_000)
        .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.5)
        .collect();
    let wav = vtuberd::pcm::Pcm::new(tone, 16_000).to_wav();
    let send = Request::SendAudio {
        wav_base64: base64::engine::general_purpose::STANDARD.encode(&wav),
    };

    let error = match a.request(send.clone()).await.unwrap() {
        Err(e) => e,
        Ok(other) => panic!("a failed recognition was not reported: {other:?}"),
    };
    assert!(error.message.contains("recognizer crashed"), "{error:?}");
    assert!(error.hint.is_some(), "{error:?}");
    status(&mut b).await;
    broken.store(false, Ordering::SeqCst);

    let turn_id = match a.request(send).await.unwrap() {
        Ok(Reply::Heard {
            transcript,
            turn_id: Some(turn_id),
            ..
        }) => {
            assert_eq!(transcript, "Second try works.");
            turn_id
        }
        other => panic!("{other:?}"),
    };
    let (outcome, text) = ended(&mut b, turn_id).await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, "You said: Second try works.");
    let messages = stored(&mut b).await;
    assert_kept(
        &messages,
        "Second try works.",
        "You said: Second try works.",
    );
    assert_eq!(
        messages.iter().filter(|m| m.role == Role::User).count(),
        1,
        "{messages:#?}"
    );
    assert_history_intact(&daemon);
}

/// `conf.yaml` is replaced by garbage and the daemon told to reload (SIGHUP, as the
/// service manager does): the last good configuration stays in force, `status` carries
/// the error until a good file is reloaded.
#[tokio::test(flavor = "multi_thread")]
async fn conf_yaml_turned_to_garbage_keeps_the_last_good_one() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::echo_last_user());
    let mut b = daemon.client("b").await.unwrap();
    let good = std::fs::read(&daemon.config).unwrap();
    std::fs::write(&daemon.config, b"llm: [\x00\xff\n  - {{{\n: :\n").unwrap();
    let pid = daemon.pid().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + WAIT;
    let error = loop {
        if let Some(e) = status(&mut b).await.reload_error {
            break e;
        }
        assert!(Instant::now() < deadline, "no reload error in status");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.message.contains("conf.yaml"), "{error:?}");
    assert!(error.hint.is_some(), "{error:?}");
    // Still the old LLM settings: the turn works.
    let (_, outcome, text) = turn(&mut b, "still working?").await;
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, "You said: still working?");

    std::fs::write(&daemon.config, good).unwrap();
    assert!(matches!(
        b.request(Request::Reload).await.unwrap(),
        Ok(Reply::Reloaded { .. })
    ));
    assert!(status(&mut b).await.reload_error.is_none());
    assert_history_intact(&daemon);
}
