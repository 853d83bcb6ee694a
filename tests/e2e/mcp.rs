//! MCP tools through the real daemon: the mock LLM asks for tools, vtuberd runs them on
//! `vtuber-mcp-test-server` (or a real third-party server) and sends the results back.
//! Covers the tool loop, concurrency, timeouts, crashes and restarts, policy and
//! approval, sandboxing, the audit log and secret hygiene.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{WAIT, run, stderr, stdout};
use serde_json::{Value, json};
use vtuber_shared::{
    ApprovalDecision, ApprovalResolution, Event, McpServerState, Request, SandboxLevel,
    ToolOutcome, ToolPolicy, TurnOutcome,
};
use vtuber_test_support::mcp::{
    JsonClient, McpConfig, McpDaemon, ServerSpec, assert_no_secret, call, landlock_abi,
    test_server_bin, tool_result, tool_script, turn_outcome,
};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

struct Setup {
    mock: MockLlm,
    daemon: McpDaemon,
    client: JsonClient,
}

/// A mock LLM with `behaviour`, a daemon with `servers` (config adjusted by `tweak`,
/// extra environment `env`), and a client; every server is ready.
async fn setup_with(
    servers: Vec<ServerSpec>,
    behaviour: MockBehaviour,
    env: &[(&str, &str)],
    tweak: impl FnOnce(&mut McpConfig),
) -> Setup {
    let mock = MockLlm::start_blocking(behaviour).expect("mock LLM starts");
    let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
    let mut config = McpConfig::new(&mock.base_url(), servers);
    tweak(&mut config);
    let daemon = McpDaemon::spawn(&config.to_yaml(), env).expect("daemon starts");
    let mut client = daemon.client("mcp-test").await.expect("client connects");
    for name in names {
        if let Err(e) = client.wait_server_ready(&name, WAIT).await {
            panic!("{e:#}\n--- daemon log ---\n{}", daemon.log_text());
        }
    }
    Setup {
        mock,
        daemon,
        client,
    }
}

async fn setup(servers: Vec<ServerSpec>, behaviour: MockBehaviour) -> Setup {
    setup_with(servers, behaviour, &[], |_| {}).await
}

/// One tool call as the events tell it.
#[derive(Debug, Clone, Default)]
struct CallSeen {
    server: String,
    tool: String,
    arguments: Value,
    outcome: Option<ToolOutcome>,
    summary: String,
    duration_ms: u64,
    progress: usize,
}

/// Tool calls in `events`, by call id.
fn calls_in(events: &[Event]) -> HashMap<String, CallSeen> {
    let mut out: HashMap<String, CallSeen> = HashMap::new();
    for e in events {
        match e {
            Event::ToolCallStarted {
                call_id,
                server,
                tool,
                arguments,
                ..
            } => {
                let c = out.entry(call_id.clone()).or_default();
                c.server = server.clone();
                c.tool = tool.clone();
                c.arguments = arguments.clone();
            }
            Event::ToolCallProgress { call_id, .. } => {
                out.entry(call_id.clone()).or_default().progress += 1;
            }
            Event::ToolCallEnded {
                call_id,
                outcome,
                duration_ms,
                summary,
                ..
            } => {
                let c = out.entry(call_id.clone()).or_default();
                c.outcome = Some(*outcome);
                c.summary = summary.clone();
                c.duration_ms = *duration_ms;
            }
            _ => {}
        }
    }
    out
}

/// The only call of `tool` in `events`.
fn call_of(events: &[Event], tool: &str) -> CallSeen {
    let calls: Vec<CallSeen> = calls_in(events)
        .into_values()
        .filter(|c| c.tool == tool)
        .collect();
    assert_eq!(calls.len(), 1, "calls of {tool}: {events:#?}");
    calls[0].clone()
}

/// The call with this id; refused calls have no `ToolCallStarted`, only an end.
fn call_with_id(events: &[Event], id: &str) -> CallSeen {
    calls_in(events)
        .remove(id)
        .unwrap_or_else(|| panic!("no call {id}: {events:#?}"))
}

/// Sends `text` and collects the turn's events.
async fn turn(s: &mut Setup, text: &str) -> Vec<Event> {
    let id = s.client.send_text(text).await.expect("turn accepted");
    match s.client.finish_turn(id, WAIT).await {
        Ok(events) => events,
        Err(e) => panic!("{e:#}\n--- daemon log ---\n{}", s.daemon.log_text()),
    }
}

/// Sends `text`, answers the first approval request with `decision` (or not at all),
/// and collects the turn's events.
async fn turn_with_approval(
    s: &mut Setup,
    text: &str,
    decision: Option<ApprovalDecision>,
) -> Vec<Event> {
    let id = s.client.send_text(text).await.expect("turn accepted");
    let mut events = s
        .client
        .events_until(WAIT, |e| {
            matches!(e, Event::ApprovalRequested { .. })
                || matches!(e, Event::TurnEnded { turn_id, .. } if *turn_id == id)
        })
        .await
        .expect("approval requested");
    let Some(Event::ApprovalRequested {
        request_id,
        turn_id,
        ..
    }) = events.last().cloned()
    else {
        panic!("the turn ended without asking: {events:#?}");
    };
    assert_eq!(turn_id, id);
    if let Some(decision) = decision {
        let reply = s
            .client
            .approve(request_id, decision)
            .await
            .expect("approval answered");
        assert_ne!(reply["accepted"], json!(false), "{reply}");
    }
    events.extend(s.client.finish_turn(id, WAIT).await.expect("turn ends"));
    events
}

