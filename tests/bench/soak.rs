//! `vtuber-bench soak [MINUTES [REPORT_SECS [CLIENTS]]]` (issue 19): drives one daemon
//! with CLIENTS clients (four in five on the socket, the rest on the WebSocket), a mock
//! LLM answering about 100 turns a minute, a tool call every other LLM request (the
//! workspace's MCP test server), a barge-in every tenth turn and client churn (every
//! listener leaves and a new one comes after a few seconds to a minute). Every
//! REPORT_SECS it prints the daemon's RSS, open descriptors and threads, p50/p99 turn
//! latency and the events lost so far (gaps in a socket client's `seq`, or `lagged`).
//! Exits non-zero when an event was lost, a listener's connection was closed on it, a
//! turn failed, or RSS or descriptors grew (last report against the first after warm-up).
//! `scripts/soak.sh` runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use vtuber_shared::{Event, Reply, Request, TurnOutcome};
use vtuber_test_support::daemon::{TestClient, TestDaemon};
use vtuber_test_support::mcp::{McpConfig, ServerSpec, call};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

use crate::{percentile, rss_kib, sorted};

/// What every client task adds to.
#[derive(Default)]
struct Counters {
    /// Events a socket client never got (gaps in `seq`, `lagged` counts).
    lost: AtomicU64,
    /// Events socket listeners received.
    events: AtomicU64,
    /// Messages WebSocket listeners received.
    ws_messages: AtomicU64,
    /// Connections (socket or WebSocket) the daemon closed or broke on a listener.
    dropped: AtomicU64,
    /// Listener connections made (first ones and churn).
    connects: AtomicU64,
    /// Turns that ended `failed`.
    failed: AtomicU64,
    /// Turns that ended `interrupted` (the barge-ins).
    interrupted: AtomicU64,
    stop: AtomicBool,
}

/// Checks one client's event numbers: each is the previous one plus one.
#[derive(Default)]
struct SeqCheck {
    last: Option<u64>,
}

impl SeqCheck {
    fn see(&mut self, seq: u64, event: &Event, counters: &Counters) {
        if let Event::Lagged { missed } = event {
            counters.lost.fetch_add(*missed, Ordering::Relaxed);
            self.last = None;
            return;
        }
        if let Some(last) = self.last
            && seq != last + 1
        {
            counters
                .lost
                .fetch_add(seq.saturating_sub(last + 1), Ordering::Relaxed);
        }
        self.last = Some(seq);
    }
}

/// A small deterministic sequence for lifetimes (no dependency on a random crate).
fn lifetime(i: u64) -> Duration {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Duration::from_millis(3_000 + (x >> 33) % 57_000)
}

