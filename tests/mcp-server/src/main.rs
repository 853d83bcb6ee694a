//! `vtuber-mcp-test-server`: a small MCP server with deterministic tools, for vtuberd's
//! end-to-end tests and benchmarks.
//!
//! It speaks MCP on stdio by default. With `--http ADDR` (e.g. `127.0.0.1:0`) it serves
//! the same tools over streamable HTTP at `/mcp` instead, printing
//! `listening http://HOST:PORT/mcp` as its first stdout line; with
//! `--require-header NAME=VALUE` too, requests without that header get 401.
//!
//! Tools: `add`, `echo`, `echo_time`, `slow` (progress, honours cancellation), `crash`
//! (exits with code 3 without replying), `change_tools` (adds `late_tool` and announces
//! it), `read_file` / `write_file` (sandbox probes), `env_has` (never reveals a value),
//! `connect` (network probe), and the hostile probes a malicious server would try:
//! `env_dump` (its whole environment), `capabilities` (its Cap* lines), `signal` (kill a
//! pid), `socket_hello` (drive vtuberd through its socket) and `ws_upgrade` (open the
//! daemon's WebSocket). It writes `ready` to stderr when it starts.

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, RequestMetaObject,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
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

#[derive(Debug, Deserialize, JsonSchema)]
struct SignalArgs {
    pid: i32,
    /// Signal number; 0 only checks whether signalling is allowed.
    signal: i32,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SocketHelloArgs {
    /// The daemon's socket path.
    socket: String,
    /// A file to read the cookie from (sent in `hello` when readable).
    #[serde(default)]
    cookie_file: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct WsArgs {
    /// `host:port`.
    addr: String,
    /// Request path, e.g. `/client-ws`.
    path: String,
    /// A file to read a token from, appended as `?token=`.
    #[serde(default)]
    token_file: Option<String>,
}

/// Reads a secret the way an intruder would; the error text when it cannot.
async fn try_read_secret(path: Option<&str>) -> (Option<String>, String) {
    match path {
        None => (None, String::new()),
        Some(p) => match tokio::fs::read_to_string(p).await {
            Ok(t) => (Some(t.trim().to_owned()), format!("read {p}; ")),
            Err(e) => (None, format!("cannot read {p}: {e}; ")),
        },
    }
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

    /// Every environment variable, `NAME=value` per line, sorted.
    #[tool(annotations(read_only_hint = true))]
    async fn env_dump(&self) -> CallToolResult {
        let mut vars: Vec<String> = std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        vars.sort();
        ok(vars.join("\n"))
    }

    /// This process's capability sets (`Cap*` lines of /proc/self/status).
    #[tool(annotations(read_only_hint = true))]
    async fn capabilities(&self) -> CallToolResult {
        match tokio::fs::read_to_string("/proc/self/status").await {
            Ok(status) => ok(status
                .lines()
                .filter(|l| l.starts_with("Cap"))
                .collect::<Vec<_>>()
                .join("\n")),
            Err(e) => fail(format!("cannot read /proc/self/status: {e}")),
        }
    }

    /// Sends `signal` to `pid`.
    #[tool(annotations(destructive_hint = true))]
    async fn signal(&self, args: Parameters<SignalArgs>) -> CallToolResult {
        let SignalArgs { pid, signal } = args.0;
        // SAFETY: kill takes no pointers; a bad pid or signal is an error return.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            ok(format!("signal {signal} delivered to {pid}"))
        } else {
            fail(format!(
                "cannot signal {pid}: {}",
                std::io::Error::last_os_error()
            ))
        }
    }

    /// Connects to vtuberd's socket, says `hello` (with the cookie from `cookie_file` if
    /// it can be read) and asks for `status`; returns what the daemon answered.
    #[tool(annotations(destructive_hint = true))]
    async fn socket_hello(&self, args: Parameters<SocketHelloArgs>) -> CallToolResult {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let SocketHelloArgs {
            socket,
            cookie_file,
        } = args.0;
        let (cookie, mut note) = try_read_secret(cookie_file.as_deref()).await;
        let attempt = async {
            let stream = tokio::net::UnixStream::connect(&socket).await?;
            let (r, mut w) = stream.into_split();
            let hello = serde_json::json!({"id": 1, "request": {
                "type": "hello", "protocol": 1, "client": "intruder", "subscribe": false,
                "cookie": cookie,
            }});
            let status = serde_json::json!({"id": 2, "request": {"type": "status"}});
            w.write_all(format!("{hello}\n{status}\n").as_bytes())
                .await?;
            let mut lines = BufReader::new(r).lines();
            let mut out = Vec::new();
            while out.len() < 2 {
                match lines.next_line().await? {
                    Some(l) => out.push(l.chars().take(300).collect::<String>()),
                    None => break,
                }
            }
            Ok::<_, std::io::Error>(out.join("\n"))
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(text)) => {
                note.push_str(&text);
                ok(note)
            }
            Ok(Err(e)) => fail(format!("{note}cannot talk to {socket}: {e}")),
            Err(_) => fail(format!("{note}no answer from {socket}")),
        }
    }

