//! MCP figures: the stdio round trip of the test server itself (an rmcp client, no
//! daemon), the daemon's own overhead between the LLM finishing a tool call and the
//! request reaching the server, and how long a server takes to become ready with and
//! without the sandbox.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vtuber_shared::{Event, McpServerState, Request};
use vtuber_test_support::daemon::TestDaemon;
use vtuber_test_support::mcp::{McpConfig, McpDaemon, ServerSpec, realtime_us, test_server_bin};

use crate::{percentile, sorted};

pub async fn bench(base_url: &str) -> anyhow::Result<()> {
    if !test_server_bin().exists() {
        bail!(
            "{} not built: run `cargo build --release --bins` first",
            test_server_bin().display()
        );
    }
    stdio_round_trip().await?;
    dispatch_overhead().await?;
    server_start(base_url).await?;
    Ok(())
}

/// 1000 `echo` calls through an rmcp client straight to the test server.
async fn stdio_round_trip() -> anyhow::Result<()> {
    let (transport, _stderr) =
        TokioChildProcess::builder(tokio::process::Command::new(test_server_bin()))
            .stderr(std::process::Stdio::null())
            .spawn()?;
    let client = ().serve(transport).await.context("initialize")?;
    let args = json!({"text": "hello"});
    let params = CallToolRequestParams::new("echo")
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    for _ in 0..100 {
        client.call_tool(params.clone()).await?;
    }
    let mut times = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        let r = client.call_tool(params.clone()).await?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if r.is_error == Some(true) {
            bail!("echo failed: {r:?}");
        }
    }
    client.cancel().await.ok();
    let s = sorted(times);
    println!(
        "mcp: stdio round trip (rmcp client → test server echo) p50 {:.1} µs, p99 {:.1} µs (1000 calls)",
        percentile(&s, 0.5),
        percentile(&s, 0.99)
    );
    Ok(())
}

/// An OpenAI-compatible endpoint that asks for `test__echo_time` and stamps
/// (CLOCK_REALTIME µs) the moment it writes the chunk that completes the tool call;
/// when the tool result comes back it answers with text and records the server's
/// arrival stamp from the result.
#[derive(Default)]
struct Stamps {
    finished: Vec<u128>,
    arrived: Vec<u128>,
}

async fn read_request(conn: &mut TcpStream) -> anyhow::Result<(String, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let body = serde_json::from_slice(&buf[header_end..header_end + len]).unwrap_or(Value::Null);
    Ok((path, body))
}

