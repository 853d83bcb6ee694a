//! Runs the `vtuber` binary against a scripted fake daemon on a temp socket, checking
//! what users and scripts see: output, messages and exit statuses.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use vtuber_shared::framing;
use vtuber_shared::{
    ClientFrame, DaemonState, ErrorBody, ErrorCode, Event, LlmInfo, ModelLoad, Outcome,
    PROTOCOL_VERSION, Reply, Request, ServerFrame, Status, TurnOutcome,
};

fn status() -> Status {
    Status {
        state: DaemonState::Idle,
        character: "aria".into(),
        llm: LlmInfo {
            backend: "openai_compatible".into(),
            model: "test-model".into(),
        },
        model_load: ModelLoad::Ready,
        clients: 1,
        daemon_version: "0.1.0".into(),
        uptime_secs: 65.0,
        pid: 31337,
        conversation_id: Some(2),
        socket: "/tmp/fake.sock".into(),
        config_file: None,
        last_error: None,
        voice: None,
        web_url: None,
        web_auth: None,
        web_error: None,
        avatar_error: None,
        config_files: Vec::new(),
        reload_error: None,
        needs_restart: Vec::new(),
        cpu: None,
    }
}

/// What the fake daemon answers to one request: frames to write, in order.
type Script = Arc<dyn Fn(u64, &Request) -> Vec<ServerFrame> + Send + Sync>;

fn ok(id: u64, reply: Reply) -> ServerFrame {
    ServerFrame::Response {
        id: Some(id),
        outcome: Outcome::Ok(reply),
    }
}

fn event(seq: u64, event: Event) -> ServerFrame {
    ServerFrame::Event { seq, event }
}

async fn serve_connection(stream: Stream, script: Script) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(frame) = framing::decode::<ClientFrame>(line.as_bytes()) else {
            return;
        };
        let out = match &frame.request {
            Request::Hello { .. } => vec![ok(
                frame.id,
                Reply::Welcome {
                    protocol: PROTOCOL_VERSION,
                    daemon_version: "0.1.0".into(),
                    status: status(),
                    last_seq: 0,
                },
            )],
            request => script(frame.id, request),
        };
        for f in out {
            let bytes = framing::encode(&f).expect("encode");
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
}

/// Serves `script` on `dir/d.sock` for as long as the test runs.
fn fake_daemon(dir: &Path, script: Script) -> PathBuf {
    let path = dir.join("d.sock");
    let name = path.clone().to_fs_name::<GenericFilePath>().expect("name");
    let listener = ListenerOptions::new()
        .name(name)
        .create_tokio()
        .expect("listen");
    tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            tokio::spawn(serve_connection(stream, script.clone()));
        }
    });
    path
}

async fn vtuber(dir: &Path, socket: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vtuber"));
    cmd.args(args)
        .env("VTUBER_SOCKET", socket)
        .env("XDG_RUNTIME_DIR", dir)
        .env("VTUBER_DATA_DIR", dir.join("data"))
        .env_remove("VTUBER_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run vtuber");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .await
            .expect("stdin");
    }
    tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("vtuber finished in time")
        .expect("vtuber output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn no_script() -> Script {
    Arc::new(|_, r| panic!("unexpected request {r:?}"))
}

#[tokio::test]
async fn query_commands_do_not_start_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let out = vtuber(dir.path(), &socket, &["status"], None).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr),
        "vtuberd is not running (start it with `vtuber daemon start` or `vtuber chat`)\n"
    );
    let out = vtuber(dir.path(), &socket, &["history", "list"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not running"));
    let out = vtuber(dir.path(), &socket, &["daemon", "stop"], None).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "stopping a stopped daemon is fine"
    );
    assert!(!socket.exists());
}

#[tokio::test]
async fn status_json_is_the_daemons_status() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_daemon(
        dir.path(),
        Arc::new(|id, r| match r {
            Request::Status => vec![ok(id, Reply::Status(status()))],
            other => panic!("unexpected {other:?}"),
        }),
    );
    let out = vtuber(dir.path(), &socket, &["status", "--json"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, status());
    assert_eq!(
        text(&out.stdout).trim_end(),
        serde_json::to_string_pretty(&status()).unwrap()
    );

    let out = vtuber(dir.path(), &socket, &["status"], None).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("llm           openai_compatible · test-model"),
        "{table}"
    );
    assert!(table.contains("pid 31337, up 1m 05s"), "{table}");
}

