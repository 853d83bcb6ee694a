//! Whole-turn latency against mocks with stated timings: an OpenAI-compatible LLM (20 ms
//! to the first token, then 5 ms a token) and an OpenAI-compatible TTS (30 ms a
//! request). Each turn is driven over the Open-LLM-VTuber WebSocket protocol (answering
//! `backend-synth-complete` at once, as a page that plays nothing would) and over the
//! local socket, and every figure is printed next to its floor: what the mocks alone
//! impose, measured in the same run by a client that talks to them directly with no
//! daemon in between (stream the reply, send each sentence to TTS the moment it is
//! complete, all in parallel).
//!
//! A second daemon adds the workspace's MCP test server, and each turn is a tool turn:
//! the model asks for `test__echo`, then answers.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vtuber_shared::{Event, Reply, Request};
use vtuber_test_support::daemon::{TestClient, TestDaemon};
use vtuber_test_support::mcp::test_server_bin;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply, MockToolCall};
use vtuber_test_support::mock_speech::{MockSpeech, SpeechAnswer};

use super::web::{Ws, next_json};
use super::{cpu_ticks, percentile, rss_kib, sorted};

const FIRST_TOKEN: Duration = Duration::from_millis(20);
const TOKENS_PER_SEC: f64 = 200.0;
const TTS_TIME: Duration = Duration::from_millis(30);
/// Four sentences; the first is short, as a character's opening usually is.
const REPLY: &str = "Hello there! It is a lovely day today, and I am glad you came. I hope you are doing well. Let us talk about something fun together.";

fn reply() -> MockReply {
    MockReply::text(REPLY)
        .with_first_token_after(FIRST_TOKEN)
        .with_rate(TOKENS_PER_SEC)
}

fn tool_call() -> MockReply {
    MockReply::tool_calls(vec![MockToolCall::new(
        "call_1",
        "test__echo",
        r#"{"text":"hi"}"#,
    )])
    .with_first_token_after(FIRST_TOKEN)
}

