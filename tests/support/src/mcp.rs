//! Helpers for MCP end-to-end tests and benchmarks: config building, a daemon started
//! with extra environment, and a protocol client that reads replies as JSON (so it does
//! not depend on the exact `Reply` variant names of the MCP requests).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vtuber_shared::client::Hello;
use vtuber_shared::{
    ApprovalDecision, AuditEntry, ErrorBody, Event, McpServerInfo, McpServerState, McpToolInfo,
    Request, TurnOutcome,
};

use crate::daemon::{TestDaemon, bin};
use crate::frame_queue::{FrameQueue, Received};
use crate::mock_llm::{MockBehaviour, MockReply, MockToolCall, RecordedRequest};

/// Path of the test MCP server binary.
pub fn test_server_bin() -> PathBuf {
    bin("vtuber-mcp-test-server")
}

/// One configured MCP server, as JSON (YAML is a superset, so the config file is JSON).
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub value: Value,
}

impl ServerSpec {
    /// A stdio server running `command args...`.
    pub fn stdio(name: &str, command: impl AsRef<Path>, args: &[&str]) -> Self {
        Self {
            name: name.into(),
            value: json!({
                "command": command.as_ref().to_string_lossy(),
                "args": args,
            }),
        }
    }

    /// A streamable HTTP server at `url` (no sandbox applies to these).
    pub fn http(name: &str, url: &str) -> Self {
        Self {
            name: name.into(),
            value: json!({ "url": url }),
        }
    }

    /// `headers: {...}` of an HTTP server.
    #[must_use]
    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        let map: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.with("headers", Value::Object(map))
    }

    /// The test server, named `test`, unsandboxed, with default policy.
    pub fn test_server() -> Self {
        Self::stdio("test", test_server_bin(), &[]).sandbox_off()
    }

    /// Sets any key of this server's config.
    #[must_use]
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.value[key] = value;
        self
    }

    #[must_use]
    pub fn timeout_secs(self, secs: u64) -> Self {
        self.with("timeout_secs", json!(secs))
    }

    /// `policy: {default: ..., tools: {...}}`; `default` `None` follows annotations.
    #[must_use]
    pub fn policy(self, default: Option<&str>, tools: &[(&str, &str)]) -> Self {
        let mut policy = json!({});
        if let Some(d) = default {
            policy["default"] = json!(d);
        }
        if !tools.is_empty() {
            let map: serde_json::Map<String, Value> = tools
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            policy["tools"] = Value::Object(map);
        }
        self.with("policy", policy)
    }

    #[must_use]
    pub fn allow_all(self) -> Self {
        self.policy(Some("allow"), &[])
    }

    #[must_use]
    pub fn env(self, vars: &[(&str, &str)]) -> Self {
        let map: serde_json::Map<String, Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.with("env", Value::Object(map))
    }

    #[must_use]
    pub fn sandbox(self, read: &[&Path], write: &[&Path], network: bool) -> Self {
        let paths = |ps: &[&Path]| -> Vec<String> {
            ps.iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        self.with(
            "sandbox",
            json!({"enabled": true, "read": paths(read), "write": paths(write), "network": network}),
        )
    }

    #[must_use]
    pub fn sandbox_off(self) -> Self {
        self.with("sandbox", json!({"enabled": false}))
    }
}

/// `vtuber-mcp-test-server --http 127.0.0.1:0` as a child process, killed on drop.
pub struct HttpTestServer {
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    child: Child,
}

impl HttpTestServer {
    /// Starts the server; with `require_header` `(NAME, VALUE)` it answers 401 to requests
    /// without that header. Returns once it printed the URL it listens on.
    pub fn start(require_header: Option<(&str, &str)>) -> anyhow::Result<Self> {
        Self::start_with(require_header, &[])
    }

