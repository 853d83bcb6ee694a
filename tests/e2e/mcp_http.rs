//! MCP servers over streamable HTTP through the real daemon: `vtuber-mcp-test-server
//! --http` runs as a child process, vtuberd connects to it by `url` with a secret header
//! from the environment, and the mock LLM calls its tools.

use std::time::{Duration, Instant};

use crate::common::WAIT;
use serde_json::json;
use vtuber_shared::{Event, McpServerInfo, McpServerState, SandboxLevel, ToolOutcome, TurnOutcome};
use vtuber_test_support::mcp::{
    HttpTestServer, JsonClient, McpConfig, McpDaemon, ServerSpec, assert_no_secret, call,
    tool_result, tool_script, turn_outcome,
};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm};

const HEADER: &str = "X-Test-Key";
const SECRET_VAR: &str = "VTUBER_TEST_SECRET";

/// A value nobody else would print.
fn secret() -> String {
    format!(
        "sk-vtuber-http-{:x}-{}",
        vtuber_test_support::mcp::realtime_us(),
        std::process::id()
    )
}

/// The `web` server at `url`, sending `X-Test-Key: ${VTUBER_TEST_SECRET}`.
fn web_server(url: &str) -> ServerSpec {
    ServerSpec::http("web", url).headers(&[(HEADER, "${VTUBER_TEST_SECRET}")])
}

struct Setup {
    // Dropped last: the daemon goes first, then the server it talks to.
    mock: MockLlm,
    daemon: McpDaemon,
    client: JsonClient,
    secret: String,
    _server: HttpTestServer,
}

/// An HTTP test server that requires `X-Test-Key: <server_key>` (`None`: the secret),
/// a mock LLM with `behaviour`, and a daemon configured with the `web` server and the
/// secret in its environment.
async fn start(behaviour: MockBehaviour, server_key: Option<&str>) -> Setup {
    let secret = secret();
    let server = HttpTestServer::start(Some((HEADER, server_key.unwrap_or(&secret))))
        .expect("HTTP test server starts");
    let mock = MockLlm::start_blocking(behaviour).expect("mock LLM starts");
    let config = McpConfig::new(&mock.base_url(), vec![web_server(&server.url)]);
    let daemon =
        McpDaemon::spawn(&config.to_yaml(), &[(SECRET_VAR, &secret)]).expect("daemon starts");
    let client = daemon
        .client("mcp-http-test")
        .await
        .expect("client connects");
    Setup {
        mock,
        daemon,
        client,
        secret,
        _server: server,
    }
}

/// [`start`] with the right key; waits until `web` is ready.
async fn setup(behaviour: MockBehaviour) -> Setup {
    let mut s = start(behaviour, None).await;
    if let Err(e) = s.client.wait_server_ready("web", WAIT).await {
        panic!("{e:#}\n--- daemon log ---\n{}", s.daemon.log_text());
    }
    s
}

/// Sends `text` and collects the turn's events.
async fn turn(s: &mut Setup, text: &str) -> Vec<Event> {
    let id = s.client.send_text(text).await.expect("turn accepted");
    match s.client.finish_turn(id, WAIT).await {
        Ok(events) => events,
        Err(e) => panic!("{e:#}\n--- daemon log ---\n{}", s.daemon.log_text()),
    }
}

/// `(call id, server, tool, outcome)` of every ended call, with the server and tool
/// from the matching start.
fn ended_calls(events: &[Event]) -> Vec<(String, String, String, ToolOutcome)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ToolCallEnded {
                call_id, outcome, ..
            } => {
                let (server, tool) = events
                    .iter()
                    .find_map(|s| match s {
                        Event::ToolCallStarted {
                            call_id: c,
                            server,
                            tool,
                            ..
                        } if c == call_id => Some((server.clone(), tool.clone())),
                        _ => None,
                    })
                    .unwrap_or_default();
                Some((call_id.clone(), server, tool, *outcome))
            }
            _ => None,
        })
        .collect()
}

