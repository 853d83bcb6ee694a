//! `vtuber-mcp-test-server`: a small MCP server on stdio with deterministic tools, for
//! vtuberd's end-to-end tests and benchmarks.
//!
//! Tools: `add`, `echo`, `echo_time`, `slow` (progress, honours cancellation), `crash`
//! (exits with code 3 without replying), `change_tools` (adds `late_tool` and announces
//! it), `read_file` / `write_file` (sandbox probes), `env_has` (never reveals a value) and
//! `connect` (network probe). It writes `ready` to stderr when it starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, RequestMetaObject,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Name of the tool `change_tools` adds.
const LATE_TOOL: &str = "late_tool";

#[derive(Debug, Deserialize, JsonSchema)]
struct AddArgs {
    a: f64,
    b: f64,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct TextArgs {
    text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SlowArgs {
    /// Total time to take, in milliseconds.
    ms: u64,
    /// Progress notifications to send along the way (default 1).
    #[serde(default)]
    steps: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct PathArgs {
    path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct WriteArgs {
    path: String,
    text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct NameArgs {
    name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct AddrArgs {
    /// `host:port`.
    addr: String,
}

fn ok(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn fail(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// Microseconds since the Unix epoch (CLOCK_REALTIME), for cross-process timing.
fn realtime_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

#[derive(Clone)]
struct TestServer {
    tool_router: ToolRouter<Self>,
    /// `change_tools` was called: `late_tool` is listed.
    late: Arc<AtomicBool>,
}

#[tool_router]
impl TestServer {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            late: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Adds two numbers.
    #[tool(annotations(read_only_hint = true))]
    async fn add(&self, args: Parameters<AddArgs>) -> CallToolResult {
        ok(format!("{}", args.0.a + args.0.b))
    }

    /// Returns the text unchanged.
    #[tool(annotations(read_only_hint = true))]
    async fn echo(&self, args: Parameters<TextArgs>) -> CallToolResult {
        ok(args.0.text)
    }

    /// Returns `<text> @<µs>`: the text and when the call arrived (CLOCK_REALTIME µs).
    #[tool(annotations(read_only_hint = true))]
    async fn echo_time(&self, args: Parameters<TextArgs>) -> CallToolResult {
        let arrived = realtime_us();
        ok(format!("{} @{arrived}", args.0.text))
    }

    /// Sleeps `ms` milliseconds in `steps` steps, reporting progress after each.
    #[tool(annotations(read_only_hint = true))]
    async fn slow(
        &self,
        args: Parameters<SlowArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        ct: CancellationToken,
    ) -> CallToolResult {
        let SlowArgs { ms, steps } = args.0;
        let steps = steps.unwrap_or(1).max(1);
        let token = meta.get_progress_token();
        let step = Duration::from_millis(ms) / steps;
        for i in 1..=steps {
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = ct.cancelled() => {
                    eprintln!("slow: cancelled after {} of {steps} steps", i - 1);
                    return fail("cancelled");
                }
            }
            if let Some(token) = &token {
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(i))
                            .with_total(f64::from(steps))
                            .with_message(format!("step {i} of {steps}")),
                    )
                    .await;
            }
        }
        ok(format!("slept {ms} ms in {steps} steps"))
    }

    /// Exits the process at once (code 3) without replying.
    #[tool]
    async fn crash(&self) -> CallToolResult {
        eprintln!("crash: exiting with code 3");
        std::process::exit(3);
    }

    /// Adds the tool `late_tool` and sends `notifications/tools/list_changed`.
    #[tool(annotations(read_only_hint = true))]
    async fn change_tools(&self, peer: Peer<RoleServer>) -> CallToolResult {
        let added = !self.late.swap(true, Ordering::SeqCst);
        if added && let Err(e) = peer.notify_tool_list_changed().await {
            return fail(format!("could not announce the change: {e}"));
        }
        ok(if added {
            "added late_tool"
        } else {
            "late_tool already present"
        })
    }

    /// Reads a UTF-8 file.
    #[tool(annotations(read_only_hint = true))]
    async fn read_file(&self, args: Parameters<PathArgs>) -> CallToolResult {
        match tokio::fs::read_to_string(&args.0.path).await {
            Ok(text) => ok(text),
            Err(e) => fail(format!("cannot read {}: {e}", args.0.path)),
        }
    }

    /// Writes a file, replacing it.
    #[tool(annotations(destructive_hint = true))]
    async fn write_file(&self, args: Parameters<WriteArgs>) -> CallToolResult {
        let WriteArgs { path, text } = args.0;
        match tokio::fs::write(&path, text.as_bytes()).await {
            Ok(()) => ok(format!("wrote {} bytes to {path}", text.len())),
            Err(e) => fail(format!("cannot write {path}: {e}")),
        }
    }

    /// Says whether an environment variable is set (never its value).
    #[tool(annotations(read_only_hint = true))]
    async fn env_has(&self, args: Parameters<NameArgs>) -> CallToolResult {
        let name = args.0.name;
        match std::env::var_os(&name) {
            Some(v) if !v.is_empty() => ok(format!("{name} is set")),
            Some(_) => ok(format!("{name} is empty")),
            None => ok(format!("{name} is not set")),
        }
    }

    /// Opens (and closes) a TCP connection to `addr`.
    #[tool(annotations(read_only_hint = true))]
    async fn connect(&self, args: Parameters<AddrArgs>) -> CallToolResult {
        let addr = args.0.addr;
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&addr),
        )
        .await;
        match attempt {
            Ok(Ok(_)) => ok(format!("connected to {addr}")),
            Ok(Err(e)) => fail(format!("cannot connect to {addr}: {e}")),
            Err(_) => fail(format!("cannot connect to {addr}: timed out")),
        }
    }
}

impl TestServer {
    fn late_tool() -> Tool {
        let mut schema = JsonObject::new();
        schema.insert("type".into(), "object".into());
        schema.insert("properties".into(), JsonObject::new().into());
        Tool::new(
            LATE_TOOL,
            "Exists only after change_tools was called.",
            Arc::new(schema),
        )
        .annotate(ToolAnnotations::new().read_only(true))
    }

    fn has_late(&self) -> bool {
        self.late.load(Ordering::SeqCst)
    }
}

impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(rmcp::model::Implementation::new(
            "vtuber-mcp-test-server",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        if self.has_late() {
            tools.push(Self::late_tool());
        }
        Ok(ListToolsResult {
            tools,
            ..Default::default()
        })
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if name == LATE_TOOL && self.has_late() {
            return Some(Self::late_tool());
        }
        self.tool_router.get(name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == LATE_TOOL && self.has_late() {
            return Ok(ok("late_tool ran").into());
        }
        let tcc = ToolCallContext::new(self, request, context);
        self.tool_router.call(tcc).await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("ready");
    let service = TestServer::new()
        .serve(rmcp::transport::stdio())
        .await
        .inspect_err(|e| eprintln!("serve failed: {e}"))?;
    service.waiting().await?;
    Ok(())
}