/// A socket listener: connects, checks every event's `seq`, leaves after its lifetime,
/// and comes back as a new client.
async fn socket_listener(d: Arc<TestDaemon>, id: u64, counters: Arc<Counters>) {
    let mut round = 0;
    while !counters.stop.load(Ordering::Relaxed) {
        round += 1;
        let Ok(mut c) = d.client(&format!("soak-{id}")).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        counters.connects.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + lifetime(id * 1000 + round);
        let mut check = SeqCheck::default();
        while Instant::now() < until && !counters.stop.load(Ordering::Relaxed) {
            match c.next_event(Duration::from_millis(500)).await {
                Ok((seq, ev)) => {
                    counters.events.fetch_add(1, Ordering::Relaxed);
                    check.see(seq, &ev, &counters);
                }
                Err(e) if e.to_string().contains("timed out") => continue,
                Err(_) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// A WebSocket listener: reads every message, answers playback handshakes, leaves and
/// comes back like the socket ones.
async fn ws_listener(url: String, id: u64, counters: Arc<Counters>) {
    let socket_url = vtuber_test_support::web::PageUrl::parse(&url).socket_url();
    let mut round = 0;
    while !counters.stop.load(Ordering::Relaxed) {
        round += 1;
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(socket_url.as_str()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        counters.connects.fetch_add(1, Ordering::Relaxed);
        let until = tokio::time::Instant::now() + lifetime(id * 1000 + round + 7);
        loop {
            if counters.stop.load(Ordering::Relaxed) {
                break;
            }
            match tokio::time::timeout_at(until, ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Text(t)))) => {
                    counters.ws_messages.fetch_add(1, Ordering::Relaxed);
                    if t.as_str().contains("\"backend-synth-complete\"") {
                        let done = json!({"type": "frontend-playback-complete"}).to_string();
                        let _ = ws.send(Message::text(done)).await;
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        let _ = ws.close(None).await;
    }
}

/// Sends `text` on the driver and returns its turn id.
async fn send(driver: &mut TestClient, text: &str) -> anyhow::Result<u64> {
    match driver
        .request(Request::SendText {
            text: text.into(),
            images: Vec::new(),
        })
        .await?
    {
        Ok(Reply::TurnAccepted { turn_id, .. }) => Ok(turn_id),
        other => bail!("send_text: {other:?}"),
    }
}

/// Reads the driver's events until turn `turn_id` ends; its outcome.
async fn ended(
    driver: &mut TestClient,
    check: &mut SeqCheck,
    counters: &Counters,
    turn_id: u64,
) -> anyhow::Result<TurnOutcome> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (seq, ev) = driver.next_event(left).await.context("turn end")?;
        check.see(seq, &ev, counters);
        if let Event::TurnEnded {
            turn_id: t,
            outcome,
            ..
        } = ev
            && t == turn_id
        {
            return Ok(outcome);
        }
    }
}

/// Count of the daemon's open descriptors and its threads.
fn fds_threads(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    (fds, threads)
}

/// One report line's figures.
struct Sample {
    rss_kib: u64,
    fds: usize,
}

pub async fn soak(minutes: f64, report_secs: u64, clients: usize) -> anyhow::Result<bool> {
    let words: Vec<String> = (0..24).map(|i| format!("word{i} ")).collect();
    let reply = MockReply::tokens(words).with_rate(400.0);
    let mock = MockLlm::start(MockBehaviour::Cycle(vec![
        MockBehaviour::Reply(MockReply::tool_calls(vec![call(
            "soak",
            "test__echo",
            json!({"text": "soak"}),
        )])),
        MockBehaviour::Reply(reply),
    ]))
    .await
    .context("mock LLM")?;
    let server = ServerSpec::test_server().allow_all();
    let mut config = McpConfig::new(&mock.base_url(), vec![server]).to_value();
    config["web"] = json!({"port": 0, "max_messages_per_sec": 0});
    let mut d = TestDaemon::new(&config.to_string())?;
    d.log_filter = "warn".into();
    d.start()?;
    let d = Arc::new(d);
    let pid = d.pid().context("pid")?;
    let mut driver = d.client("soak-driver").await?;
    let url = loop {
        if let Ok(Reply::Status(s)) = driver.request(Request::Status).await?
            && let Some(url) = s.web_url
        {
            break url;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let counters = Arc::new(Counters::default());
    let ws_clients = clients / 5;
    let socket_clients = clients.saturating_sub(ws_clients + 1);
    let mut tasks = Vec::new();
    for i in 0..socket_clients as u64 {
        tasks.push(tokio::spawn(socket_listener(
            d.clone(),
            i,
            counters.clone(),
        )));
    }
    for i in 0..ws_clients as u64 {
        tasks.push(tokio::spawn(ws_listener(url.clone(), i, counters.clone())));
    }
    println!(
        "soak: {minutes} min, {socket_clients} socket + {ws_clients} WebSocket listeners and 1 driver, ~100 turns/min, a tool call every other LLM request, a barge-in every 10th turn; reports every {report_secs} s"
    );
    println!(
        "{:>6} {:>6} {:>9} {:>5} {:>7} {:>8} {:>8} {:>6} {:>9} {:>10} {:>8}",
        "min",
        "turns",
        "RSS MB",
        "fds",
        "threads",
        "p50 ms",
        "p99 ms",
        "lost",
        "events",
        "ws msgs",
        "connects"
    );

    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut next_report = Instant::now() + Duration::from_secs(report_secs);
    let start = Instant::now();
    let mut window: Vec<f64> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut turns = 0u64;
    let mut check = SeqCheck::default();
    let mut pace = tokio::time::interval(Duration::from_millis(600));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        pace.tick().await;
        turns += 1;
        let t0 = Instant::now();
        let turn_id = send(&mut driver, &format!("turn {turns}")).await?;
        let last = if turns.is_multiple_of(10) {
            // Barge in as soon as the first turn is under way.
            loop {
                let (seq, ev) = driver.next_event(Duration::from_secs(30)).await?;
                check.see(seq, &ev, &counters);
                if matches!(ev, Event::TurnStarted { turn_id: t, .. } if t == turn_id) {
                    break;
                }
            }
            let second = send(&mut driver, &format!("barge-in {turns}")).await?;
            let first = ended(&mut driver, &mut check, &counters, turn_id).await?;
            if first == TurnOutcome::Interrupted {
                counters.interrupted.fetch_add(1, Ordering::Relaxed);
            }
            second
        } else {
            turn_id
        };
        match ended(&mut driver, &mut check, &counters, last).await? {
            TurnOutcome::Failed { error } => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("turn {turns} failed: {error}");
            }
            TurnOutcome::Interrupted => {
                counters.interrupted.fetch_add(1, Ordering::Relaxed);
            }
            TurnOutcome::Finished => {}
        }
        window.push(t0.elapsed().as_secs_f64() * 1000.0);
        if Instant::now() >= next_report || Instant::now() >= end {
            next_report += Duration::from_secs(report_secs);
            let rss = rss_kib(pid)?;
            let (fds, threads) = fds_threads(pid);
            let lat = sorted(std::mem::take(&mut window));
            println!(
                "{:>6.1} {:>6} {:>9.1} {:>5} {:>7} {:>8.1} {:>8.1} {:>6} {:>9} {:>10} {:>8}",
                start.elapsed().as_secs_f64() / 60.0,
                turns,
                rss as f64 / 1024.0,
                fds,
                threads,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                counters.lost.load(Ordering::Relaxed),
                counters.events.load(Ordering::Relaxed),
                counters.ws_messages.load(Ordering::Relaxed),
                counters.connects.load(Ordering::Relaxed),
            );
            samples.push(Sample { rss_kib: rss, fds });
        }
    }
    counters.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }

    let lost = counters.lost.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let dropped = counters.dropped.load(Ordering::Relaxed);
    let mut ok = true;
    println!(
        "soak: {turns} turns, {} interrupted by barge-ins, {failed} failed; {lost} events lost; {dropped} listener connections dropped by the daemon",
        counters.interrupted.load(Ordering::Relaxed)
    );
    if lost > 0 || failed > 0 || dropped > 0 {
        ok = false;
    }
    // Flat: the last report against the first one after warm-up (the second, when
    // there are at least three).
    let first = samples.get(if samples.len() >= 3 { 1 } else { 0 });
    if let (Some(first), Some(last)) = (first, samples.last()) {
        let rss_limit = first.rss_kib + first.rss_kib / 2 + 10 * 1024;
        let fds_limit = first.fds + 16;
        println!(
            "soak: RSS {:.1} → {:.1} MB (limit {:.1}), fds {} → {} (limit {fds_limit})",
            first.rss_kib as f64 / 1024.0,
            last.rss_kib as f64 / 1024.0,
            rss_limit as f64 / 1024.0,
            first.fds,
            last.fds
        );
        if last.rss_kib > rss_limit || last.fds > fds_limit {
            ok = false;
        }
    }
    let alive = d.client("soak-end").await.is_ok();
    if !alive {
        println!("soak: the daemon no longer answers");
        ok = false;
    }
    println!("soak: {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