fn web_info(servers: &[McpServerInfo]) -> McpServerInfo {
    servers
        .iter()
        .find(|i| i.name == "web")
        .cloned()
        .unwrap_or_else(|| panic!("web not listed: {servers:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn http_server_lists_tools_and_runs_a_call() {
    let mut s = setup(tool_script(
        vec![call("a1", "web__add", json!({"a": 2, "b": 40}))],
        "Forty-two.",
    ))
    .await;

    let info = web_info(&s.client.servers().await.unwrap());
    assert_eq!(info.transport, "http", "{info:?}");
    assert_eq!(info.sandbox, SandboxLevel::Off, "{info:?}");
    assert_eq!(info.state, McpServerState::Ready, "{info:?}");
    assert!(info.tools >= 5, "{info:?}");

    let tools = s.client.tools(Some("web")).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.exposed_name.as_str()).collect();
    for want in ["web__add", "web__echo", "web__slow", "web__env_has"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(tools.iter().all(|t| t.server == "web"), "{tools:#?}");
    assert_eq!(tools.len(), info.tools, "{tools:#?}");

    let events = turn(&mut s, "what is 2 + 40?").await;
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished, "{events:#?}");
    assert_eq!(
        ended_calls(&events),
        vec![("a1".into(), "web".into(), "add".into(), ToolOutcome::Ok)]
    );
    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 2, "one request per step");
    let offered = reqs[0].tool_names();
    assert!(offered.contains(&"web__add"), "{offered:?}");
    assert_eq!(tool_result(&reqs[1], "a1").trim(), "42");

    // The header carried the secret (the server accepted every request), yet the daemon
    // recorded it nowhere.
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_no_secret(&s.secret, &s.daemon.log_text(), &audit, &s.client.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_calls_of_one_step_run_concurrently() {
    const MS: u64 = 400;
    let mut s = setup(tool_script(
        vec![
            call("s1", "web__slow", json!({"ms": MS, "steps": 2})),
            call("s2", "web__slow", json!({"ms": MS, "steps": 2})),
        ],
        "Both done.",
    ))
    .await;
    let id = s.client.send_text("two slow things").await.unwrap();
    let mut first_start = None;
    let mut last_end = None;
    let mut events = Vec::new();
    loop {
        let (_, ev) = match s.client.next_event(WAIT).await {
            Ok(x) => x,
            Err(e) => panic!("{e:#}: {events:#?}\n{}", s.daemon.log_text()),
        };
        let now = Instant::now();
        match &ev {
            Event::ToolCallStarted { .. } if first_start.is_none() => first_start = Some(now),
            Event::ToolCallEnded { .. } => last_end = Some(now),
            _ => {}
        }
        let done = matches!(&ev, Event::TurnEnded { turn_id, .. } if *turn_id == id);
        events.push(ev);
        if done {
            break;
        }
    }
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished, "{events:#?}");
    let mut ended = ended_calls(&events);
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ended,
        vec![
            ("s1".into(), "web".into(), "slow".into(), ToolOutcome::Ok),
            ("s2".into(), "web".into(), "slow".into(), ToolOutcome::Ok),
        ],
        "{events:#?}"
    );
    let (Some(first_start), Some(last_end)) = (first_start, last_end) else {
        panic!("no start or end: {events:#?}");
    };
    let span = last_end - first_start;
    assert!(
        span >= Duration::from_millis(MS),
        "{span:?}: faster than one call"
    );
    assert!(
        span < Duration::from_millis(2 * MS - 50),
        "two {MS} ms calls took {span:?}: not concurrent"
    );
    let reqs = s.mock.requests();
    assert_eq!(reqs.len(), 2);
    for id in ["s1", "s2"] {
        assert_eq!(
            tool_result(&reqs[1], id),
            format!("slept {MS} ms in 2 steps")
        );
    }
    // Progress notifications come back over HTTP too.
    let progress = events
        .iter()
        .filter(|e| matches!(e, Event::ToolCallProgress { .. }))
        .count();
    assert!(progress >= 2, "progress events: {progress}: {events:#?}");
    let audit = s.client.audit(None).await.unwrap();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_no_secret(&s.secret, &s.daemon.log_text(), &audit, &s.client.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_header_fails_the_server_with_401() {
    let mut s = start(MockBehaviour::reply("unused"), Some("the-right-key")).await;
    let err = match s.client.wait_server_ready("web", WAIT).await {
        Ok(info) => panic!("ready with a wrong key: {info:?}\n{}", s.daemon.log_text()),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("failed"), "{err}");
    let info = web_info(&s.client.servers().await.unwrap());
    assert_eq!(info.transport, "http", "{info:?}");
    let McpServerState::Failed { reason } = &info.state else {
        panic!("not failed: {info:?}");
    };
    let lower = reason.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("unauthorized"),
        "reason does not say why: {reason}"
    );
    assert!(
        s.client.tools(Some("web")).await.unwrap().is_empty(),
        "a failed server offers no tools"
    );
    let audit = s.client.audit(None).await.unwrap();
    assert_no_secret(&s.secret, &s.daemon.log_text(), &audit, &s.client.raw);
}

/// A server without sessions (no `Mcp-Session-Id`, JSON answers instead of SSE) is
/// reached and used like any other.
#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_http_server_is_reached_and_called() {
    let secret = secret();
    let server = HttpTestServer::start_with(Some((HEADER, &secret)), &["--stateless"])
        .expect("stateless HTTP test server starts");
    let mock = MockLlm::start_blocking(tool_script(
        vec![call("s1", "web__add", json!({"a": 40, "b": 2}))],
        "Forty-two.",
    ))
    .expect("mock LLM starts");
    let config = McpConfig::new(&mock.base_url(), vec![web_server(&server.url)]);
    let daemon =
        McpDaemon::spawn(&config.to_yaml(), &[(SECRET_VAR, &secret)]).expect("daemon starts");
    let mut client = daemon
        .client("mcp-stateless")
        .await
        .expect("client connects");
    if let Err(e) = client.wait_server_ready("web", WAIT).await {
        panic!("{e:#}\n--- daemon log ---\n{}", daemon.log_text());
    }
    let id = client
        .send_text("what is 40 + 2?")
        .await
        .expect("turn accepted");
    let events = match client.finish_turn(id, WAIT).await {
        Ok(events) => events,
        Err(e) => panic!("{e:#}\n--- daemon log ---\n{}", daemon.log_text()),
    };
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished, "{events:#?}");
    assert_eq!(
        ended_calls(&events),
        vec![("s1".into(), "web".into(), "add".into(), ToolOutcome::Ok)]
    );
    assert_eq!(tool_result(&mock.requests()[1], "s1").trim(), "42");
}
