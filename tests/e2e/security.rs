//! Security checks of the reliability suite (issue 19) that the other files do not
//! already make: a client of another user is refused on the socket even when the file
//! modes would let it in, and after a run with a known LLM API key and an MCP secret,
//! neither appears anywhere under the daemon's folders (config, data, state, runtime,
//! log) nor in any socket or WebSocket stream; a sandboxed tool server cannot touch
//! `~/.ssh`. The forged `Origin`, the rebinding `Host` and the token are in `web.rs`;
//! the rest of the tool-server sandbox in `mcp.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use vtuber_shared::{Reply, Request, TurnOutcome};
use vtuber_test_support::daemon::TestDaemon;
use vtuber_test_support::mcp::{
    McpConfig, McpDaemon, ServerSpec, call, realtime_us, tool_result, tool_script, turn_outcome,
};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm};

use crate::common::*;
use crate::web::Ws;

/// The uid tests drop to: `nobody`.
const NOBODY: u32 = 65534;

/// Runs a Python snippet as `nobody` that connects to `socket`, says hello, and prints
/// what came back (or the error's class).
fn as_nobody(socket: &Path) -> std::process::Output {
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", type(e).__name__, e.errno)
    sys.exit(0)
try:
    s.sendall(b'{"id":1,"request":{"type":"hello","protocol":1,"client":"intruder"}}\n')
except OSError:
    pass  # refused before it was read: what came back says why
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except OSError:
        break  # closed on it (a reset once the refusal was read): the data says why
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace"))
"#;
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            // The system's: a per-user Python (pyenv under /root) is out of its reach.
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(socket)
        .output()
        .expect("setpriv runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_of_another_user_is_refused_on_the_socket() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to `nobody` needs root (tests run as root in CI)");
        return;
    }
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));

    // The folder modes alone keep it out.
    let out = as_nobody(&daemon.socket);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("PermissionError"), "{said}");

    // Opened wide (a mistaken chmod, a shared folder): the daemon itself refuses, by the
    // peer's uid, before any request is read, and says why.
    let root = daemon.dir.path();
    for dir in daemon.socket.ancestors().skip(1) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        if dir == root {
            break;
        }
    }
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&daemon.socket);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let first = said.lines().next().unwrap_or_default();
    let frame: Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("not a refusal frame ({e}): {said}"));
    assert_eq!(frame["error"]["code"], "handshake", "{said}");
    assert!(
        frame["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another user")),
        "{said}"
    );
    assert!(frame["error"]["hint"].as_str().is_some(), "{said}");
    // Only the refusal: no welcome, no events.
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon
        .log_text()
        .contains("refused a client of another user")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            daemon.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The owner is served as before.
    let mut c = daemon.client("owner").await.unwrap();
    assert!(matches!(
        c.request(Request::Status).await.unwrap(),
        Ok(Reply::Status(_))
    ));
}

