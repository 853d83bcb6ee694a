//! `vtuber-bench`: prints the daemon's measured figures.
//!
//! Run with `cargo run --release -p vtuber-e2e --bin vtuber-bench [-- WHAT...]` where
//! WHAT is any of `startup rss rtt overhead fanout llm mcp speech first-audio barge-in voice-rss web
//! chain long-line big-reply` (default: all), or `soak [MINUTES [REPORT_SECS [CLIENTS]]]` alone
//! (see `soak.rs`, `scripts/soak.sh`). Build the
//! binaries in the same profile first (`cargo build --release --bins`).

mod bounds;
mod chain;
mod llm;
mod mcp;
mod soak;
mod voice;
mod web;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vtuber_shared::{Event, Reply, Request};
use vtuber_test_support::daemon::{TestClient, TestDaemon, bin};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

fn openai_config(base_url: &str) -> String {
    format!(
        "llm:\n  provider: openai_compatible\n  base_url: {base_url}\n  model: mock-model\n  retries: 0\n  max_tokens: 2048\ndaemon:\n  client_queue: 4096\n"
    )
}

/// A started daemon that logs warnings only, so logging does not skew timings.
fn quiet_daemon(config: &str) -> anyhow::Result<TestDaemon> {
    let mut d = TestDaemon::new(config)?;
    d.log_filter = "warn".into();
    d.start()?;
    Ok(d)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS missing")
}

pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(utime + stime)
}

/// Daemon start (process spawn) to the socket accepting a connection.
fn bench_startup(mock: &MockLlm) -> anyhow::Result<()> {
    let mut times = Vec::new();
    for _ in 0..20 {
        let mut d = TestDaemon::new(&openai_config(&mock.base_url()))?;
        d.log_filter = "warn".into();
        let t = Instant::now();
        d.start()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let s = sorted(times);
    println!(
        "startup: spawn → socket accepting: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms (20 runs; target ≤ 50 ms)",
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s[0]
    );
    // Same with the embedded model configured (it loads in the background).
    let mut times = Vec::new();
    for _ in 0..10 {
        let mut d = TestDaemon::new("")?;
        d.log_filter = "warn".into();
        link_model(&d)?;
        let t = Instant::now();
        d.start()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let s = sorted(times);
    println!(
        "startup (embedded model loading in background): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&s, 0.5),
        percentile(&s, 0.99)
    );
    Ok(())
}

fn default_model() -> PathBuf {
    std::env::var_os("VTUBER_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            vtuber_shared::paths::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
        })
}

fn link_model(d: &TestDaemon) -> anyhow::Result<()> {
    let model = default_model();
    if !model.exists() {
        bail!("{} missing: run scripts/fetch-model.sh", model.display());
    }
    std::fs::create_dir_all(d.models_dir())?;
    let target = d.models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !target.exists() {
        std::os::unix::fs::symlink(&model, target)?;
    }
    Ok(())
}

async fn bench_rss(mock: &MockLlm) -> anyhow::Result<()> {
    let d = quiet_daemon(&openai_config(&mock.base_url()))?;
    let pid = d.pid().context("pid")?;
    let mut c = d.client("rss").await?;
    c.request(Request::Status).await??;
    println!(
        "rss: idle daemon, no model: {:.1} MB (target ≤ 20 MB)",
        rss_kib(pid)? as f64 / 1024.0
    );
    let mut e = TestDaemon::new("")?;
    e.log_filter = "warn".into();
    link_model(&e)?;
    e.start()?;
    let epid = e.pid().context("pid")?;
    let before = rss_kib(epid)?;
    let mut c = e.client("rss").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Reply::Status(s) = c.request(Request::Status).await?? else {
            bail!("no status");
        };
        if s.model_load == vtuber_shared::ModelLoad::Ready {
            break;
        }
        if Instant::now() > deadline {
            bail!("model did not load: {:?}", s.model_load);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "rss: embedded default, at socket ready {:.1} MB, model loaded {:.1} MB",
        before as f64 / 1024.0,
        rss_kib(epid)? as f64 / 1024.0
    );
    Ok(())
}

async fn bench_rtt(mock: &MockLlm) -> anyhow::Result<()> {
    let d = quiet_daemon(&openai_config(&mock.base_url()))?;
    let mut c = d.client("rtt").await?;
    for _ in 0..1000 {
        c.request(Request::Ping).await??;
    }
    let mut times = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        c.request(Request::Ping).await??;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let s = sorted(times);
    println!(
        "rtt: ping round trip p50 {:.1} µs, p99 {:.1} µs (20000 requests; target p50 ≤ 100 µs)",
        percentile(&s, 0.5),
        percentile(&s, 0.99)
    );
    let mut times = Vec::new();
    for _ in 0..5000 {
        let t = Instant::now();
        c.request(Request::Status).await??;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let s = sorted(times);
    println!(
        "rtt: status round trip p50 {:.1} µs, p99 {:.1} µs",
        percentile(&s, 0.5),
        percentile(&s, 0.99)
    );
    Ok(())
}

/// Time from a direct streaming request to the mock until its first content chunk.
async fn backend_ttft(base_url: &str) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .context("url")?
        .to_owned();
    let body = r#"{"model":"mock-model","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    s.set_nodelay(true)?;
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 8192];
    let mut seen = Vec::new();
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("mock closed before content");
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(9).any(|w| w == b"\"content\"") {
            return Ok(t.elapsed().as_secs_f64() * 1e3);
        }
    }
}

