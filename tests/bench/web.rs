//! Web figures: 100 WebSocket clients attached during a 500-token spoken reply (every
//! client gets every message, in order; daemon CPU and RSS), and the time from
//! `text-input` to the first `audio` message next to the same figure on the local socket.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vtuber_shared::{Event, Reply, Request};
use vtuber_test_support::daemon::{TestDaemon, link_models};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

use super::{cpu_ticks, percentile, rss_kib, sorted};

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn config(base_url: &str, character: &str) -> String {
    format!(
        "llm:\n  provider: openai_compatible\n  base_url: {base_url}\n  model: mock-model\n  retries: 0\n  max_tokens: 2048\ncharacter:\n  default: {character}\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: none\n  playback: clients\nweb:\n  port: 0\n  max_messages_per_sec: 0\ndaemon:\n  client_queue: 8192\n"
    )
}

async fn start(base_url: &str, character: &str) -> anyhow::Result<(TestDaemon, String)> {
    let mut d = TestDaemon::new(&config(base_url, character))?;
    d.log_filter = "warn".into();
    link_models(&d.models_dir())?;
    d.start()?;
    let mut c = d.client("bench").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Reply::Status(s)) = c.request(Request::Status).await?
            && let (Some(url), Some(v)) = (&s.web_url, &s.voice)
            // Every engine loaded, so model loading is not counted as the turn's memory.
            && [&v.vad, &v.asr, &v.tts]
                .iter()
                .all(|e| matches!(e.load, vtuber_shared::ModelLoad::Ready))
        {
            return Ok((d, url.clone()));
        }
        if Instant::now() > deadline {
            bail!("web server or speech engines not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `url` is the page's address from `status` (with its token).
async fn connect(url: &str) -> anyhow::Result<Ws> {
    let ws = vtuber_test_support::web::PageUrl::parse(url).socket_url();
    let (stream, _) = tokio_tungstenite::connect_async(ws).await?;
    Ok(stream)
}

pub(crate) async fn next_json(ws: &mut Ws, limit: Duration) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(limit, ws.next())
            .await
            .context("timed out waiting for a websocket message")?
            .context("websocket closed")??;
        if let Message::Text(t) = m {
            return Ok(serde_json::from_str(t.as_str())?);
        }
    }
}

/// Reads one turn on a WebSocket: the audio messages' texts in order, answering
/// `backend-synth-complete` with `frontend-playback-complete`, until the chain ends.
async fn follow_turn(mut ws: Ws) -> anyhow::Result<(Vec<String>, usize)> {
    let mut texts = Vec::new();
    let mut messages = 0;
    loop {
        let v = next_json(&mut ws, Duration::from_secs(120)).await?;
        messages += 1;
        match v["type"].as_str().unwrap_or_default() {
            "audio" => texts.push(
                v["display_text"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            "backend-synth-complete" => {
                ws.send(Message::text(
                    json!({"type": "frontend-playback-complete"}).to_string(),
                ))
                .await?;
            }
            "control" if v["text"] == "conversation-chain-end" => return Ok((texts, messages)),
            "error" => bail!("server error: {v}"),
            _ => {}
        }
    }
}

/// Resident memory split: anonymous (heap, model weights) and file-backed (mapped
/// files and the binary), in KiB.
fn rss_split(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{name} missing"))
    };
    Ok((field("RssAnon:")?, field("RssFile:")?))
}

struct Fanout {
    in_order: usize,
    audio_messages: usize,
    messages: usize,
    wall: f64,
    cpu: f64,
    rss_before: u64,
    peak_rss: u64,
    peak_anon: u64,
}

/// One 500-token spoken reply watched by `n` WebSocket clients on a fresh daemon.
async fn fanout(n: usize) -> anyhow::Result<Fanout> {
    // 500 tokens, spoken with espeak so synthesis keeps up with 100 clients on 2 cores.
    let words: Vec<String> = (0..500)
        .map(|i| {
            if i % 12 == 11 {
                format!("word{i}. ")
            } else {
                format!("word{i} ")
            }
        })
        .collect();
    let mock = MockLlm::start(MockBehaviour::Reply(
        MockReply::tokens(words).with_rate(100.0),
    ))
    .await?;
    let (d, url) = start(&mock.base_url(), "sage").await?;
    let pid = d.pid().context("pid")?;
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut ws = connect(&url).await?;
        // The four connect messages.
        for _ in 0..4 {
            next_json(&mut ws, Duration::from_secs(10)).await?;
        }
        clients.push(ws);
    }
    let rss_before = rss_kib(pid)?;
    let cpu_before = cpu_ticks(pid)?;
    let t0 = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(follow_turn(ws)))
        .collect();
    let mut local = d.client("bench-local").await?;
    local
        .request(Request::SendText {
            text: "go".into(),
            images: Vec::new(),
        })
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut peak_rss = rss_before;
    let mut peak_anon = 0;
    let mut results = Vec::new();
    for t in tasks {
        while !t.is_finished() {
            let (anon, file) = rss_split(pid)?;
            peak_rss = peak_rss.max(anon + file);
            peak_anon = peak_anon.max(anon);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        results.push(t.await??);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - cpu_before) as f64 / 100.0;
    let reference = &results[0].0;
    drop(d);
    Ok(Fanout {
        in_order: results.iter().filter(|(t, _)| t == reference).count(),
        audio_messages: reference.len(),
        messages: results.iter().map(|(_, m)| m).sum(),
        wall,
        cpu,
        rss_before,
        peak_rss,
        peak_anon,
    })
}