fn resolution(events: &[Event]) -> ApprovalResolution {
    events
        .iter()
        .find_map(|e| match e {
            Event::ApprovalResolved { resolution, .. } => Some(*resolution),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no approval_resolved: {events:#?}"))
}

fn approvals_asked(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::ApprovalRequested { .. }))
        .count()
}

// --- (a) the whole loop ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn say_runs_a_tool_and_prints_the_final_answer() {
    let s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            vec![call("c1", "test__add", json!({"a": 2, "b": 3}))],
            "Two plus three is five.",
        ),
    )
    .await;
    let mut cmd = s.daemon.daemon.vtuber();
    cmd.args(["say", "what is 2 + 3?"]);
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "stderr: {}\n{}",
        stderr(&out),
        s.daemon.log_text()
    );
    assert_eq!(stdout(&out).trim_end(), "Two plus three is five.");

    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 2, "one request per step");
    // The tools were offered under their exposed names.
    let offered = reqs[0].tool_names();
    assert!(offered.contains(&"test__add"), "{offered:?}");
    assert!(offered.contains(&"test__echo"), "{offered:?}");
    // The assistant's call and its result went back.
    assert!(
        reqs[1]
            .messages()
            .iter()
            .any(|m| m["role"] == "assistant" && m["tool_calls"][0]["id"] == "c1"),
        "{:#?}",
        reqs[1].messages()
    );
    assert_eq!(tool_result(&reqs[1], "c1").trim(), "5");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_events_reach_clients() {
    let mut s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            vec![call("c1", "test__echo", json!({"text": "hello tools"}))],
            "Done.",
        ),
    )
    .await;
    let events = turn(&mut s, "echo please").await;
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let c = call_of(&events, "echo");
    assert_eq!(c.server, "test");
    assert_eq!(c.arguments, json!({"text": "hello tools"}));
    assert_eq!(c.outcome, Some(ToolOutcome::Ok), "{c:?}");
    assert!(c.summary.contains("hello tools"), "{c:?}");
    assert!(!c.summary.contains('\n'), "one-line summary: {c:?}");
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            Event::Delta { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Done.");
}

// --- (b) concurrency and progress -----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn calls_of_one_step_run_concurrently() {
    let mut s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            (1..=3)
                .map(|i| call(&format!("s{i}"), "test__slow", json!({"ms": 300})))
                .collect(),
            "All done.",
        ),
    )
    .await;
    let id = s.client.send_text("three slow things").await.unwrap();
    let mut first_start = None;
    let mut last_end = None;
    let mut ended = 0;
    loop {
        let (_, ev) = s.client.next_event(WAIT).await.unwrap();
        let now = Instant::now();
        match ev {
            Event::ToolCallStarted { .. } if first_start.is_none() => first_start = Some(now),
            Event::ToolCallEnded { outcome, .. } => {
                assert_eq!(outcome, ToolOutcome::Ok);
                ended += 1;
                last_end = Some(now);
            }
            Event::TurnEnded { turn_id, .. } if turn_id == id => break,
            _ => {}
        }
    }
    assert_eq!(ended, 3);
    let span = last_end.unwrap() - first_start.unwrap();
    assert!(
        span < Duration::from_millis(700),
        "three 300 ms calls took {span:?}: not concurrent"
    );
    assert!(span >= Duration::from_millis(300), "{span:?}");
    let reqs = s.mock.requests();
    for i in 1..=3 {
        assert_eq!(
            tool_result(&reqs[1], &format!("s{i}")),
            "slept 300 ms in 1 steps"
        );
    }
}

// Guards the token routing: rmcp's `send_request` replaces `_meta.progressToken` with
// its own, so the daemon must route by the token the request handle reports.
#[tokio::test(flavor = "multi_thread")]
async fn progress_notifications_reach_clients() {
    let mut s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            vec![call("p1", "test__slow", json!({"ms": 300, "steps": 3}))],
            "Done.",
        ),
    )
    .await;
    let events = turn(&mut s, "slowly").await;
    let progress: Vec<(f64, Option<f64>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::ToolCallProgress {
                progress, total, ..
            } => Some((*progress, *total)),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "no progress events: {events:#?}");
    assert!(
        progress.iter().all(|(_, t)| *t == Some(3.0)),
        "{progress:?}"
    );
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0), "{progress:?}");
    assert_eq!(call_of(&events, "slow").progress, progress.len());
}

