//! What a misbehaving LLM server costs the daemon: CPU and wall time for a turn whose
//! stream is one huge line without a newline, and for a turn with a multi-megabyte reply.
//!
//! Compare builds by pointing `VTUBER_BIN_DIR` at another build's binaries (e.g. one made
//! from an older commit): the same mock and the same measurement run against it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vtuber_shared::{Event, Reply, Request};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

use crate::{cpu_ticks, quiet_daemon};

/// Kernel clock ticks per second, for `/proc/PID/stat` times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Line sizes in MiB from `VTUBER_BENCH_LINE_MB` (comma-separated), default 16 and 32.
fn line_sizes() -> Vec<usize> {
    std::env::var("VTUBER_BENCH_LINE_MB")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![16, 32])
}

/// Runs one turn against `behaviour` and returns (daemon CPU seconds, wall seconds,
/// how the turn ended).
async fn one_turn(behaviour: MockBehaviour, extra_llm: &str) -> anyhow::Result<(f64, f64, String)> {
    let mock = MockLlm::start(behaviour).await.context("mock LLM")?;
    let config = format!(
        "llm:\n  provider: openai_compatible\n  base_url: {}\n  model: mock-model\n  retries: 0\n  timeout_secs: 3600\n{extra_llm}daemon:\n  client_queue: 65536\n",
        mock.base_url()
    );
    let d = tokio::task::block_in_place(|| quiet_daemon(&config))?;
    let pid = d.pid().context("daemon pid")?;
    let mut c = d.client("bench-bounds").await?;
    let before = cpu_ticks(pid)?;
    let started = Instant::now();
    let Ok(Reply::TurnAccepted { turn_id, .. }) = c
        .request(Request::SendText {
            text: "hello".into(),
            images: Vec::new(),
        })
        .await?
    else {
        bail!("turn not accepted");
    };
    let ended = c
        .events_until(
            Duration::from_secs(3600),
            |e| matches!(e, Event::TurnEnded { turn_id: t, .. } if *t == turn_id),
        )
        .await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - before) as f64 / ticks_per_sec();
    let how = match ended.last().map(|(_, e)| e) {
        Some(Event::TurnEnded {
            outcome,
            cut,
            text_omitted,
            ..
        }) => {
            let mut s = serde_json::to_value(outcome)?["outcome"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            if let vtuber_shared::TurnOutcome::Failed { error } = outcome {
                s.push_str(&format!(" ({})", error.message));
            }
            if let Some(cut) = cut {
                s.push_str(&format!(", cut: {}", cut.reason.as_str()));
            }
            if *text_omitted {
                s.push_str(", text omitted from turn_ended");
            }
            s
        }
        _ => "?".into(),
    };
    Ok((cpu, wall, how))
}

/// `long-line`: a `data:` line of N MiB that never ends.
pub async fn bench_long_line() -> anyhow::Result<()> {
    for mb in line_sizes() {
        let (cpu, wall, how) = one_turn(
            MockBehaviour::LongLine {
                bytes: mb * 1024 * 1024,
            },
            "",
        )
        .await?;
        println!(
            "long-line: {mb} MiB without a newline: daemon CPU {cpu:.2} s, turn ended after {wall:.2} s ({how})"
        );
    }
    Ok(())
}

/// `big-reply`: a 6 MiB reply in 60 KiB pieces, with the limits raised to let it through.
pub async fn bench_big_reply() -> anyhow::Result<()> {
    let piece = "Spoken words, \"quoted\" — ünïcödé ☺.\n".repeat(1500);
    let n = (6 * 1024 * 1024usize).div_ceil(piece.len());
    let reply = MockReply::tokens(vec![piece.clone(); n]);
    let bytes = reply.full_text().len();
    let (cpu, wall, how) = one_turn(
        MockBehaviour::Reply(reply),
        "  max_reply_bytes: 16777216\n  max_reply_tokens: 100000\n",
    )
    .await?;
    println!(
        "big-reply: {:.1} MB reply: turn ended after {wall:.2} s, daemon CPU {cpu:.2} s ({how})",
        bytes as f64 / 1e6
    );
    Ok(())
}