async fn bench_overhead(mock: &MockLlm) -> anyhow::Result<()> {
    mock.set_behaviour(MockBehaviour::reply("Hi."));
    let d = quiet_daemon(&openai_config(&mock.base_url()))?;
    let mut c = d.client("overhead").await?;
    let mut through_daemon = Vec::new();
    let mut direct = Vec::new();
    for i in 0..60 {
        // Fresh conversation so prompts stay the same size.
        c.request(Request::NewConversation).await??;
        direct.push(backend_ttft(&mock.base_url()).await?);
        let t = Instant::now();
        let Reply::TurnAccepted { turn_id, .. } = c
            .request(Request::SendText {
                text: format!("x{i}"),
                images: Vec::new(),
            })
            .await??
        else {
            bail!("not accepted");
        };
        let mut first = None;
        loop {
            let (_, ev) = c.next_event(Duration::from_secs(10)).await?;
            match ev {
                Event::Delta { turn_id: t2, .. } if t2 == turn_id && first.is_none() => {
                    first = Some(t.elapsed().as_secs_f64() * 1e3)
                }
                Event::TurnEnded { turn_id: t2, .. } if t2 == turn_id => break,
                _ => {}
            }
        }
        if i >= 10 {
            through_daemon.push(first.context("no delta")?);
        }
    }
    let (a, b) = (sorted(through_daemon), sorted(direct[10..].to_vec()));
    println!(
        "overhead: send_text → first delta at client p50 {:.2} ms; mock's own time to first token p50 {:.2} ms; daemon-added p50 {:.2} ms (target ≤ 1 ms)",
        percentile(&a, 0.5),
        percentile(&b, 0.5),
        percentile(&a, 0.5) - percentile(&b, 0.5)
    );
    Ok(())
}