// --- (c) timeouts ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn slow_calls_time_out_and_are_cancelled() {
    let mut s = setup(
        vec![ServerSpec::test_server().timeout_secs(1)],
        tool_script(
            vec![call("t1", "test__slow", json!({"ms": 5000, "steps": 50}))],
            "That took too long.",
        ),
    )
    .await;
    let t = Instant::now();
    let events = turn(&mut s, "take your time").await;
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let c = call_of(&events, "slow");
    assert_eq!(c.outcome, Some(ToolOutcome::TimedOut), "{c:?}");
    assert!(
        (900..3000).contains(&c.duration_ms),
        "duration {} ms",
        c.duration_ms
    );
    // The LLM was told it failed, not given a result.
    let reqs = s.mock.requests();
    let result = tool_result(&reqs[1], "t1");
    assert!(!result.is_empty() && !result.contains("slept"), "{result}");
    // The server saw the cancellation (its stderr goes to the daemon's log).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.daemon.log_text().contains("slow: cancelled") {
        assert!(
            Instant::now() < deadline,
            "the server never saw notifications/cancelled:\n{}",
            s.daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- (d) crashes ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_server_restarts_and_works_again() {
    let mut s = setup(
        vec![ServerSpec::test_server().allow_all()],
        MockBehaviour::Script(vec![
            MockBehaviour::Reply(MockReply::tool_calls(vec![call(
                "k1",
                "test__crash",
                json!({}),
            )])),
            MockBehaviour::reply("It broke."),
            MockBehaviour::Reply(MockReply::tool_calls(vec![call(
                "a1",
                "test__add",
                json!({"a": 20, "b": 22}),
            )])),
            MockBehaviour::reply("Forty-two."),
        ]),
    )
    .await;
    let id = s.client.send_text("crash it").await.unwrap();
    let mut restarting = false;
    let mut ready_again = false;
    let mut turn_done = false;
    let mut events = Vec::new();
    while !(turn_done && ready_again) {
        let (_, ev) = match s.client.next_event(WAIT).await {
            Ok(x) => x,
            Err(e) => panic!("{e:#}: {events:#?}\n{}", s.daemon.log_text()),
        };
        match &ev {
            Event::McpServerChanged { server } if server.name == "test" => match server.state {
                McpServerState::Restarting { .. } => restarting = true,
                McpServerState::Ready if restarting => ready_again = true,
                McpServerState::Failed { .. } | McpServerState::Disabled => {
                    panic!("server gave up: {server:?}")
                }
                _ => {}
            },
            Event::TurnEnded { turn_id, .. } if *turn_id == id => turn_done = true,
            _ => {}
        }
        events.push(ev);
    }
    assert_eq!(call_of(&events, "crash").outcome, Some(ToolOutcome::Error));
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    assert!(!tool_result(&s.mock.requests()[1], "k1").is_empty());

    let events = turn(&mut s, "add then").await;
    assert_eq!(call_of(&events, "add").outcome, Some(ToolOutcome::Ok));
    assert_eq!(tool_result(&s.mock.requests()[3], "a1").trim(), "42");
    let servers = s.client.servers().await.unwrap();
    assert_eq!(servers[0].state, McpServerState::Ready);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_request_restarts_a_server() {
    let mut s = setup(
        vec![ServerSpec::test_server()],
        MockBehaviour::reply("unused"),
    )
    .await;
    s.client
        .ok(Request::RestartMcpServer {
            name: "test".into(),
        })
        .await
        .unwrap();
    let events = s
        .client
        .events_until(WAIT, |e| {
            matches!(e, Event::McpServerChanged { server }
                if server.name == "test" && server.state == McpServerState::Ready)
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::McpServerChanged { server }
            if server.state != McpServerState::Ready)),
        "no state change before ready: {events:#?}"
    );
    let err = s
        .client
        .request(Request::RestartMcpServer {
            name: "nope".into(),
        })
        .await
        .unwrap()
        .expect_err("unknown server");
    assert_eq!(err.code, vtuber_shared::ErrorCode::NotFound);
}

// --- listing and tools/list_changed ----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tools_are_listed_with_exposed_names_and_policies() {
    let mut s = setup(
        vec![ServerSpec::test_server().policy(None, &[("echo", "ask"), ("env_*", "deny")])],
        MockBehaviour::reply("unused"),
    )
    .await;
    let servers = s.client.servers().await.unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "test");
    assert_eq!(servers[0].transport, "stdio");
    assert_eq!(servers[0].sandbox, SandboxLevel::Off);
    let tools = s.client.tools(Some("test")).await.unwrap();
    assert_eq!(servers[0].tools, tools.len());
    let by_name: HashMap<&str, &vtuber_shared::McpToolInfo> =
        tools.iter().map(|t| (t.name.as_str(), t)).collect();
    let add = by_name["add"];
    assert_eq!(add.exposed_name, "test__add");
    assert!(add.read_only && !add.destructive);
    assert_eq!(add.input_schema["type"], "object");
    assert!(add.description.contains("Adds"), "{add:?}");
    // Annotations decide when the policy does not.
    assert_eq!(add.policy, ToolPolicy::Allow);
    assert_eq!(by_name["write_file"].policy, ToolPolicy::Ask);
    assert!(by_name["write_file"].destructive);
    assert_eq!(by_name["crash"].policy, ToolPolicy::Ask, "unannotated asks");
    // Per-tool rules, globs included, override annotations.
    assert_eq!(by_name["echo"].policy, ToolPolicy::Ask);
    assert_eq!(by_name["env_has"].policy, ToolPolicy::Deny);
    // All servers when none is named.
    assert_eq!(s.client.tools(None).await.unwrap().len(), tools.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_list_changed_is_followed() {
    let mut s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            vec![call("l1", "test__change_tools", json!({}))],
            "Changed.",
        ),
    )
    .await;
    let before = s.client.tools(Some("test")).await.unwrap();
    assert!(before.iter().all(|t| t.name != "late_tool"));
    let events = turn(&mut s, "change").await;
    assert_eq!(
        call_of(&events, "change_tools").outcome,
        Some(ToolOutcome::Ok)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tools = s.client.tools(Some("test")).await.unwrap();
        if tools.iter().any(|t| t.exposed_name == "test__late_tool") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "late_tool never listed: {tools:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the LLM is offered it from now on.
    s.mock.set_behaviour(MockBehaviour::reply("ok"));
    turn(&mut s, "again").await;
    let last = s.mock.requests().pop().unwrap();
    let offered = last.body["tools"].to_string();
    assert!(offered.contains("test__late_tool"), "{offered}");
}

// --- (e) policy and approval ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn allowed_tools_run_without_asking() {
    let mut s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            vec![call("c1", "test__add", json!({"a": 1, "b": 1}))],
            "Two.",
        ),
    )
    .await;
    let events = turn(&mut s, "1+1").await;
    assert_eq!(approvals_asked(&events), 0, "{events:#?}");
    assert_eq!(call_of(&events, "add").outcome, Some(ToolOutcome::Ok));
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0].decision, "auto");
    assert_eq!(audit[0].outcome, ToolOutcome::Ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_then_approve_runs_the_tool() {
    let mut s = setup(
        vec![ServerSpec::test_server().policy(None, &[("echo", "ask")])],
        tool_script(
            vec![call("e1", "test__echo", json!({"text": "approved!"}))],
            "Echoed.",
        ),
    )
    .await;
    let events = turn_with_approval(&mut s, "echo", Some(ApprovalDecision::AllowOnce)).await;
    let asked = events
        .iter()
        .find_map(|e| match e {
            Event::ApprovalRequested {
                server,
                tool,
                arguments,
                timeout_secs,
                ..
            } => Some((
                server.clone(),
                tool.clone(),
                arguments.clone(),
                *timeout_secs,
            )),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        asked,
        (
            "test".into(),
            "echo".into(),
            json!({"text": "approved!"}),
            60
        )
    );
    assert_eq!(resolution(&events), ApprovalResolution::Approved);
    assert_eq!(call_of(&events, "echo").outcome, Some(ToolOutcome::Ok));
    assert_eq!(tool_result(&s.mock.requests()[1], "e1"), "approved!");
    let audit = s.client.audit(Some(10)).await.unwrap();
    assert_eq!(audit[0].decision, "approved", "{audit:#?}");
    assert_eq!(audit[0].tool, "echo");
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_then_deny_does_not_run_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("never.txt");
    // write_file is destructive: with no policy set, the annotation makes it ask.
    let mut s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            vec![call(
                "w1",
                "test__write_file",
                json!({"path": target, "text": "x"}),
            )],
            "Fine, I won't.",
        ),
    )
    .await;
    let events = turn_with_approval(&mut s, "write", Some(ApprovalDecision::Deny)).await;
    assert_eq!(resolution(&events), ApprovalResolution::Denied);
    assert_eq!(
        call_with_id(&events, "w1").outcome,
        Some(ToolOutcome::Denied)
    );
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    assert!(!target.exists(), "the denied tool ran");
    assert!(!tool_result(&s.mock.requests()[1], "w1").is_empty());
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit[0].decision, "denied", "{audit:#?}");
    assert_eq!(audit[0].outcome, ToolOutcome::Denied);
}