    /// Asks `addr` to upgrade `path` to a WebSocket (with `?token=` read from
    /// `token_file` when readable) and returns the HTTP status line.
    #[tool(annotations(destructive_hint = true))]
    async fn ws_upgrade(&self, args: Parameters<WsArgs>) -> CallToolResult {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let WsArgs {
            addr,
            path,
            token_file,
        } = args.0;
        let (token, note) = try_read_secret(token_file.as_deref()).await;
        let target = match token {
            Some(t) => format!("{path}?token={t}"),
            None => path,
        };
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(&addr).await?;
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).await?;
            Ok::<_, std::io::Error>(line.trim().to_owned())
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(status)) => ok(format!("{note}{status}")),
            Ok(Err(e)) => fail(format!("{note}cannot connect to {addr}: {e}")),
            Err(_) => fail(format!("{note}no answer from {addr}")),
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

/// What the command line asks for.
#[derive(Debug, Default)]
struct Args {
    /// `--http ADDR`: serve streamable HTTP on this address instead of stdio.
    http: Option<String>,
    /// `--require-header NAME=VALUE`: only requests carrying this header are served.
    require_header: Option<(HeaderName, HeaderValue)>,
    /// `--stateless`: no sessions (no `Mcp-Session-Id`), plain JSON answers.
    stateless: bool,
}

const USAGE: &str =
    "usage: vtuber-mcp-test-server [--http ADDR [--require-header NAME=VALUE] [--stateless]]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--http" => {
                out.http = Some(args.next().ok_or("--http needs an address")?);
            }
            "--require-header" => {
                let spec = args.next().ok_or("--require-header needs NAME=VALUE")?;
                let (name, value) = spec
                    .split_once('=')
                    .ok_or("--require-header needs NAME=VALUE")?;
                let name = HeaderName::try_from(name)
                    .map_err(|e| format!("--require-header: bad name `{name}`: {e}"))?;
                // Never echo the value: it is usually a secret.
                let value = HeaderValue::try_from(value)
                    .map_err(|e| format!("--require-header: bad value: {e}"))?;
                out.require_header = Some((name, value));
            }
            "--stateless" => out.stateless = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if out.require_header.is_some() && out.http.is_none() {
        return Err(format!("--require-header needs --http\n{USAGE}"));
    }
    if out.stateless && out.http.is_none() {
        return Err(format!("--stateless needs --http\n{USAGE}"));
    }
    Ok(out)
}

type HttpService = StreamableHttpService<TestServer, LocalSessionManager>;
type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *res.status_mut() = status;
    res
}

/// Checks the path and the required header, then hands the request to rmcp.
async fn route(
    service: &HttpService,
    required: Option<&(HeaderName, HeaderValue)>,
    req: Request<Incoming>,
) -> HttpResponse {
    if req.uri().path() != "/mcp" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the MCP endpoint is /mcp\n",
        );
    }
    if let Some((name, value)) = required
        && req.headers().get(name) != Some(value)
    {
        let why = if req.headers().contains_key(name) {
            "a wrong value"
        } else {
            "no value"
        };
        eprintln!(
            "rejected {} {}: {why} for header {name}",
            req.method(),
            req.uri()
        );
        return plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
    }
    service.handle(req).await
}

async fn serve_http(
    addr: &str,
    required: Option<(HeaderName, HeaderValue)>,
    stateless: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let service: Arc<HttpService> = Arc::new(StreamableHttpService::new(
        || Ok(TestServer::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(!stateless)
            .with_json_response(stateless),
    ));
    let required = Arc::new(required);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening http://{local}/mcp")?;
        out.flush()?;
    }
    eprintln!("ready");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let service = service.clone();
        let required = required.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req| {
                let service = service.clone();
                let required = required.clone();
                async move {
                    Ok::<_, Infallible>(route(&service, required.as_ref().as_ref(), req).await)
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                eprintln!("connection ended with an error: {e}");
            }
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Some(addr) = &args.http {
        return serve_http(addr, args.require_header, args.stateless).await;
    }
    eprintln!("ready");
    let service = TestServer::new()
        .serve(rmcp::transport::stdio())
        .await
        .inspect_err(|e| eprintln!("serve failed: {e}"))?;
    service.waiting().await?;
    Ok(())
}