fn sse(delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({
        "id": "bench", "object": "chat.completion.chunk", "created": 0, "model": "mock-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {chunk}\n\n")
}

async fn serve_one(mut conn: TcpStream, stamps: Arc<Mutex<Stamps>>) -> anyhow::Result<()> {
    conn.set_nodelay(true)?;
    let (path, body) = read_request(&mut conn).await?;
    if path.ends_with("/models") {
        let list = json!({"object": "list", "data": [{"id": "mock-model", "object": "model"}]})
            .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{list}",
            list.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        return Ok(());
    }
    conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    if last["role"] == "tool" {
        let content = last["content"].as_str().unwrap_or_default();
        let arrived: u128 = content
            .rsplit_once('@')
            .and_then(|(_, us)| us.trim().parse().ok())
            .with_context(|| format!("no arrival stamp in {content:?}"))?;
        stamps.lock().unwrap().arrived.push(arrived);
        let text = sse(json!({"role": "assistant", "content": "ok"}), None)
            + &sse(json!({}), Some("stop"))
            + "data: [DONE]\n\n";
        conn.write_all(text.as_bytes()).await?;
    } else {
        let head = sse(json!({"role": "assistant", "content": ""}), None)
            + &sse(
                json!({"tool_calls": [{"index": 0, "id": "b1", "type": "function",
                    "function": {"name": "test__echo_time", "arguments": "{\"text\":\"x\"}"}}]}),
                None,
            );
        conn.write_all(head.as_bytes()).await?;
        conn.flush().await?;
        // Let the daemon take in the call itself; only the closing chunk is timed.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let tail = sse(json!({}), Some("tool_calls")) + "data: [DONE]\n\n";
        stamps.lock().unwrap().finished.push(realtime_us());
        conn.write_all(tail.as_bytes()).await?;
    }
    conn.flush().await?;
    conn.shutdown().await.ok();
    Ok(())
}

async fn dispatch_overhead() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}/v1", listener.local_addr()?);
    let stamps = Arc::new(Mutex::new(Stamps::default()));
    let server_stamps = stamps.clone();
    let server = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let stamps = server_stamps.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_one(conn, stamps).await {
                    eprintln!("bench LLM: {e:#}");
                }
            });
        }
    });
    let config = McpConfig::new(&base_url, vec![ServerSpec::test_server()]);
    let mut d = TestDaemon::new(&config.to_yaml())?;
    d.log_filter = "warn".into();
    let d = McpDaemon::start(d, &[])?;
    let mut c = d.client("bench-mcp").await?;
    c.wait_server_ready("test", Duration::from_secs(30)).await?;
    const TURNS: usize = 220;
    for i in 0..TURNS {
        if i % 50 == 0 {
            // Keep prompts short.
            c.ok(Request::NewConversation).await?;
        }
        let id = c.send_text(&format!("t{i}")).await?;
        let events = c.finish_turn(id, Duration::from_secs(30)).await?;
        if !events
            .iter()
            .any(|e| matches!(e, Event::ToolCallEnded { .. }))
        {
            bail!("turn {i} ran no tool: {events:?}\n{}", d.log_text());
        }
    }
    server.abort();
    let st = stamps.lock().unwrap();
    if st.finished.len() != TURNS || st.arrived.len() != TURNS {
        bail!(
            "stamps: {} finished, {} arrived",
            st.finished.len(),
            st.arrived.len()
        );
    }
    let gaps: Vec<f64> = st
        .finished
        .iter()
        .zip(&st.arrived)
        .skip(20)
        .map(|(f, a)| (*a as f64 - *f as f64) / 1000.0)
        .collect();
    let s = sorted(gaps);
    println!(
        "mcp: LLM's final tool-call chunk written → call arrives in the test server p50 {:.2} ms, p99 {:.2} ms ({} turns; includes the daemon's SSE parsing, policy check, events and the stdio hop)",
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.len()
    );
    Ok(())
}

/// Daemon spawn → server ready, and restart → ready, with and without the sandbox.
async fn server_start(base_url: &str) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    for sandboxed in [false, true] {
        let server = if sandboxed {
            ServerSpec::test_server().sandbox(&[scratch.path()], &[scratch.path()], false)
        } else {
            ServerSpec::test_server()
        };
        let config = McpConfig::new(base_url, vec![server]).to_yaml();
        let mut from_spawn = Vec::new();
        let mut level = None;
        for _ in 0..10 {
            let mut d = TestDaemon::new(&config)?;
            d.log_filter = "warn".into();
            let t = Instant::now();
            let d = McpDaemon::start(d, &[])?;
            let mut c = d.client("bench-start").await?;
            let info = c.wait_server_ready("test", Duration::from_secs(30)).await?;
            from_spawn.push(t.elapsed().as_secs_f64() * 1e3);
            level = Some(info.sandbox);
        }
        let mut d = TestDaemon::new(&config)?;
        d.log_filter = "warn".into();
        let d = McpDaemon::start(d, &[])?;
        let mut c = d.client("bench-restart").await?;
        c.wait_server_ready("test", Duration::from_secs(30)).await?;
        let mut restart = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            c.ok(Request::RestartMcpServer {
                name: "test".into(),
            })
            .await?;
            // Ready again after having left ready.
            let mut left = false;
            c.events_until(Duration::from_secs(30), |e| match e {
                Event::McpServerChanged { server } if server.name == "test" => {
                    let ready = server.state == McpServerState::Ready;
                    let done = ready && left;
                    left |= !ready;
                    done
                }
                _ => false,
            })
            .await?;
            restart.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (a, b) = (sorted(from_spawn), sorted(restart));
        println!(
            "mcp: server start {} (sandbox {:?}): daemon spawn → ready p50 {:.1} ms; restart → ready p50 {:.1} ms, p99 {:.1} ms",
            if sandboxed {
                "sandboxed"
            } else {
                "unsandboxed"
            },
            level.context("no runs")?,
            percentile(&a, 0.5),
            percentile(&b, 0.5),
            percentile(&b, 0.99)
        );
    }
    Ok(())
}