#[tokio::test(flavor = "multi_thread")]
async fn unanswered_approval_times_out_as_denied() {
    let mut s = setup_with(
        vec![ServerSpec::test_server().policy(None, &[("echo", "ask")])],
        tool_script(
            vec![call("e1", "test__echo", json!({"text": "anyone?"}))],
            "Nobody answered.",
        ),
        &[],
        |c| c.approval_timeout_secs = 1,
    )
    .await;
    let t = Instant::now();
    let events = turn_with_approval(&mut s, "echo", None).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(resolution(&events), ApprovalResolution::TimedOut);
    let outcome = call_with_id(&events, "e1").outcome;
    assert!(
        matches!(
            outcome,
            Some(ToolOutcome::Denied) | Some(ToolOutcome::TimedOut)
        ),
        "{outcome:?}"
    );
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit[0].decision, "timed_out", "{audit:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_for_session_stops_asking() {
    let mut s = setup(
        vec![ServerSpec::test_server().policy(None, &[("echo", "ask")])],
        MockBehaviour::Script(vec![
            MockBehaviour::Reply(MockReply::tool_calls(vec![call(
                "e1",
                "test__echo",
                json!({"text": "one"}),
            )])),
            MockBehaviour::reply("One."),
            MockBehaviour::Reply(MockReply::tool_calls(vec![call(
                "e2",
                "test__echo",
                json!({"text": "two"}),
            )])),
            MockBehaviour::reply("Two."),
        ]),
    )
    .await;
    let events = turn_with_approval(&mut s, "first", Some(ApprovalDecision::AllowForSession)).await;
    assert_eq!(resolution(&events), ApprovalResolution::ApprovedForSession);
    let events = turn(&mut s, "second").await;
    assert_eq!(approvals_asked(&events), 0, "{events:#?}");
    assert_eq!(call_of(&events, "echo").outcome, Some(ToolOutcome::Ok));
    let audit = s.client.audit(None).await.unwrap();
    let decisions: Vec<&str> = audit.iter().map(|a| a.decision.as_str()).collect();
    assert_eq!(decisions.len(), 2, "{audit:#?}");
    assert_eq!(decisions[1], "approved_for_session", "{audit:#?}");
    assert!(
        ["auto", "approved_for_session"].contains(&decisions[0]),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_by_policy_never_asks() {
    let mut s = setup(
        vec![ServerSpec::test_server().policy(Some("allow"), &[("env_*", "deny")])],
        tool_script(
            vec![call("d1", "test__env_has", json!({"name": "HOME"}))],
            "Not allowed.",
        ),
    )
    .await;
    let events = turn(&mut s, "check env").await;
    assert_eq!(approvals_asked(&events), 0);
    assert_eq!(
        call_with_id(&events, "d1").outcome,
        Some(ToolOutcome::Denied)
    );
    let result = tool_result(&s.mock.requests()[1], "d1");
    assert!(!result.contains("is set"), "{result}");
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit[0].decision, "denied", "{audit:#?}");
}

// --- (g) audit ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn audit_lists_calls_newest_first() {
    let mut s = setup(
        vec![ServerSpec::test_server().policy(None, &[("connect", "deny")])],
        MockBehaviour::Script(vec![
            MockBehaviour::Reply(MockReply::tool_calls(vec![call(
                "a1",
                "test__add",
                json!({"a": 2, "b": 2}),
            )])),
            MockBehaviour::reply("Four."),
            MockBehaviour::Reply(MockReply::tool_calls(vec![call(
                "n1",
                "test__connect",
                json!({"addr": "127.0.0.1:9"}),
            )])),
            MockBehaviour::reply("No."),
        ]),
    )
    .await;
    let started = vtuber_test_support::mcp::realtime_us() / 1000;
    turn(&mut s, "add").await;
    turn(&mut s, "connect").await;
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    let (newest, oldest) = (&audit[0], &audit[1]);
    assert_eq!(
        (
            newest.tool.as_str(),
            newest.decision.as_str(),
            newest.outcome
        ),
        ("connect", "denied", ToolOutcome::Denied)
    );
    assert_eq!(
        (
            oldest.tool.as_str(),
            oldest.decision.as_str(),
            oldest.outcome
        ),
        ("add", "auto", ToolOutcome::Ok)
    );
    assert_eq!(oldest.server, "test");
    assert!(!oldest.character.is_empty());
    let args: Value = serde_json::from_str(&oldest.arguments).unwrap();
    assert_eq!(args, json!({"a": 2, "b": 2}));
    assert!(oldest.detail.contains('4'), "{oldest:?}");
    assert!(oldest.time_ms as u128 >= started && newest.time_ms >= oldest.time_ms);
    assert!(newest.id != oldest.id);
    // limit and since_ms filter.
    assert_eq!(s.client.audit(Some(1)).await.unwrap().len(), 1);
    let since = s
        .client
        .ok(Request::ToolAudit {
            since_ms: Some(newest.time_ms + 60_000),
            limit: None,
        })
        .await
        .unwrap();
    let none: Vec<vtuber_shared::AuditEntry> =
        vtuber_test_support::mcp::list_in(&since, "entries").unwrap();
    assert!(none.is_empty(), "{none:#?}");
}

