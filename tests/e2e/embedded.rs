//! The embedded llama.cpp model through the real daemon: a real prompt gets a real
//! answer, and a missing model file is reported with the command that fetches it.

use std::path::PathBuf;

use std::time::Duration;

use crate::common::*;
use vtuber_shared::{Event, Reply, Request, TurnOutcome};
use vtuber_test_support::daemon::TestDaemon;

fn installed_model() -> Option<PathBuf> {
    let p = std::env::var_os("VTUBER_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            vtuber_shared::paths::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    p.exists().then_some(p)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_model_answers_a_real_prompt() {
    let Some(model) = installed_model() else {
        // CI installs the model (scripts/setup.sh); fail there rather than skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "the default model is missing: run scripts/fetch-model.sh"
        );
        eprintln!("skipped: default model not installed (run scripts/fetch-model.sh)");
        return;
    };
    let daemon = TestDaemon::new("llm:\n  max_tokens: 48\n  temperature: 0\n").unwrap();
    std::fs::create_dir_all(daemon.models_dir()).unwrap();
    std::os::unix::fs::symlink(
        &model,
        daemon.models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    let mut daemon = daemon;
    daemon.start().unwrap();

    let mut cmd = daemon.vtuber();
    cmd.args([
        "say",
        "What is the capital of France? Answer in one sentence.",
    ]);
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "stderr: {}\nlog: {}",
        stderr(&out),
        daemon.log_text()
    );
    let reply = stdout(&out);
    let letters = reply.chars().filter(|c| c.is_alphabetic()).count();
    assert!(letters >= 5, "reply too short: {reply:?}");
    assert!(
        reply.to_lowercase().contains("paris"),
        "unexpected reply: {reply:?}"
    );

    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&run(cmd).await.stdout).unwrap();
    assert_eq!(v["llm"]["backend"], "embedded");
    assert_eq!(v["model_load"]["state"], "ready");
}

/// A daemon on the embedded model (greedy sampling), or `None` where it is not installed.
fn embedded_daemon(yaml: &str) -> Option<TestDaemon> {
    let Some(model) = installed_model() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the default model is missing: run scripts/fetch-model.sh"
        );
        eprintln!("skipped: default model not installed (run scripts/fetch-model.sh)");
        return None;
    };
    let mut daemon = TestDaemon::new(yaml).unwrap();
    std::fs::create_dir_all(daemon.models_dir()).unwrap();
    std::os::unix::fs::symlink(
        &model,
        daemon.models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    daemon.start().unwrap();
    Some(daemon)
}

/// Sends `text` and returns the reply of the turn it starts, with how it ended. With
/// `interrupt_after`, interrupts the turn once that many pieces of the reply came.
async fn turn(
    client: &mut vtuber_test_support::daemon::TestClient,
    text: &str,
    interrupt_after: Option<usize>,
) -> (String, TurnOutcome) {
    let Ok(Reply::TurnAccepted { turn_id, .. }) = client
        .request(Request::SendText {
            text: text.into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
    else {
        panic!("turn not accepted")
    };
    let mut reply = String::new();
    let mut pieces = 0;
    loop {
        let (_, ev) = client.next_event(Duration::from_secs(120)).await.unwrap();
        match ev {
            Event::Delta { turn_id: t, text } if t == turn_id => {
                reply.push_str(&text);
                pieces += 1;
                if interrupt_after == Some(pieces) {
                    client.request(Request::Interrupt).await.unwrap().unwrap();
                }
            }
            Event::TurnEnded {
                turn_id: t,
                outcome,
                ..
            } if t == turn_id => return (reply, outcome),
            _ => {}
        }
    }
}

/// Regression: after an interrupted reply, later answers in that conversation must be
/// answers, not the interrupted reply again. The partial reply stays in the history and
/// reaches later prompts marked as interrupted.
#[tokio::test(flavor = "multi_thread")]
async fn after_an_interrupted_reply_later_answers_are_new() {
    let Some(daemon) = embedded_daemon("llm:\n  max_tokens: 160\n  temperature: 0\n") else {
        return;
    };
    let mut client = daemon.client("t").await.unwrap();
    let (partial, outcome) = turn(
        &mut client,
        "Tell me a long story about a brave dragon.",
        Some(40),
    )
    .await;
    assert_eq!(outcome, TurnOutcome::Interrupted, "{partial:?}");
    let head: String = partial.trim().chars().take(30).collect();
    assert!(
        head.chars().count() >= 10,
        "too little was said: {partial:?}"
    );
    for question in [
        "What is the capital of France?",
        "How many legs does a spider have?",
        "Name a color.",
    ] {
        let (answer, outcome) = turn(&mut client, question, None).await;
        assert_eq!(outcome, TurnOutcome::Finished);
        assert!(
            !answer.contains(&head),
            "{question:?} was answered with the interrupted reply: {answer:?} (interrupted: {partial:?})"
        );
        assert!(
            !answer.contains("[interrupted"),
            "the note leaked: {answer:?}"
        );
    }
    // The history keeps what was said, as said, marked as interrupted.
    let mut cmd = daemon.vtuber();
    cmd.args(["history", "show", "1", "--json"]);
    let out = run(cmd).await;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let messages = v["messages"].as_array().cloned().unwrap_or_default();
    let stored = messages
        .iter()
        .find(|m| m["interrupted"] == true)
        .unwrap_or_else(|| panic!("no interrupted message: {v}"));
    assert_eq!(stored["text"].as_str(), Some(partial.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_model_says_how_to_fetch_it() {
    let daemon = TestDaemon::spawn("").unwrap();
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "hello"]);
    let out = run(cmd).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("fetch-model.sh"), "{err}");
    assert!(err.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{err}");

    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&run(cmd).await.stdout).unwrap();
    assert_eq!(v["model_load"]["state"], "failed");
    assert_eq!(v["state"], "error");
}