    /// [`Self::start`] with more arguments (e.g. `--stateless`).
    pub fn start_with(require_header: Option<(&str, &str)>, args: &[&str]) -> anyhow::Result<Self> {
        use std::io::BufRead as _;
        let mut cmd = std::process::Command::new(test_server_bin());
        cmd.args(["--http", "127.0.0.1:0"]).args(args);
        if let Some((name, value)) = require_header {
            cmd.arg("--require-header").arg(format!("{name}={value}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", test_server_bin().display()))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no stdout pipe");
        };
        // Owns the child from here, so an error below still kills it.
        let mut me = Self {
            url: String::new(),
            child,
        };
        // The server prints the line as soon as it is bound, or exits (EOF) on failure.
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        match line.trim().strip_prefix("listening ") {
            Some(url) if url.starts_with("http://") && url.ends_with("/mcp") => {
                me.url = url.to_owned();
                Ok(me)
            }
            _ => {
                let status = me.child.try_wait()?;
                bail!("the HTTP test server did not report its URL (exit {status:?}): {line:?}")
            }
        }
    }
}

impl Drop for HttpTestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A whole daemon config: the LLM at `base_url` plus an `mcp` section.
#[derive(Debug, Clone)]
pub struct McpConfig {
    pub base_url: String,
    pub servers: Vec<ServerSpec>,
    pub max_rounds: u32,
    pub call_timeout_secs: u64,
    pub approval_timeout_secs: u64,
    /// Extra top-level keys (e.g. `daemon`).
    pub extra: serde_json::Map<String, Value>,
}

impl McpConfig {
    pub fn new(base_url: &str, servers: Vec<ServerSpec>) -> Self {
        Self {
            base_url: base_url.into(),
            servers,
            max_rounds: 5,
            call_timeout_secs: 30,
            approval_timeout_secs: 60,
            extra: Default::default(),
        }
    }

    pub fn to_value(&self) -> Value {
        let servers: serde_json::Map<String, Value> = self
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect();
        let mut v = json!({
            "llm": {
                "provider": "openai_compatible",
                "base_url": self.base_url,
                "model": "mock-model",
                "timeout_secs": 10,
                "retries": 0,
            },
            "mcp": {
                "max_rounds": self.max_rounds,
                "call_timeout_secs": self.call_timeout_secs,
                "approval_timeout_secs": self.approval_timeout_secs,
                "servers": servers,
            },
        });
        for (k, x) in &self.extra {
            v[k] = x.clone();
        }
        v
    }

    /// The config file text (JSON, which YAML parsers read as flow style).
    pub fn to_yaml(&self) -> String {
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }
}

/// A [`TestDaemon`] started with extra environment variables (for `${VAR}` expansion in
/// the config). Killed on drop.
pub struct McpDaemon {
    pub daemon: TestDaemon,
}

impl McpDaemon {
    pub fn spawn(config_yaml: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let daemon = TestDaemon::new(config_yaml)?;
        Self::start(daemon, env)
    }

    /// Starts a daemon built with [`TestDaemon::new`] (so `log_filter` can be set first).
    pub fn start(mut daemon: TestDaemon, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        daemon.extra_env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        daemon.start()?;
        Ok(Self { daemon })
    }

    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    pub async fn client(&self, label: &str) -> anyhow::Result<JsonClient> {
        JsonClient::connect(&self.daemon.socket, label).await
    }
}

/// A subscribed protocol client that keeps replies as JSON and records every line it
/// received (to search for leaked secrets).
pub struct JsonClient {
    frames: FrameQueue,
    /// Every frame received, as sent.
    pub raw: Vec<String>,
}

impl JsonClient {
    pub async fn connect(socket: &Path, label: &str) -> anyhow::Result<Self> {
        let mut c = Self {
            frames: FrameQueue::open(socket).await?,
            raw: Vec::new(),
        };
        let hello = Hello {
            client: label.to_owned(),
            subscribe: true,
            audio: true,
        };
        c.request(hello.request(socket).0)
            .await?
            .map_err(|e| anyhow::anyhow!("hello refused: {e}"))?;
        Ok(c)
    }

