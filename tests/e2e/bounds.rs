//! The daemon stays bounded whatever the LLM server does: a reply of any size ends the
//! turn cleanly and reads back from history in pages, an endless stream is cut at the
//! per-turn length or time limit (stored marked as cut, with a note for clients), and a
//! line without a newline fails the turn once it passes 1 MiB.

use std::time::{Duration, Instant};

use crate::common::*;
use vtuber_shared::{
    CutReason, Event, Reply, Request, Role, ServerFrame, StoredMessage, TurnOutcome, append_page,
};
use vtuber_test_support::daemon::TestDaemon;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

/// Longer than any of these turns takes; only there so a regression fails, not hangs.
const TURN_LIMIT: Duration = Duration::from_secs(180);

fn daemon_for(mock: &MockLlm, extra_llm: &str) -> TestDaemon {
    let config = format!("{}{extra_llm}", openai_config(&mock.base_url()));
    TestDaemon::spawn(&config).expect("daemon starts")
}

/// Runs `vtuber ARGS...` to completion, failing the test if it hangs.
async fn vtuber(daemon: &TestDaemon, args: &[&str]) -> std::process::Output {
    let mut cmd = daemon.vtuber();
    cmd.args(args);
    tokio::time::timeout(TURN_LIMIT, run(cmd))
        .await
        .unwrap_or_else(|_| panic!("`vtuber {}` hung", args.join(" ")))
}

/// The current conversation, read page by page over a raw client. `TestClient`
/// refuses any frame over the limit, so each page is checked for size as well.
async fn read_conversation(daemon: &TestDaemon) -> Vec<StoredMessage> {
    let mut c = daemon.client("bounds").await.unwrap();
    let Ok(Reply::Status(status)) = c.request(Request::Status).await.unwrap() else {
        panic!("no status");
    };
    let id = status.conversation_id.expect("a conversation");
    let mut messages = Vec::new();
    let mut page = None;
    for _ in 0..1000 {
        let Ok(Reply::Conversation {
            messages: part,
            next,
            ..
        }) = c
            .request(Request::GetConversation { id, page })
            .await
            .unwrap()
        else {
            panic!("not a conversation page");
        };
        append_page(&mut messages, part);
        match next {
            Some(n) => page = Some(n),
            None => return messages,
        }
    }
    panic!("paging does not end");
}