/// One second of a quiet 220 Hz tone, 16 kHz mono 16-bit WAV: what a TTS engine
/// answers for a sentence, so clients get real audio to carry.
fn tone_wav() -> Vec<u8> {
    let rate = 16_000u32;
    let samples: Vec<i16> = (0..rate)
        .map(|i| {
            let t = i as f32 / rate as f32;
            ((t * 220.0 * std::f32::consts::TAU).sin() * 3000.0) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    wav
}

fn config(llm: &str, tts: &str, with_tools: bool) -> String {
    let mut c = format!(
        "llm:\n  provider: openai_compatible\n  base_url: {llm}\n  model: mock-model\n  retries: 0\n  max_tokens: 2048\ncharacter:\n  default: bench\nspeech:\n  enabled: true\n  tts:\n    base_url: {tts}/v1\n    model: tts-1\naudio:\n  input: none\n  output: none\n  playback: clients\nweb:\n  port: 0\n  max_messages_per_sec: 0\ndaemon:\n  client_queue: 4096\n"
    );
    if with_tools {
        c.push_str(&format!(
            "mcp:\n  servers:\n    test:\n      command: {}\n      sandbox:\n        enabled: false\n      policy:\n        default: allow\n",
            test_server_bin().display()
        ));
    }
    c
}

/// Starts a quiet daemon and waits for its web page (and, with tools, the MCP server).
async fn start(config: &str, with_tools: bool) -> anyhow::Result<(TestDaemon, String)> {
    let mut d = TestDaemon::new(config)?;
    d.log_filter = "warn".into();
    // A character that speaks with the mock TTS (the built-in ones name Piper).
    std::fs::write(
        d.dir.path().join("config/vtuber/characters/bench.toml"),
        "name = \"Bench\"\npersona = \"You answer.\"\n\n[voice]\ntts = \"openai\"\nvoice = \"alloy\"\n",
    )?;
    d.start()?;
    let mut c = d.client("bench").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tools_ready = !with_tools
            || matches!(
                c.request(Request::ListMcpServers).await?,
                Ok(Reply::McpServers { servers }) if !servers.is_empty()
                    && servers.iter().all(|m| m.state == vtuber_shared::McpServerState::Ready)
            );
        if let Ok(Reply::Status(s)) = c.request(Request::Status).await?
            && let Some(url) = &s.web_url
            && tools_ready
        {
            return Ok((d, url.clone()));
        }
        if Instant::now() > deadline {
            bail!("daemon not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let ws = vtuber_test_support::web::PageUrl::parse(url).socket_url();
    // Browsers set TCP_NODELAY on every socket; so does this client.
    let (mut stream, _) = tokio_tungstenite::connect_async_with_config(ws, None, true).await?;
    // The greeting ends with `start-mic`.
    loop {
        let v = next_json(&mut stream, Duration::from_secs(10)).await?;
        if v["type"] == "control" && v["text"] == "start-mic" {
            return Ok(stream);
        }
    }
}

/// Milliseconds from the start of a turn to its milestones.
#[derive(Default, Clone, Copy)]
struct Turn {
    first_text: f64,
    first_audio: f64,
    end: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// One `text-input` turn over the WebSocket, to `conversation-chain-end`.
async fn web_turn(ws: &mut Ws) -> anyhow::Result<Turn> {
    let t = Instant::now();
    ws.send(Message::text(
        json!({"type": "text-input", "text": "hi"}).to_string(),
    ))
    .await?;
    let mut turn = Turn::default();
    loop {
        let v = next_json(ws, Duration::from_secs(60)).await?;
        match v["type"].as_str().unwrap_or_default() {
            "audio" => {
                if turn.first_text == 0.0 {
                    turn.first_text = ms(t);
                }
                if turn.first_audio == 0.0 && !v["audio"].is_null() {
                    turn.first_audio = ms(t);
                }
            }
            "backend-synth-complete" => {
                ws.send(Message::text(
                    json!({"type": "frontend-playback-complete"}).to_string(),
                ))
                .await?;
            }
            "control" if v["text"] == "conversation-chain-end" => {
                turn.end = ms(t);
                return Ok(turn);
            }
            "error" => bail!("error during the turn: {v}"),
            _ => {}
        }
    }
}

/// One `send_text` turn over the local socket, to the later of the reply's end and the
/// speech's end.
async fn socket_turn(c: &mut TestClient) -> anyhow::Result<Turn> {
    let t = Instant::now();
    let turn_id = c.send_text("hi").await?;
    let mut turn = Turn::default();
    let (mut text_done, mut speech_done) = (false, false);
    while !(text_done && speech_done) {
        let (_, ev) = c.next_event(Duration::from_secs(60)).await?;
        match ev {
            Event::Delta { turn_id: id, .. } if id == turn_id && turn.first_text == 0.0 => {
                turn.first_text = ms(t);
            }
            Event::Sentence {
                turn_id: id,
                audio: Some(_),
                ..
            } if id == turn_id && turn.first_audio == 0.0 => turn.first_audio = ms(t),
            Event::TurnEnded { turn_id: id, .. } if id == turn_id => text_done = true,
            Event::SpeechFinished { turn_id: id, .. } if id == turn_id => speech_done = true,
            Event::Error { error } => bail!("error during the turn: {error:?}"),
            _ => {}
        }
    }
    turn.end = ms(t);
    Ok(turn)
}

/// The mocks alone: streams one completion straight from the mock LLM, returning the
/// sentences as they complete (with the time each did), and the tool-call round first
/// when `tool_round`.
async fn floor_turn(
    http: &reqwest::Client,
    llm: &str,
    tts: &str,
    tool_round: bool,
) -> anyhow::Result<Turn> {
    let t = Instant::now();
    let body = json!({"model": "mock-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let complete = || {
        http.post(format!("{llm}/chat/completions"))
            .json(&body)
            .send()
    };
    if tool_round {
        // The tool-call completion, read to its end.
        complete().await?.bytes().await?;
    }
    let resp = complete().await?;
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut sentence = String::new();
    let mut first_text = 0.0;
    let mut synth = tokio::task::JoinSet::new();
    let speak = |synth: &mut tokio::task::JoinSet<anyhow::Result<f64>>, text: String| {
        let http = http.clone();
        let url = format!("{tts}/v1/audio/speech");
        synth.spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"}))
                .send()
                .await?;
            r.bytes().await?;
            Ok(ms(t))
        });
    };
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            let Some(delta) = v["choices"][0]["delta"]["content"]
                .as_str()
                .filter(|d| !d.is_empty())
            else {
                continue;
            };
            if first_text == 0.0 {
                first_text = ms(t);
            }
            sentence.push_str(delta);
            if delta.trim_end().ends_with(['.', '!', '?']) {
                speak(&mut synth, std::mem::take(&mut sentence));
            }
        }
    }
    if !sentence.trim().is_empty() {
        speak(&mut synth, sentence);
    }
    let mut done = Vec::new();
    while let Some(r) = synth.join_next().await {
        done.push(r??);
    }
    let done = sorted(done);
    Ok(Turn {
        first_text,
        first_audio: done.first().copied().unwrap_or(f64::NAN),
        end: done.last().copied().unwrap_or(f64::NAN),
    })
}

struct Figures {
    first_text: Vec<f64>,
    first_audio: Vec<f64>,
    end: Vec<f64>,
}

impl Figures {
    fn new() -> Self {
        Self {
            first_text: Vec::new(),
            first_audio: Vec::new(),
            end: Vec::new(),
        }
    }

    fn add(&mut self, t: Turn) {
        self.first_text.push(t.first_text);
        self.first_audio.push(t.first_audio);
        self.end.push(t.end);
    }
}

fn p(v: &[f64], q: f64) -> f64 {
    percentile(&sorted(v.to_vec()), q)
}

fn line(what: &str, got: &[f64], floor: &[f64]) -> String {
    let (p50, p90, f50) = (p(got, 0.5), p(got, 0.9), p(floor, 0.5));
    format!(
        "  {what:<12} p50 {p50:6.1} ms  p90 {p90:6.1} ms   floor p50 {f50:6.1} ms   over the floor p50 {:+6.1} ms",
        p50 - f50
    )
}

/// Runs `turns` turns of each kind (WebSocket, local socket, floor), interleaved so load
/// drifts hit all three alike; prints the figures.
pub async fn bench(turns: usize) -> anyhow::Result<()> {
    let tts = MockSpeech::start(|_| SpeechAnswer::audio("audio/wav", tone_wav()).after(TTS_TIME))
        .await
        .context("mock TTS")?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;

    // Plain turns.
    let llm = MockLlm::start(MockBehaviour::Reply(reply())).await?;
    let (d, url) = start(&config(&llm.base_url(), &tts.url(), false), false).await?;
    let pid = d.pid().context("daemon pid")?;
    // Each client drives its turns alone, so it reads only its own; the floor is
    // measured between turns, alike for both.
    let mut ws = connect(&url).await?;
    for _ in 0..3 {
        web_turn(&mut ws).await?;
        floor_turn(&http, &llm.base_url(), &tts.url(), false).await?;
    }
    let (mut web, mut local, mut floor) = (Figures::new(), Figures::new(), Figures::new());
    let mut web_cpu_ticks = 0u64;
    let mut first_audio_by_history = Vec::new();
    for i in 0..turns {
        let before = cpu_ticks(pid)?;
        let w = web_turn(&mut ws).await?;
        web_cpu_ticks += cpu_ticks(pid)? - before;
        web.add(w);
        floor.add(floor_turn(&http, &llm.base_url(), &tts.url(), false).await?);
        if i < 5 || i + 5 >= turns {
            first_audio_by_history.push((i < 5, w.first_audio));
        }
    }
    drop(ws);
    let mut c = d.client("bench").await?;
    for _ in 0..3 {
        socket_turn(&mut c).await?;
    }
    for _ in 0..turns {
        local.add(socket_turn(&mut c).await?);
        floor.add(floor_turn(&http, &llm.base_url(), &tts.url(), false).await?);
    }
    let rss_mb = rss_kib(pid)? as f64 / 1024.0;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_ms = web_cpu_ticks as f64 * 1000.0 / ticks_per_sec / turns as f64;
    let early: Vec<f64> = first_audio_by_history
        .iter()
        .filter(|(e, _)| *e)
        .map(|(_, v)| *v)
        .collect();
    let late: Vec<f64> = first_audio_by_history
        .iter()
        .filter(|(e, _)| !*e)
        .map(|(_, v)| *v)
        .collect();
    println!(
        "chain: {turns} turns each; mock LLM {} ms to first token + {:.0} ms/token, mock TTS {} ms/request; {} tokens, 4 sentences",
        FIRST_TOKEN.as_millis(),
        1000.0 / TOKENS_PER_SEC,
        TTS_TIME.as_millis(),
        MockReply::text(REPLY).tokens.len()
    );
    println!(" Open-LLM-VTuber WebSocket (text-input → ...):");
    println!("{}", line("first text", &web.first_text, &floor.first_text));
    println!(
        "{}",
        line("first audio", &web.first_audio, &floor.first_audio)
    );
    println!("{}", line("chain end", &web.end, &floor.end));
    println!(" local socket (send_text → ...):");
    println!(
        "{}",
        line("first text", &local.first_text, &floor.first_text)
    );
    println!(
        "{}",
        line("first audio", &local.first_audio, &floor.first_audio)
    );
    println!("{}", line("turn end", &local.end, &floor.end));
    println!(
        " daemon CPU per WebSocket turn {cpu_ms:.1} ms; RSS after {} turns {rss_mb:.1} MB; first audio p50 over the first 5 turns {:.1} ms, over the last 5 {:.1} ms (history {} → {} messages)",
        2 * turns + 6,
        p(&early, 0.5),
        p(&late, 0.5),
        2 * 3 + 2,
        2 * (turns + 3)
    );

    // Stop: a reply streaming endlessly, interrupted once it has begun.
    llm.set_behaviour(MockBehaviour::endless(50.0));
    let mut stop_ms = Vec::new();
    for _ in 0..10 {
        let turn_id = c.send_text("go on").await?;
        c.events_until(
            Duration::from_secs(30),
            |e| matches!(e, Event::Delta { turn_id: id, .. } if *id == turn_id),
        )
        .await?;
        let t = Instant::now();
        c.request(Request::Interrupt).await?.ok();
        let (mut ended, mut silent) = (false, false);
        while !(ended && silent) {
            match c.next_event(Duration::from_secs(30)).await?.1 {
                Event::TurnEnded { turn_id: id, .. } if id == turn_id => {
                    ended = true;
                    stop_ms.push(ms(t));
                }
                Event::SpeechFinished { turn_id: id, .. } if id == turn_id => silent = true,
                _ => {}
            }
        }
    }
    println!(
        " stop: interrupt → turn ended p50 {:.1} ms, max {:.1} ms (10 replies streaming)",
        p(&stop_ms, 0.5),
        p(&stop_ms, 1.0)
    );
    let synthesized = tts.requests().len();
    println!(" mock TTS requests so far: {synthesized} (every sentence of every turn goes to it)");
    if synthesized == 0 {
        bail!("the daemon did not speak through the mock TTS");
    }
    drop(c);
    drop(d);

    // Tool turns.
    if !test_server_bin().exists() {
        bail!("{} not built", test_server_bin().display());
    }
    let llm = MockLlm::start(MockBehaviour::Cycle(vec![
        MockBehaviour::Reply(tool_call()),
        MockBehaviour::Reply(reply()),
    ]))
    .await?;
    let (d, url) = start(&config(&llm.base_url(), &tts.url(), true), true).await?;
    let mut ws = connect(&url).await?;
    for _ in 0..3 {
        web_turn(&mut ws).await?;
        floor_turn(&http, &llm.base_url(), &tts.url(), true).await?;
    }
    let (mut web, mut floor) = (Figures::new(), Figures::new());
    for _ in 0..turns {
        web.add(web_turn(&mut ws).await?);
        floor.add(floor_turn(&http, &llm.base_url(), &tts.url(), true).await?);
    }
    println!(" tool turn (test__echo, then the reply) over the WebSocket:");
    println!(
        "{}",
        line("first audio", &web.first_audio, &floor.first_audio)
    );
    println!("{}", line("chain end", &web.end, &floor.end));
    drop(d);
    Ok(())
}