    async fn next_frame(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<Value> {
        let received = self.frames.next(deadline).await?;
        json_frame(&received, &mut self.raw)
    }

    /// Sends `request`; the `result` object of its response, or its error. Events that
    /// arrive first stay queued.
    pub async fn request(&mut self, request: Request) -> anyhow::Result<Result<Value, ErrorBody>> {
        let id = self.frames.send(request).await?;
        let raw = &mut self.raw;
        self.frames
            .find(Duration::from_secs(30), |received| {
                let f = json_frame(received, raw)?;
                if f["kind"] != "response" || f["id"] != json!(id) {
                    return Ok(None);
                }
                Ok(Some(if let Some(err) = f.get("error") {
                    Err(serde_json::from_value(err.clone())?)
                } else {
                    Ok(f["result"].clone())
                }))
            })
            .await
    }

    /// Like [`request`](Self::request), failing on an error reply.
    pub async fn ok(&mut self, request: Request) -> anyhow::Result<Value> {
        let what = format!("{request:?}");
        self.request(request)
            .await?
            .map_err(|e| anyhow::anyhow!("{what} failed: {e}"))
    }

    /// Next broadcast event, with its seq.
    pub async fn next_event(&mut self, limit: Duration) -> anyhow::Result<(u64, Event)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let f = self.next_frame(deadline).await?;
            if f["kind"] == "event" {
                let seq = f["seq"].as_u64().unwrap_or(0);
                return Ok((seq, serde_json::from_value(f["event"].clone())?));
            }
        }
    }

    /// Collects events until `stop` returns true for one (included).
    pub async fn events_until(
        &mut self,
        limit: Duration,
        mut stop: impl FnMut(&Event) -> bool,
    ) -> anyhow::Result<Vec<Event>> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, ev) = self
                .next_event(left)
                .await
                .with_context(|| format!("events so far: {out:#?}"))?;
            let done = stop(&ev);
            out.push(ev);
            if done {
                return Ok(out);
            }
        }
    }

    /// Sends user input; the turn id.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<u64> {
        let r = self
            .ok(Request::SendText {
                text: text.to_owned(),
                images: Vec::new(),
            })
            .await?;
        r["turn_id"].as_u64().context("no turn_id in the reply")
    }

    /// Events of turn `turn_id` up to and including its `TurnEnded`.
    pub async fn finish_turn(
        &mut self,
        turn_id: u64,
        limit: Duration,
    ) -> anyhow::Result<Vec<Event>> {
        self.events_until(
            limit,
            |e| matches!(e, Event::TurnEnded { turn_id: t, .. } if *t == turn_id),
        )
        .await
    }

    pub async fn servers(&mut self) -> anyhow::Result<Vec<McpServerInfo>> {
        let r = self.ok(Request::ListMcpServers).await?;
        list_in(&r, "servers")
    }

    pub async fn tools(&mut self, server: Option<&str>) -> anyhow::Result<Vec<McpToolInfo>> {
        let r = self
            .ok(Request::ListMcpTools {
                server: server.map(str::to_owned),
            })
            .await?;
        list_in(&r, "tools")
    }

    pub async fn audit(&mut self, limit: Option<u32>) -> anyhow::Result<Vec<AuditEntry>> {
        let r = self
            .ok(Request::ToolAudit {
                since_ms: None,
                limit,
            })
            .await?;
        list_in(&r, "entries")
    }

    pub async fn approve(
        &mut self,
        request_id: u64,
        decision: ApprovalDecision,
    ) -> anyhow::Result<Value> {
        self.ok(Request::ApproveToolCall {
            request_id,
            decision,
        })
        .await
    }

    /// Waits until server `name` is `ready` (fails early if it `failed`).
    pub async fn wait_server_ready(
        &mut self,
        name: &str,
        limit: Duration,
    ) -> anyhow::Result<McpServerInfo> {
        let deadline = Instant::now() + limit;
        // Events queue from the subscription on, so a change after this listing is seen.
        let listed = self.servers().await?;
        let info = listed
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("server {name} not listed: {listed:?}"))?;
        match &info.state {
            McpServerState::Ready => {
                // Changes that led here were sent before the listing: drop them, so a
                // later wait for this server's next change does not see stale ones.
                self.frames.retain(|line| {
                    // Every queued line was read as JSON once already.
                    let f: Value = serde_json::from_slice(line).unwrap_or_default();
                    !(f["kind"] == "event"
                        && f["event"]["type"] == "mcp_server_changed"
                        && f["event"]["server"]["name"] == name)
                });
                return Ok(info.clone());
            }
            McpServerState::Failed { reason } => bail!("server {name} failed: {reason}"),
            _ => {}
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, ev) = self
                .next_event(left)
                .await
                .with_context(|| format!("server {name} not ready within {limit:?}"))?;
            if let Event::McpServerChanged { server } = ev
                && server.name == name
            {
                match &server.state {
                    McpServerState::Ready => return Ok(server),
                    McpServerState::Failed { reason } => {
                        bail!("server {name} failed: {reason}")
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A frame line as JSON; one read off the socket just now is recorded in `raw` first.
fn json_frame(received: &Received, raw: &mut Vec<String>) -> anyhow::Result<Value> {
    if received.fresh {
        raw.push(String::from_utf8_lossy(&received.line).into_owned());
    }
    Ok(serde_json::from_slice(&received.line)?)
}

/// The list in a reply: the field `key`, else the reply's only array field.
pub fn list_in<T: DeserializeOwned>(reply: &Value, key: &str) -> anyhow::Result<Vec<T>> {
    let arr = reply
        .get(key)
        .filter(|v| v.is_array())
        .or_else(|| {
            reply
                .as_object()
                .and_then(|o| o.values().find(|v| v.is_array()))
        })
        .with_context(|| format!("no `{key}` list in {reply}"))?;
    Ok(serde_json::from_value(arr.clone())?)
}

/// Landlock ABI version of the running kernel, 0 when it has none.
pub fn landlock_abi() -> i64 {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    const SYS_LANDLOCK_CREATE_RULESET: libc::c_long = 444;
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0 this call only reports the ABI
    // version; it creates nothing and touches no memory of ours.
    let v = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.max(0)
}

/// Microseconds since the Unix epoch (CLOCK_REALTIME), comparable across processes.
pub fn realtime_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// First reply asks for `calls`, every later one answers `final_text`.
pub fn tool_script(calls: Vec<MockToolCall>, final_text: &str) -> MockBehaviour {
    MockBehaviour::Script(vec![
        MockBehaviour::Reply(MockReply::tool_calls(calls)),
        MockBehaviour::reply(final_text),
    ])
}

/// A tool call with JSON arguments, as the mock LLM sends it.
pub fn call(id: &str, name: &str, args: Value) -> MockToolCall {
    MockToolCall::new(id, name, args.to_string())
}

/// How the last turn in `events` ended.
pub fn turn_outcome(events: &[Event]) -> TurnOutcome {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::TurnEnded { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .expect("turn ended")
}

/// The `tool` message answering `call_id` in a chat request.
pub fn tool_result(req: &RecordedRequest, call_id: &str) -> String {
    req.messages()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| panic!("no tool result for {call_id} in {:#?}", req.messages()))
}

/// Fails if `secret` shows up in the daemon log, the audit entries or any frame the
/// client received.
pub fn assert_no_secret(secret: &str, log: &str, audit: &[AuditEntry], frames: &[String]) {
    assert!(!log.contains(secret), "secret in the daemon log:\n{log}");
    let audit_text = format!("{audit:?}");
    assert!(
        !audit_text.contains(secret),
        "secret in the audit: {audit:#?}"
    );
    assert!(!frames.is_empty(), "no frames recorded");
    for frame in frames {
        assert!(!frame.contains(secret), "secret in a frame: {frame}");
    }
}