// --- (f) sandbox ----------------------------------------------------------------------

fn expected_sandbox(network_restricted: bool) -> Vec<SandboxLevel> {
    let abi = landlock_abi();
    if abi == 0 {
        eprintln!("this kernel has no Landlock: the server runs unconfined ('unsupported')");
        vec![SandboxLevel::Unsupported]
    } else if network_restricted && abi < 4 {
        eprintln!("Landlock ABI {abi} cannot restrict TCP: expecting 'partial'");
        vec![SandboxLevel::Partial]
    } else if abi < 6 {
        // No signal or abstract-socket scopes (ABI 6): reported as partial.
        vec![SandboxLevel::Partial]
    } else {
        vec![SandboxLevel::Enforced]
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_confines_the_filesystem() {
    let granted = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("inside.txt"), "inside text").unwrap();
    std::fs::write(elsewhere.path().join("outside.txt"), "outside text").unwrap();
    let p = |d: &Path, f: &str| d.join(f).to_string_lossy().into_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server =
        ServerSpec::test_server()
            .allow_all()
            .sandbox(&[granted.path()], &[granted.path()], true);
    let mut s = setup(
        vec![server],
        tool_script(
            vec![
                call(
                    "r_in",
                    "test__read_file",
                    json!({"path": p(granted.path(), "inside.txt")}),
                ),
                call(
                    "r_out",
                    "test__read_file",
                    json!({"path": p(elsewhere.path(), "outside.txt")}),
                ),
                call(
                    "w_in",
                    "test__write_file",
                    json!({"path": p(granted.path(), "new.txt"), "text": "made"}),
                ),
                call(
                    "w_out",
                    "test__write_file",
                    json!({"path": p(elsewhere.path(), "new.txt"), "text": "escaped"}),
                ),
                call("net", "test__connect", json!({"addr": addr})),
            ],
            "Sandbox checked.",
        ),
    )
    .await;
    let servers = s.client.servers().await.unwrap();
    let level = servers[0].sandbox;
    let expected = expected_sandbox(false);
    assert!(
        expected.contains(&level),
        "sandbox {level:?} ({}), expected {expected:?}",
        servers[0].sandbox_detail
    );
    let events = turn(&mut s, "probe").await;
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let req = &s.mock.requests()[1];
    assert_eq!(tool_result(req, "r_in"), "inside text");
    assert!(
        tool_result(req, "w_in").starts_with("wrote 4 bytes"),
        "{}",
        tool_result(req, "w_in")
    );
    assert_eq!(
        std::fs::read_to_string(granted.path().join("new.txt")).unwrap(),
        "made"
    );
    // network: true leaves TCP alone.
    assert!(
        tool_result(req, "net").starts_with("connected"),
        "{}",
        tool_result(req, "net")
    );
    if level == SandboxLevel::Unsupported {
        return;
    }
    let r_out = tool_result(req, "r_out");
    assert!(r_out.contains("cannot read"), "{r_out}");
    assert!(r_out.contains("ermission denied"), "{r_out}");
    let w_out = tool_result(req, "w_out");
    assert!(w_out.contains("cannot write"), "{w_out}");
    assert!(!elsewhere.path().join("new.txt").exists(), "write escaped");
    let c = calls_in(&events);
    let outcome_of = |tool: &str, path_part: &str| {
        c.values()
            .find(|x| x.tool == tool && x.arguments.to_string().contains(path_part))
            .and_then(|x| x.outcome)
    };
    assert_eq!(outcome_of("read_file", "outside"), Some(ToolOutcome::Error));
    assert_eq!(outcome_of("read_file", "inside"), Some(ToolOutcome::Ok));
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_can_deny_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::test_server()
        .allow_all()
        .sandbox(&[dir.path()], &[], false);
    let mut s = setup(
        vec![server],
        tool_script(
            vec![
                call("net", "test__connect", json!({"addr": addr})),
                call("sum", "test__add", json!({"a": 1, "b": 2})),
            ],
            "Offline.",
        ),
    )
    .await;
    let servers = s.client.servers().await.unwrap();
    let level = servers[0].sandbox;
    let expected = expected_sandbox(true);
    assert!(
        expected.contains(&level),
        "sandbox {level:?} ({}), expected {expected:?}",
        servers[0].sandbox_detail
    );
    turn(&mut s, "go online").await;
    let req = &s.mock.requests()[1];
    // Tools that need no network still work.
    assert_eq!(tool_result(req, "sum").trim(), "3");
    let net = tool_result(req, "net");
    if level == SandboxLevel::Enforced {
        assert!(net.contains("cannot connect"), "{net}");
    } else {
        eprintln!("network not confined here ({level:?}): {net}");
    }
}

// --- (h) secrets ----------------------------------------------------------------------

/// A value nobody else would print.
fn secret() -> String {
    format!(
        "sk-vtuber-test-{:x}-{}",
        vtuber_test_support::mcp::realtime_us(),
        std::process::id()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_logs_audit_and_events() {
    let secret = secret();
    let server = ServerSpec::test_server()
        .allow_all()
        .env(&[("API_TOKEN", "${VTUBER_TEST_SECRET}")]);
    let mut s = setup_with(
        vec![server],
        tool_script(
            vec![
                call("has", "test__env_has", json!({"name": "API_TOKEN"})),
                call(
                    "key",
                    "test__echo",
                    json!({"text": "keyed", "api_key": secret}),
                ),
            ],
            "Checked.",
        ),
        &[("VTUBER_TEST_SECRET", &secret)],
        |_| {},
    )
    .await;
    let events = turn(&mut s, "check the token").await;
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    // The variable was expanded into the server's environment.
    let req = &s.mock.requests()[1];
    assert_eq!(tool_result(req, "has"), "API_TOKEN is set");
    assert_eq!(tool_result(req, "key"), "keyed");
    // The echo call still shows its harmless argument.
    let echo = call_of(&events, "echo");
    assert_eq!(echo.arguments["text"], "keyed");
    assert_ne!(echo.arguments["api_key"], json!(secret));
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_no_secret(&secret, &s.daemon.log_text(), &audit, &s.client.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_secret_values_are_redacted_everywhere() {
    // The model repeats a configured secret as an ordinary argument; the daemon knows the
    // value from the config and must not record it.
    let secret = secret();
    let server = ServerSpec::test_server()
        .allow_all()
        .env(&[("API_TOKEN", "${VTUBER_TEST_SECRET}")]);
    let mut s = setup_with(
        vec![server],
        tool_script(
            vec![call("e1", "test__echo", json!({"text": secret}))],
            "Echoed.",
        ),
        &[("VTUBER_TEST_SECRET", &secret)],
        |_| {},
    )
    .await;
    let events = turn(&mut s, "repeat it").await;
    assert_eq!(call_of(&events, "echo").outcome, Some(ToolOutcome::Ok));
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_no_secret(&secret, &s.daemon.log_text(), &audit, &s.client.raw);
}

// --- (i) a real third-party server ----------------------------------------------------

fn time_server_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import mcp_server_time"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "mcp-server-time must be installed in CI (pip install mcp-server-time)"
        );
        eprintln!("skipped: python3 -m mcp_server_time is not installed");
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn third_party_time_server_works() {
    if !time_server_available() {
        return;
    }
    let server = ServerSpec::stdio("time", "python3", &["-m", "mcp_server_time"]).sandbox_off();
    let mut s = setup(
        vec![server],
        tool_script(
            vec![call(
                "t1",
                "time__get_current_time",
                json!({"timezone": "UTC"}),
            )],
            "It is now.",
        ),
    )
    .await;
    let tools = s.client.tools(Some("time")).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.exposed_name.as_str()).collect();
    assert!(names.contains(&"time__get_current_time"), "{names:?}");
    assert!(names.contains(&"time__convert_time"), "{names:?}");
    let events = turn(&mut s, "what time is it?").await;
    assert_eq!(
        call_of(&events, "get_current_time").outcome,
        Some(ToolOutcome::Ok)
    );
    let result = tool_result(&s.mock.requests()[1], "t1");
    assert!(
        result.contains("UTC") && result.contains("datetime"),
        "{result}"
    );
}

/// The test server binary exists (built by `cargo build --workspace --bins`).
#[test]
fn test_server_is_built() {
    assert!(
        test_server_bin().exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        test_server_bin().display()
    );
}

// --- interruption, several clients, bounds, failures ------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn interrupting_a_turn_cancels_its_tool_call() {
    let mut s = setup(
        vec![ServerSpec::test_server()],
        tool_script(
            vec![call("s1", "test__slow", json!({"ms": 10000, "steps": 100}))],
            "unused",
        ),
    )
    .await;
    let id = s.client.send_text("wait for it").await.unwrap();
    s.client
        .events_until(WAIT, |e| matches!(e, Event::ToolCallStarted { .. }))
        .await
        .unwrap();
    let t = Instant::now();
    s.client.ok(Request::Interrupt).await.unwrap();
    let events = s.client.finish_turn(id, WAIT).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(
        call_with_id(&events, "s1").outcome,
        Some(ToolOutcome::Cancelled),
        "{events:#?}"
    );
    assert_eq!(turn_outcome(&events), TurnOutcome::Interrupted);
    // No second LLM request: the turn stopped.
    assert_eq!(s.mock.request_count(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.daemon.log_text().contains("slow: cancelled") {
        assert!(
            Instant::now() < deadline,
            "the server never saw notifications/cancelled:\n{}",
            s.daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_answer_to_an_approval_wins() {
    let mut s = setup(
        vec![ServerSpec::test_server().policy(None, &[("echo", "ask")])],
        tool_script(
            vec![call("e1", "test__echo", json!({"text": "two clients"}))],
            "Done.",
        ),
    )
    .await;
    let mut other = s.daemon.client("other").await.unwrap();
    let id = s.client.send_text("echo").await.unwrap();
    let asked = |e: &Event| matches!(e, Event::ApprovalRequested { .. });
    let seen = other.events_until(WAIT, asked).await.unwrap();
    let Some(Event::ApprovalRequested { request_id, .. }) = seen.last().cloned() else {
        unreachable!()
    };
    s.client.events_until(WAIT, asked).await.unwrap();
    let first = other
        .approve(request_id, ApprovalDecision::Deny)
        .await
        .unwrap();
    assert_ne!(first["accepted"], json!(false), "{first}");
    // Too late: the request is settled.
    let second = s
        .client
        .request(Request::ApproveToolCall {
            request_id,
            decision: ApprovalDecision::AllowOnce,
        })
        .await
        .unwrap();
    match second {
        Ok(reply) => assert_eq!(reply["accepted"], json!(false), "{reply}"),
        Err(e) => assert_eq!(e.code, vtuber_shared::ErrorCode::NotFound, "{e}"),
    }
    let events = s.client.finish_turn(id, WAIT).await.unwrap();
    assert_eq!(resolution(&events), ApprovalResolution::Denied);
    assert_eq!(
        call_with_id(&events, "e1").outcome,
        Some(ToolOutcome::Denied)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_rounds_are_bounded_by_max_rounds() {
    let ask = || {
        MockBehaviour::Reply(MockReply::tool_calls(vec![call(
            "r",
            "test__add",
            json!({"a": 1, "b": 1}),
        )]))
    };
    let mut s = setup_with(
        vec![ServerSpec::test_server()],
        MockBehaviour::Script(vec![ask(), ask(), MockBehaviour::reply("Enough.")]),
        &[],
        |c| c.max_rounds = 2,
    )
    .await;
    let events = turn(&mut s, "loop").await;
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let ended = events
        .iter()
        .filter(|e| matches!(e, Event::ToolCallEnded { .. }))
        .count();
    assert_eq!(ended, 2);
    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].body["tools"].is_array());
    let last_tools = &reqs[2].body["tools"];
    assert!(
        last_tools.is_null() || last_tools.as_array().is_some_and(Vec::is_empty),
        "tools still offered after max_rounds: {last_tools}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_starts_is_reported_and_the_rest_works() {
    let mock = MockLlm::start_blocking(tool_script(
        vec![call("b1", "broken__anything", json!({}))],
        "No such tool.",
    ))
    .unwrap();
    let config = McpConfig::new(
        &mock.base_url(),
        vec![
            ServerSpec::stdio("broken", "/bin/false", &[]).sandbox_off(),
            ServerSpec::test_server(),
        ],
    );
    let daemon = McpDaemon::spawn(&config.to_yaml(), &[]).unwrap();
    let mut c = daemon.client("t").await.unwrap();
    c.wait_server_ready("test", WAIT).await.unwrap();
    let failed = c.wait_server_ready("broken", WAIT).await.unwrap_err();
    assert!(failed.to_string().contains("failed"), "{failed:#}");
    let servers = c.servers().await.unwrap();
    let broken = servers.iter().find(|s| s.name == "broken").unwrap();
    assert!(
        matches!(&broken.state, McpServerState::Failed { reason } if !reason.is_empty()),
        "{broken:?}"
    );
    assert!(
        c.tools(None)
            .await
            .unwrap()
            .iter()
            .all(|t| t.server == "test")
    );
    // A call to a tool nobody offers fails cleanly; the turn still ends.
    let id = c.send_text("try it").await.unwrap();
    let events = c.finish_turn(id, WAIT).await.unwrap();
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    assert_eq!(
        call_with_id(&events, "b1").outcome,
        Some(ToolOutcome::Error)
    );
    assert!(!tool_result(&mock.requests()[1], "b1").is_empty());
}

// --- (i) isolation from the daemon -----------------------------------------------------

/// The daemon's environment holds the LLM key; a tool server that dumps its own
/// environment must see only the base variables, its `env:` map and `env_passthrough`.
#[tokio::test(flavor = "multi_thread")]
async fn tool_servers_never_inherit_the_daemons_environment() {
    let key = secret();
    let mk = |name: &str, sandboxed: bool| {
        let s = ServerSpec::stdio(name, test_server_bin(), &[])
            .allow_all()
            .env(&[("FROM_MAP", "${VTUBER_TEST_SUBST}")])
            .with("env_passthrough", json!(["VTUBER_TEST_PASS"]));
        if sandboxed {
            s.sandbox(&[], &[], true)
        } else {
            s.sandbox_off()
        }
    };
    let mut s = setup_with(
        vec![mk("boxed", true), mk("plain", false)],
        tool_script(
            vec![
                call("b", "boxed__env_dump", json!({})),
                call("p", "plain__env_dump", json!({})),
            ],
            "Dumped.",
        ),
        &[
            ("VTUBER_TEST_LLM_KEY", &key),
            ("VTUBER_TEST_SUBST", "substituted"),
            ("VTUBER_TEST_PASS", "handed-on"),
            ("LC_TIME", "C"),
        ],
        |c| {
            let mut llm = c.to_value()["llm"].clone();
            llm["api_key_env"] = json!("VTUBER_TEST_LLM_KEY");
            c.extra.insert("llm".into(), llm);
        },
    )
    .await;
    let events = turn(&mut s, "what is in your environment?").await;
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let req = &s.mock.requests()[1];
    for id in ["b", "p"] {
        let dump = tool_result(req, id);
        let names: Vec<&str> = dump.lines().filter_map(|l| l.split('=').next()).collect();
        assert!(
            !dump.contains(&key),
            "the LLM key reached a tool server: {dump}"
        );
        assert!(dump.contains("FROM_MAP=substituted"), "{dump}");
        assert!(dump.contains("VTUBER_TEST_PASS=handed-on"), "{dump}");
        assert!(dump.contains("LC_TIME=C"), "{dump}");
        for base in ["PATH", "HOME"] {
            assert!(names.contains(&base), "{base} missing: {dump}");
        }
        for leaked in [
            "VTUBER_TEST_LLM_KEY",
            "VTUBER_TEST_SUBST",
            "VTUBER_SOCKET",
            "VTUBER_CONFIG",
            "VTUBER_LOG",
        ] {
            assert!(!names.contains(&leaked), "{leaked} leaked: {dump}");
        }
    }
    // The mock's Authorization header proves the key was in the daemon's environment.
    assert!(
        s.mock.requests()[0]
            .header("authorization")
            .is_some_and(|v| v.contains(&key)),
        "the daemon did not use the key"
    );
}

/// What a hostile sandboxed tool server tries against the daemon that started it.
fn intrusion_calls(
    daemon: &McpDaemon,
    pid: u32,
    server: &str,
    web_url: &str,
) -> Vec<vtuber_test_support::mock_llm::MockToolCall> {
    let web = vtuber_test_support::web::PageUrl::parse(web_url).host_port();
    let token_file = daemon
        .daemon
        .dir
        .path()
        .join("data/vtuber/private/web-token");
    let socket = daemon.daemon.socket.to_string_lossy().into_owned();
    let cookie = vtuber_shared::cookie::cookie_path(&daemon.daemon.socket)
        .to_string_lossy()
        .into_owned();
    let db = daemon.daemon.dir.path().join("data/vtuber/history.sqlite3");
    let t = |tool: &str| format!("{server}__{tool}");
    vec![
        call(
            "environ",
            &t("read_file"),
            json!({"path": format!("/proc/{pid}/environ")}),
        ),
        call("cookie", &t("read_file"), json!({"path": cookie})),
        call(
            "history",
            &t("read_file"),
            json!({"path": db.to_string_lossy()}),
        ),
        call("caps", &t("capabilities"), json!({})),
        call("signal", &t("signal"), json!({"pid": pid, "signal": 0})),
        call(
            "socket",
            &t("socket_hello"),
            json!({"socket": socket, "cookie_file": cookie}),
        ),
        call(
            "web",
            &t("ws_upgrade"),
            json!({"addr": web, "path": "/client-ws", "token_file": token_file.to_string_lossy()}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_server_cannot_reach_the_daemon() {
    // The daemon's script needs its pid, known only once it runs: a daemon first, then
    // the script is loaded into the mock.
    let mock = MockLlm::start_blocking(MockBehaviour::reply("unused")).expect("mock");
    let server = ServerSpec::stdio("evil", test_server_bin(), &[])
        .allow_all()
        .sandbox(&[], &[], true);
    let mut config = McpConfig::new(&mock.base_url(), vec![server]);
    config.extra.insert("web".into(), json!({"port": 0}));
    let daemon = McpDaemon::spawn(
        &config.to_yaml(),
        &[("VTUBER_TEST_LLM_KEY", "sk-in-daemon-env")],
    )
    .expect("daemon");
    let mut client = daemon.client("t").await.unwrap();
    let info = client.wait_server_ready("evil", WAIT).await.unwrap();
    let pid = daemon.pid().unwrap();
    let web_url = crate::common::web_url(&daemon.daemon).await;
    mock.set_behaviour(tool_script(
        intrusion_calls(&daemon, pid, "evil", &web_url),
        "Done.",
    ));
    let id = client.send_text("try everything").await.unwrap();
    let events = client.finish_turn(id, WAIT).await.unwrap();
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let req = &mock.requests()[1];

    // Non-dumpable daemon + no capabilities: /proc/<daemon>/environ is closed.
    let environ = tool_result(req, "environ");
    assert!(environ.contains("cannot read"), "{environ}");
    assert!(!environ.contains("sk-in-daemon-env"), "{environ}");
    let caps = tool_result(req, "caps");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = caps
            .lines()
            .find(|l| l.starts_with(set))
            .unwrap_or_default();
        assert!(
            line.ends_with("0000000000000000"),
            "{set} not empty: {caps}"
        );
    }
    if info.sandbox == SandboxLevel::Unsupported {
        eprintln!("no Landlock here: file and signal confinement not checked");
        return;
    }
    for id in ["cookie", "history"] {
        let r = tool_result(req, id);
        assert!(
            r.contains("cannot read") && r.contains("ermission denied"),
            "{id}: {r}"
        );
    }
    // The socket accepts the connection (same user) but not the intruder: no cookie.
    let socket = tool_result(req, "socket");
    assert!(socket.contains("cannot read"), "{socket}");
    assert!(socket.contains("carries no cookie"), "{socket}");
    assert!(
        !socket.contains("\"status\""),
        "the intruder got a status: {socket}"
    );
    // The web socket wants the token, on loopback too, and its file is out of reach.
    let web = tool_result(req, "web");
    assert!(web.contains("cannot read") && web.contains("401"), "{web}");
    if landlock_abi() >= 6 {
        let signal = tool_result(req, "signal");
        assert!(signal.contains("cannot signal"), "{signal}");
    }
    // The daemon is unharmed.
    assert_eq!(client.ok(Request::Ping).await.unwrap()["type"], "pong");
}

/// Landlock cannot carve the daemon's folders out of a granted parent: such a grant is
/// reported (`vtuber mcp list`), and with the cookie readable the server gets in — the
/// cookie is what stands between a tool server and the daemon.
#[tokio::test(flavor = "multi_thread")]
async fn granting_the_cookie_folder_is_reported() {
    let mock = MockLlm::start_blocking(MockBehaviour::reply("unused")).expect("mock");
    let placeholder = ServerSpec::stdio("leaky", test_server_bin(), &[]).allow_all();
    let config = McpConfig::new(&mock.base_url(), vec![placeholder]);
    let mut daemon = vtuber_test_support::daemon::TestDaemon::new(&config.to_yaml()).unwrap();
    let runtime = daemon.socket.parent().unwrap().to_path_buf();
    let token_dir = daemon.dir.path().join("data/vtuber/private");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::create_dir_all(&token_dir).unwrap();
    let server = ServerSpec::stdio("leaky", test_server_bin(), &[])
        .allow_all()
        .sandbox(&[&runtime, &token_dir], &[], true);
    let mut config = McpConfig::new(&mock.base_url(), vec![server]);
    config.extra.insert("web".into(), json!({"port": 0}));
    std::fs::write(
        &daemon.config,
        vtuber_test_support::daemon::with_test_defaults(&config.to_yaml()),
    )
    .unwrap();
    daemon.start().unwrap();
    let daemon = McpDaemon { daemon };
    let mut client = daemon.client("t").await.unwrap();
    let info = client.wait_server_ready("leaky", WAIT).await.unwrap();
    if info.sandbox == SandboxLevel::Unsupported {
        return;
    }
    assert_eq!(info.sandbox, SandboxLevel::Partial, "{info:?}");
    assert!(info.sandbox_detail.contains("exposes"), "{info:?}");
    let mut cmd = daemon.daemon.vtuber();
    cmd.args(["mcp", "list"]);
    let out = run(cmd).await;
    assert!(stdout(&out).contains("exposes"), "{}", stdout(&out));

    let pid = daemon.pid().unwrap();
    let web_url = crate::common::web_url(&daemon.daemon).await;
    mock.set_behaviour(tool_script(
        intrusion_calls(&daemon, pid, "leaky", &web_url),
        "Done.",
    ));
    let id = client.send_text("try again").await.unwrap();
    client.finish_turn(id, WAIT).await.unwrap();
    let req = &mock.requests()[1];
    let socket = tool_result(req, "socket");
    assert!(socket.contains("\"welcome\""), "{socket}");
    let web = tool_result(req, "web");
    assert!(web.contains("101"), "{web}");
}