/// About `total` bytes of reply in pieces of 60 KiB, with multi-byte characters and
/// characters JSON escapes (so escaping makes frames larger than the text).
fn big_reply(total: usize) -> MockReply {
    let unit = "Spoken words, \"quoted\" — ünïcödé ☺ and a\ttab.\n";
    let piece = unit.repeat(60 * 1024 / unit.len());
    MockReply::tokens(vec![piece; total.div_ceil(60 * 1024)])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_6_mb_reply_ends_the_turn_and_reads_back_in_pages() {
    let reply = big_reply(6 * 1024 * 1024);
    let full = reply.full_text();
    assert!(full.len() > 6_000_000);
    let mock = MockLlm::start_blocking(MockBehaviour::Reply(reply)).unwrap();
    let daemon = daemon_for(
        &mock,
        "  max_reply_bytes: 16777216\n  max_reply_tokens: 100000\n",
    );

    let started = Instant::now();
    let out = vtuber(&daemon, &["say", "tell me everything"]).await;
    let took = started.elapsed();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let printed = stdout(&out);
    assert_eq!(
        printed.len(),
        full.len() + 1,
        "the whole reply and a newline"
    );
    assert!(printed == format!("{full}\n"), "say printed another text");
    assert!(!stderr(&out).contains("note:"), "{}", stderr(&out));
    eprintln!(
        "6 MB reply: `vtuber say` finished in {:.2} s",
        took.as_secs_f64()
    );

    // The stored reply is whole, and readable although no frame may hold it.
    let messages = read_conversation(&daemon).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].role, Role::Assistant);
    assert!(messages[1].text == full, "the stored reply differs");
    assert_eq!(messages[1].cut, None);
    assert!(!messages[1].interrupted);

    // `history show` pages through it too.
    let id = {
        let mut c = daemon.client("id").await.unwrap();
        let Ok(Reply::Status(s)) = c.request(Request::Status).await.unwrap() else {
            panic!("no status")
        };
        s.conversation_id.unwrap().to_string()
    };
    let out = vtuber(&daemon, &["history", "show", "--json", &id]).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(shown["messages"][1]["text"].as_str() == Some(full.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_6_mb_reply_streams_to_a_subscriber_in_frames_that_fit() {
    let reply = big_reply(6 * 1024 * 1024);
    let full = reply.full_text();
    let mock = MockLlm::start_blocking(MockBehaviour::Reply(reply)).unwrap();
    let daemon = daemon_for(
        &mock,
        "  max_reply_bytes: 16777216\n  max_reply_tokens: 100000\ndaemon:\n  client_queue: 4096\n",
    );
    let mut c = daemon.client("watcher").await.unwrap();
    let Ok(Reply::TurnAccepted { turn_id, .. }) = c
        .request(Request::SendText {
            text: "go on".into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
    else {
        panic!("turn not accepted");
    };
    let mut deltas = String::new();
    let deadline = Instant::now() + TURN_LIMIT;
    loop {
        assert!(Instant::now() < deadline, "no turn_ended");
        // Fails on a frame over the limit.
        let frame = c.next_frame(WAIT).await.unwrap();
        let ServerFrame::Event { event, .. } = frame else {
            continue;
        };
        match event {
            Event::Delta { turn_id: t, text } if t == turn_id => deltas.push_str(&text),
            Event::TurnEnded {
                turn_id: t,
                outcome,
                text,
                text_omitted,
                cut,
                ..
            } if t == turn_id => {
                assert_eq!(outcome, TurnOutcome::Finished);
                assert!(text_omitted, "a 6 MB reply is not repeated in turn_ended");
                assert!(text.is_empty());
                assert_eq!(cut, None);
                break;
            }
            _ => {}
        }
    }
    assert!(deltas == full, "the deltas do not add up to the reply");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_stream_is_cut_at_the_length_limit() {
    let mock = MockLlm::start_blocking(MockBehaviour::endless(0.0)).unwrap();
    // Defaults: max_tokens 512, so 2048 pieces.
    let daemon = daemon_for(&mock, "");
    let out = vtuber(&daemon, &["say", "never stop"]).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let expected = " word".repeat(2048);
    assert_eq!(stdout(&out).trim_end(), expected.trim_end());
    let err = stderr(&out);
    assert!(err.contains("note:"), "{err}");
    assert!(err.contains("2048 tokens"), "{err}");
    assert!(err.contains("llm.max_reply_tokens"), "{err}");

    let messages = read_conversation(&daemon).await;
    assert_eq!(messages[1].text, expected);
    assert_eq!(messages[1].cut, Some(CutReason::Length));

    // `history show` marks it.
    let out = vtuber(&daemon, &["history", "list", "--json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = list[0]["id"].as_i64().unwrap().to_string();
    let out = vtuber(&daemon, &["history", "show", &id]).await;
    assert!(
        stdout(&out).contains("*(cut at the reply length limit)*"),
        "{}",
        stdout(&out)
    );

    // The daemon stopped reading: it answers at once and is idle again.
    let mut c = daemon.client("after").await.unwrap();
    assert!(matches!(
        c.request(Request::Ping).await.unwrap(),
        Ok(Reply::Pong)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_byte_limit_cuts_inside_a_piece() {
    let mock = MockLlm::start_blocking(MockBehaviour::Endless {
        token: "abcdefghij".into(),
        tokens_per_sec: 0.0,
    })
    .unwrap();
    let daemon = daemon_for(&mock, "  max_reply_bytes: 25\n");
    let out = vtuber(&daemon, &["say", "letters"]).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), "abcdefghijabcdefghijabcde");
    assert!(
        stderr(&out).contains("llm.max_reply_bytes"),
        "{}",
        stderr(&out)
    );
    let messages = read_conversation(&daemon).await;
    assert_eq!(messages[1].cut, Some(CutReason::Length));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_endless_stream_is_cut_at_the_time_limit() {
    let mock = MockLlm::start_blocking(MockBehaviour::endless(20.0)).unwrap();
    let daemon = daemon_for(&mock, "  max_reply_secs: 2\n  max_reply_tokens: 1000000\n");
    let mut watcher = daemon.client("watcher").await.unwrap();
    let out = vtuber(&daemon, &["say", "take your time"]).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert!(stdout(&out).starts_with(" word"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("2 s"), "{err}");
    assert!(err.contains("llm.max_reply_secs"), "{err}");

    // Other clients get the note in `turn_ended`, with the partial reply.
    let ended = watcher
        .events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .unwrap();
    let Some(Event::TurnEnded {
        outcome, cut, text, ..
    }) = ended.last().map(|(_, e)| e.clone())
    else {
        panic!("no turn_ended");
    };
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(cut.map(|c| c.reason), Some(CutReason::Time));
    let messages = read_conversation(&daemon).await;
    assert_eq!(messages[1].text, text);
    assert_eq!(messages[1].cut, Some(CutReason::Time));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_32_mb_line_fails_the_turn_with_a_clear_error() {
    let mock = MockLlm::start_blocking(MockBehaviour::LongLine {
        bytes: 32 * 1024 * 1024,
    })
    .unwrap();
    let daemon = daemon_for(&mock, "");
    let out = vtuber(&daemon, &["say", "hello"]).await;
    assert!(!out.status.success(), "stdout: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("over 1 MiB without a newline"), "{err}");
    assert!(err.contains("llm.base_url"), "hint missing: {err}");
    assert_eq!(mock.request_count(), 1, "a broken stream is not retried");

    // The daemon is fine and answers the next turn.
    mock.set_behaviour(MockBehaviour::reply("Back to normal."));
    let out = vtuber(&daemon, &["say", "again"]).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), "Back to normal.");
}