/// A turn whose events start before the acceptance, amid another client's turn.
fn say_script(outcome: TurnOutcome) -> Script {
    Arc::new(move |id, r| match r {
        Request::SendText { text, .. } => {
            let mut frames = vec![
                event(
                    1,
                    Event::TurnStarted {
                        turn_id: 8,
                        conversation_id: 2,
                        text: text.clone(),
                        origin: "vtuber-say".into(),
                    },
                ),
                event(
                    2,
                    Event::Delta {
                        turn_id: 8,
                        text: "You said: ".into(),
                    },
                ),
                ok(
                    id,
                    Reply::TurnAccepted {
                        turn_id: 8,
                        conversation_id: 2,
                    },
                ),
                event(
                    3,
                    Event::Delta {
                        turn_id: 99,
                        text: "not mine".into(),
                    },
                ),
                event(
                    4,
                    Event::Delta {
                        turn_id: 8,
                        text: text.clone(),
                    },
                ),
            ];
            frames.push(event(
                5,
                Event::TurnEnded {
                    turn_id: 8,
                    outcome: outcome.clone(),
                    text: format!("You said: {text}"),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            ));
            frames
        }
        other => panic!("unexpected {other:?}"),
    })
}

#[tokio::test]
async fn say_prints_its_reply_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_daemon(dir.path(), say_script(TurnOutcome::Finished));
    let out = vtuber(dir.path(), &socket, &["say", "hello", "世界"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "You said: hello 世界\n");

    let out = vtuber(dir.path(), &socket, &["say", "-"], Some("from\nstdin\n")).await;
    assert_eq!(text(&out.stdout), "You said: from\nstdin\n");

    let out = vtuber(dir.path(), &socket, &["say", "--json", "x"], None).await;
    let kinds: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.get("event").map_or_else(
                || "response".to_owned(),
                |e| e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        ["response", "turn_started", "delta", "delta", "turn_ended"]
    );
}

#[tokio::test]
async fn say_reports_failed_and_interrupted_turns() {
    let dir = tempfile::tempdir().unwrap();
    let failed = TurnOutcome::Failed {
        error: ErrorBody::new(ErrorCode::Llm, "the LLM server refused")
            .with_hint("check llm.base_url"),
    };
    let socket = fake_daemon(dir.path(), say_script(failed));
    let out = vtuber(dir.path(), &socket, &["say", "hi"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: the LLM server refused (check llm.base_url)\n"
    );

    let dir2 = tempfile::tempdir().unwrap();
    let socket = fake_daemon(dir2.path(), say_script(TurnOutcome::Interrupted));
    let out = vtuber(dir2.path(), &socket, &["say", "hi"], None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("interrupted"));
}

#[tokio::test]
async fn daemon_errors_carry_their_hint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_daemon(
        dir.path(),
        Arc::new(|id, r| match r {
            Request::DeleteConversation { id: 5 } => vec![ServerFrame::Response {
                id: Some(id),
                outcome: Outcome::Err(
                    ErrorBody::new(ErrorCode::NotFound, "conversation 5 does not exist")
                        .with_hint("see `vtuber history list`"),
                ),
            }],
            other => panic!("unexpected {other:?}"),
        }),
    );
    let out = vtuber(dir.path(), &socket, &["history", "delete", "5"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: conversation 5 does not exist (see `vtuber history list`)\n"
    );
}

#[tokio::test]
async fn daemon_start_refuses_when_one_is_running() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_daemon(dir.path(), no_script());
    let out = vtuber(dir.path(), &socket, &["daemon", "start"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: vtuberd is already running (pid 31337)\n"
    );
}

/// A stand-in daemon program that logs its arguments and fails at once.
///
/// Written by a `sh` child rather than by this process: a write handle open here
/// could leak into a process another test forks at that moment, and exec'ing the
/// file would then fail with "text file busy".
fn failing_daemon(dir: &Path) -> PathBuf {
    let path = dir.join("fake-vtuberd");
    let script =
        "#!/bin/sh\necho \"args: $*\"\necho 'config.yaml:3: unknown field `lmm`' >&2\nexit 1\n";
    let mut child = std::process::Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run sh");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), script.as_bytes())
        .expect("write script");
    assert!(child.wait().expect("sh").success());
    path
}

#[tokio::test]
async fn a_daemon_that_fails_to_start_shows_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let program = failing_daemon(dir.path());
    let socket = dir.path().join("s.sock");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vtuber"));
    let out = cmd
        .args(["--config", "/etc/x.yaml", "say", "hi"])
        .env("VTUBERD_BIN", &program)
        .env("VTUBER_SOCKET", &socket)
        .env("VTUBER_DATA_DIR", dir.path().join("data"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("vtuberd exited during startup"), "{err}");
    assert!(
        err.contains(&format!(
            "args: --socket {} --config /etc/x.yaml",
            socket.display()
        )),
        "{err}"
    );
    assert!(err.contains("unknown field `lmm`"), "{err}");
    assert!(dir.path().join("data/vtuberd.log").is_file());
}

#[tokio::test]
async fn config_check_passes_the_daemons_verdict_through() {
    let dir = tempfile::tempdir().unwrap();
    let program = failing_daemon(dir.path());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vtuber"))
        .args(["config", "check", "/tmp/c.yaml"])
        .env("VTUBERD_BIN", &program)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "args: --check-config --config /tmp/c.yaml\n"
    );
    assert!(text(&out.stderr).contains("unknown field"));
}

#[tokio::test]
async fn completions_and_man_page_print() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.sock");
    let out = vtuber(dir.path(), &none, &["completions", "fish"], None).await;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("complete -c vtuber"));
    let out = vtuber(dir.path(), &none, &["man"], None).await;
    assert!(text(&out.stdout).starts_with(".ie \\n(.g .ds Aq"));
    let out_dir = dir.path().join("man");
    let out = vtuber(
        dir.path(),
        &none,
        &["man", "-o", out_dir.to_str().unwrap()],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out_dir.join("vtuber.1").is_file());
    assert!(out_dir.join("vtuber-history-export.1").is_file());
}