/// Every file under `root` that holds `needle`, with the first place it shows.
fn files_containing(root: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                files += 1;
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    assert!(files > 3, "only {files} files under {}", root.display());
    hits
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_and_an_mcp_secret_leave_no_trace_on_disk_or_in_streams() {
    let stamp = format!("{:x}-{}", realtime_us(), std::process::id());
    let api_key = format!("sk-llm-key-{stamp}");
    let mcp_secret = format!("mcp-secret-{stamp}");
    let mock = MockLlm::start_blocking(tool_script(
        vec![
            call("has", "test__env_has", json!({"name": "API_TOKEN"})),
            call("echo", "test__echo", json!({"text": "harmless"})),
        ],
        "All checked.",
    ))
    .expect("mock LLM starts");
    let server = ServerSpec::test_server()
        .allow_all()
        .env(&[("API_TOKEN", "${E2E_MCP_SECRET}")]);
    let mut config = McpConfig::new(&mock.base_url(), vec![server]).to_value();
    config["llm"]["api_key_env"] = json!("E2E_LLM_KEY");
    let daemon = McpDaemon::spawn(
        &config.to_string(),
        &[("E2E_LLM_KEY", &api_key), ("E2E_MCP_SECRET", &mcp_secret)],
    )
    .expect("daemon starts");
    let mut client = daemon.client("secrets").await.expect("client");
    client
        .wait_server_ready("test", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_text()));
    let base = web_url(&daemon.daemon).await;
    let mut ws = Ws::connect(&base).await;
    let mut ws_seen: Vec<Value> = ws.greeting().await;

    let turn_id = client.send_text("check everything").await.unwrap();
    let events = client.finish_turn(turn_id, WAIT).await.unwrap();
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    // Both secrets were really used: the key reached the LLM, the secret the server.
    let requests = mock.requests();
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {api_key}").as_str())
    );
    assert_eq!(tool_result(&requests[1], "has"), "API_TOKEN is set");
    // Everything the page gets: the turn as it streamed, then the stored history.
    ws.send(json!({"type": "fetch-history-list"})).await;
    ws_seen.extend(ws.until(|m| m["type"] == "history-list").await);
    let uid = ws_seen.last().unwrap()["histories"][0]["uid"].clone();
    ws.send(json!({"type": "fetch-and-set-history", "history_uid": uid}))
        .await;
    ws_seen.extend(ws.until(|m| m["type"] == "history-data").await);
    let history = ws_seen.last().unwrap().to_string();
    assert!(history.contains("All checked."), "{history}");
    // And the socket's view of the audit and stored turn.
    client.audit(None).await.unwrap();
    let mut c = daemon.daemon.client("reader").await.unwrap();
    let stored = conversation_messages(&mut c, 1).await;
    assert!(stored.len() >= 2, "{stored:?}");

    // Stopped cleanly, so everything it meant to write is written.
    let mut daemon = daemon;
    assert!(daemon.daemon.terminate().unwrap().success());
    for secret in [&api_key, &mcp_secret] {
        let hits = files_containing(daemon.daemon.dir.path(), secret);
        assert!(hits.is_empty(), "{secret} found in {hits:?}");
        for frame in &client.raw {
            assert!(
                !frame.contains(secret.as_str()),
                "in a socket frame: {frame}"
            );
        }
        for m in &ws_seen {
            assert!(
                !m.to_string().contains(secret.as_str()),
                "in a WebSocket message: {m}"
            );
        }
        assert!(!format!("{stored:?}").contains(secret.as_str()));
    }
    // The search finds what is there.
    std::fs::write(daemon.daemon.dir.path().join("data/canary"), &api_key).unwrap();
    assert_eq!(
        files_containing(daemon.daemon.dir.path(), &api_key).len(),
        1
    );
}

/// A sandboxed stdio tool server, granted one folder, cannot read the user's SSH key
/// (`~/.ssh` of the daemon's home) nor add to `authorized_keys`, while it works in its
/// folder.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_tool_server_cannot_touch_ssh_keys() {
    if vtuber_test_support::mcp::landlock_abi() == 0 {
        eprintln!("skipped: this kernel has no Landlock, so tool servers run unconfined");
        return;
    }
    let granted = tempfile::tempdir().unwrap();
    let work = granted.path().join("notes.txt");
    std::fs::write(&work, "granted text").unwrap();
    let mock = MockLlm::start_blocking(MockBehaviour::reply("not yet")).expect("mock LLM");
    let server =
        ServerSpec::test_server()
            .allow_all()
            .sandbox(&[granted.path()], &[granted.path()], false);
    let config = McpConfig::new(&mock.base_url(), vec![server]).to_value();
    let home = TestDaemon::new(&config.to_string()).expect("daemon home");
    // The daemon's HOME is its folder: its ~/.ssh.
    let ssh = home.dir.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = ssh.join("id_ed25519");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY----- canary").unwrap();
    let authorized = ssh.join("authorized_keys");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    mock.set_behaviour(tool_script(
        vec![
            call("in", "test__read_file", json!({"path": path(&work)})),
            call("key", "test__read_file", json!({"path": path(&key)})),
            call(
                "auth",
                "test__write_file",
                json!({"path": path(&authorized), "text": "ssh-ed25519 AAAA intruder"}),
            ),
        ],
        "Probed.",
    ));
    let daemon = McpDaemon::start(home, &[]).expect("daemon starts");
    let mut client = daemon.client("ssh").await.expect("client");
    client
        .wait_server_ready("test", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_text()));
    let turn_id = client.send_text("probe").await.unwrap();
    let events = client.finish_turn(turn_id, WAIT).await.unwrap();
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let asked = &mock.requests()[1];
    assert_eq!(tool_result(asked, "in"), "granted text");
    let read = tool_result(asked, "key");
    assert!(read.contains("ermission denied"), "{read}");
    assert!(!read.contains("canary"), "{read}");
    let wrote = tool_result(asked, "auth");
    assert!(wrote.contains("cannot write"), "{wrote}");
    assert!(!authorized.exists(), "authorized_keys was written");
}