pub async fn bench() -> anyhow::Result<()> {
    let one = fanout(1).await?;
    let many = fanout(100).await?;
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "web fanout: 100 WebSocket clients, 500-token spoken reply: {}/100 got all {} audio messages in the same order ({} messages in all); {:.1} s wall, daemon CPU {:.2} s ({:.0} % of one core), RSS {:.1} MB → peak {:.1} MB (anonymous peak {:.1} MB)",
        many.in_order,
        many.audio_messages,
        many.messages,
        many.wall,
        many.cpu,
        many.cpu / many.wall * 100.0,
        mb(many.rss_before),
        mb(many.peak_rss),
        mb(many.peak_anon),
    );
    println!(
        "web fanout baseline: the same reply to 1 client: RSS {:.1} MB → peak {:.1} MB (anonymous peak {:.1} MB); memory per extra client at peak: {:.0} KB",
        mb(one.rss_before),
        mb(one.peak_rss),
        mb(one.peak_anon),
        (many.peak_rss.saturating_sub(many.rss_before) as f64
            - one.peak_rss.saturating_sub(one.rss_before) as f64)
            / 99.0
            * 1.024,
    );

    // First audio: WebSocket text-input vs local socket send_text, Piper voice.
    let reply = "Hello there, my friend! It is a lovely day.";
    let tokens: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
    let mock = MockLlm::start(MockBehaviour::Reply(
        MockReply::tokens(tokens).with_rate(0.0),
    ))
    .await?;
    let (d, url) = start(&mock.base_url(), "mao").await?;
    let mut ws = connect(&url).await?;
    for _ in 0..4 {
        next_json(&mut ws, Duration::from_secs(10)).await?;
    }
    let mut web_ms = Vec::new();
    for _ in 0..8 {
        let t = Instant::now();
        ws.send(Message::text(
            json!({"type": "text-input", "text": "hi"}).to_string(),
        ))
        .await?;
        loop {
            let v = next_json(&mut ws, Duration::from_secs(60)).await?;
            if v["type"] == "audio" && web_ms.len() < 8 && !v["audio"].is_null() {
                web_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        // Finish the turn cleanly.
        loop {
            let v = next_json(&mut ws, Duration::from_secs(60)).await?;
            match v["type"].as_str().unwrap_or_default() {
                "backend-synth-complete" => {
                    ws.send(Message::text(
                        json!({"type": "frontend-playback-complete"}).to_string(),
                    ))
                    .await?;
                }
                "control" if v["text"] == "conversation-chain-end" => break,
                _ => {}
            }
        }
    }
    let mut c = d.client("bench").await?;
    let mut local_ms = Vec::new();
    for _ in 0..8 {
        let t = Instant::now();
        let r = c
            .request(Request::SendText {
                text: "hi".into(),
                images: Vec::new(),
            })
            .await?;
        let Ok(Reply::TurnAccepted { turn_id, .. }) = r else {
            bail!("{r:?}")
        };
        c.events_until(
            Duration::from_secs(60),
            |e| matches!(e, Event::Sentence { turn_id: t, audio: Some(_), .. } if *t == turn_id),
        )
        .await?;
        local_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        c.events_until(
            Duration::from_secs(60),
            |e| matches!(e, Event::SpeechFinished { turn_id: t, .. } if *t == turn_id),
        )
        .await?;
    }
    println!(
        "web first audio: text-input → first audio message p50 {:.0} ms (WebSocket) vs send_text → first sentence event p50 {:.0} ms (local socket); mock LLM instant, Piper TTS",
        percentile(&sorted(web_ms), 0.5),
        percentile(&sorted(local_ms), 0.5)
    );
    Ok(())
}