/// A turn whose one tool call asks for approval; `approved` says whether the
/// script expects an `approve_tool_call` (allow once) before it goes on.
fn tool_script(approved: bool) -> Script {
    let approval = Event::ApprovalRequested {
        request_id: 4,
        turn_id: 8,
        call_id: "call-1".into(),
        server: "time".into(),
        tool: "now".into(),
        description: "The current time".into(),
        arguments: serde_json::json!({"tz": "UTC"}),
        timeout_secs: 30,
    };
    let rest = move |resolution, outcome, summary: &str| {
        vec![
            event(
                2,
                Event::ApprovalResolved {
                    request_id: 4,
                    resolution,
                },
            ),
            event(
                3,
                Event::ToolCallStarted {
                    turn_id: 8,
                    call_id: "call-1".into(),
                    server: "time".into(),
                    tool: "now".into(),
                    arguments: serde_json::json!({"tz": "UTC"}),
                },
            ),
            event(
                4,
                Event::ToolCallEnded {
                    turn_id: 8,
                    call_id: "call-1".into(),
                    outcome,
                    duration_ms: 5,
                    summary: summary.into(),
                },
            ),
            event(
                5,
                Event::TurnEnded {
                    turn_id: 8,
                    outcome: TurnOutcome::Finished,
                    text: "It is noon.".into(),
                    usage: None,
                    cut: None,
                    text_omitted: false,
                },
            ),
        ]
    };
    Arc::new(move |id, r| match r {
        Request::SendText { .. } => {
            let mut frames = vec![
                ok(
                    id,
                    Reply::TurnAccepted {
                        turn_id: 8,
                        conversation_id: 2,
                    },
                ),
                event(1, approval.clone()),
            ];
            if !approved {
                frames.extend(rest(
                    vtuber_shared::ApprovalResolution::TimedOut,
                    vtuber_shared::ToolOutcome::TimedOut,
                    "",
                ));
            }
            frames
        }
        Request::ApproveToolCall {
            request_id: 4,
            decision: vtuber_shared::ApprovalDecision::AllowOnce,
        } if approved => {
            let mut frames = vec![ok(id, Reply::Pong)];
            frames.extend(rest(
                vtuber_shared::ApprovalResolution::Approved,
                vtuber_shared::ToolOutcome::Ok,
                "noon",
            ));
            frames
        }
        other => panic!("unexpected {other:?}"),
    })
}

#[tokio::test]
async fn say_approve_answers_its_tool_calls_and_keeps_stdout_clean() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_daemon(dir.path(), tool_script(true));
    let out = vtuber(dir.path(), &socket, &["say", "--approve", "time?"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "It is noon.\n");
    assert_eq!(
        text(&out.stderr),
        "allowing tool time · now {\"tz\":\"UTC\"} once (--approve)\n\
         ⚙ time · now {\"tz\":\"UTC\"}\n\
         ✓ time · now 5 ms · noon\n"
    );
}

#[tokio::test]
async fn say_without_a_terminal_leaves_approval_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let socket = fake_daemon(dir.path(), tool_script(false));
    let out = vtuber(dir.path(), &socket, &["say", "time?"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "It is noon.\n");
    let err = text(&out.stderr);
    assert!(err.contains("needs approval"), "{err}");
    assert!(err.contains("⏱ time · now timed out"), "{err}");
}

#[tokio::test]
async fn mcp_import_prints_yaml_and_writes_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.sock");
    let file = dir.path().join("claude.json");
    std::fs::write(
        &file,
        r#"{"mcpServers": {"github": {"command": "npx", "args": ["-y", "server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_xyz"}}}}"#,
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let out = vtuber(dir.path(), &none, &["mcp", "import", file_arg], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "mcp:\n  servers:\n    github:\n      command: \"npx\"\n      args: [\"-y\", \"server-github\"]\n      env:\n        GITHUB_PERSONAL_ACCESS_TOKEN: \"${GITHUB_PERSONAL_ACCESS_TOKEN}\"\n      enabled: true\n"
    );
    assert!(text(&out.stderr).contains("export GITHUB_PERSONAL_ACCESS_TOKEN"));

    let config = dir.path().join("conf.yaml");
    std::fs::write(&config, "character: aria\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let args = ["--config", config_arg, "mcp", "import", file_arg, "--write"];
    let out = vtuber(dir.path(), &none, &args, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.starts_with("character: aria\n\n"), "{written}");
    assert!(written.contains("    github:\n"), "{written}");
    assert!(!written.contains("ghp_xyz"));
    let out = vtuber(dir.path(), &none, &args, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("merge"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
}