async fn bench_fanout(mock: &MockLlm) -> anyhow::Result<()> {
    let tokens: Vec<String> = (0..500).map(|i| format!(" t{i}")).collect();
    let expected: String = tokens.concat();
    mock.set_behaviour(MockBehaviour::Reply(
        MockReply::tokens(tokens).with_rate(500.0),
    ));
    let d = quiet_daemon(&openai_config(&mock.base_url()))?;
    let pid = d.pid().context("pid")?;
    let mut clients = Vec::new();
    for i in 0..100 {
        clients.push(TestClient::connect(&d.socket, &format!("c{i}"), true).await?);
    }
    let mut driver = TestClient::connect(&d.socket, "driver", false).await?;
    let cpu0 = cpu_ticks(pid)?;
    let t = Instant::now();
    let Reply::TurnAccepted { turn_id, .. } = driver
        .request(Request::SendText {
            text: "go".into(),
            images: Vec::new(),
        })
        .await??
    else {
        bail!("not accepted");
    };
    let mut peak_rss = rss_kib(pid)?;
    let mut handles = Vec::new();
    for mut c in clients {
        let expected = expected.clone();
        handles.push(tokio::spawn(async move {
            let mut text = String::new();
            let mut last_seq = 0;
            let mut in_order = true;
            let mut count = 0usize;
            loop {
                let (seq, ev) = c.next_event(Duration::from_secs(60)).await?;
                if last_seq != 0 && seq != last_seq + 1 {
                    in_order = false;
                }
                last_seq = seq;
                match ev {
                    Event::Delta {
                        turn_id: t2,
                        text: d,
                    } if t2 == turn_id => {
                        count += 1;
                        text.push_str(&d)
                    }
                    Event::TurnEnded { turn_id: t2, .. } if t2 == turn_id => break,
                    Event::Lagged { .. } => in_order = false,
                    _ => {}
                }
            }
            anyhow::Ok((text == expected && in_order, count))
        }));
    }
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        for _ in 0..400 {
            if let Ok(r) = rss_kib(pid) {
                peak = peak.max(r);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        peak
    });
    let mut ok = 0;
    let mut deltas = 0;
    for h in handles {
        let (good, n) = h.await??;
        if good {
            ok += 1;
        }
        deltas = n;
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - cpu0) as f64 / 100.0;
    sampler.abort();
    peak_rss = peak_rss.max(rss_kib(pid)?);
    println!(
        "fanout: 100 clients, 500-token reply ({deltas} deltas each): {ok}/100 got every event in order; {:.2} s wall, daemon CPU {:.2} s ({:.0}% of one core), daemon RSS {:.1} MB",
        wall,
        cpu,
        100.0 * cpu / wall,
        peak_rss as f64 / 1024.0
    );
    Ok(())
}

async fn bench_llm() -> anyhow::Result<()> {
    let model = default_model();
    let prompt = "Write a short paragraph about why the sky is blue.";
    let speed = llm::embedded_tokens_per_sec(&model, prompt, 128, None).await?;
    println!("llm: embedded SmolLM2-135M Q4_1 via vtuberd: {speed}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !bin("vtuberd").exists() {
        bail!(
            "{} not built: run `cargo build --release --bins` first",
            bin("vtuberd").display()
        );
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "soak") {
        let num = |i: usize, default: f64| -> anyhow::Result<f64> {
            match args.get(i) {
                Some(v) => v
                    .parse()
                    .with_context(|| format!("soak [MINUTES [REPORT_SECS [CLIENTS]]]: `{v}`")),
                None => Ok(default),
            }
        };
        let ok = soak::soak(num(1, 60.0)?, num(2, 300.0)? as u64, num(3, 50.0)? as usize).await?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    let all = args.is_empty();
    let want = |name: &str| all || args.iter().any(|a| a == name);
    let mock = MockLlm::start(MockBehaviour::reply("Hi."))
        .await
        .context("mock LLM")?;
    if want("startup") {
        let m = &mock;
        tokio::task::block_in_place(|| bench_startup(m))?;
    }
    if want("rss") {
        bench_rss(&mock).await?;
    }
    if want("rtt") {
        bench_rtt(&mock).await?;
    }
    if want("overhead") {
        bench_overhead(&mock).await?;
    }
    if want("fanout") {
        bench_fanout(&mock).await?;
    }
    if want("llm") {
        bench_llm().await?;
    }
    if want("mcp") {
        mcp::bench(&mock.base_url()).await?;
    }
    if want("speech") {
        tokio::task::block_in_place(voice::bench_engines)?;
    }
    if want("first-audio") {
        voice::bench_first_audio().await?;
    }
    if want("barge-in") {
        voice::bench_barge_in().await?;
    }
    if want("voice-rss") {
        voice::bench_voice_rss().await?;
    }
    if want("web") {
        web::bench().await?;
    }
    if want("chain") {
        chain::bench(60).await?;
    }
    if want("long-line") {
        bounds::bench_long_line().await?;
    }
    if want("big-reply") {
        bounds::bench_big_reply().await?;
    }
    Ok(())
}
