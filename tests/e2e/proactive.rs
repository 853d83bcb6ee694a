//! Proactive speech: the character speaks up after a quiet spell, with a hidden
//! instruction, backs off, stops at its cap, and starts again once the user answers;
//! Open-LLM-VTuber's `ai-speak-signal` asks for the same turn at once.

use std::time::Duration;

use serde_json::json;
use vtuber_shared::{Event, Reply, Request, Role};
use vtuber_test_support::mock_llm::MockBehaviour;

use crate::common::*;
use crate::web::{Ws, is_control};

const NOTE: &str = "(Quiet for a while: say something short.)";

/// Writes `kit.toml` (speaks up after 1 s, twice at most) and switches to it.
async fn with_kit(
    daemon: &vtuber_test_support::daemon::TestDaemon,
) -> vtuber_test_support::daemon::TestClient {
    let mut c = daemon.client("e2e").await.unwrap();
    let dir = daemon.dir.path().join("config/vtuber/characters");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kit.toml"),
        format!(
            "name = \"Kit\"\npersona = \"You are Kit.\"\n\n[proactive]\nafter_secs = 1\nmax_in_a_row = 2\nbackoff = 1.5\nprompt = \"{NOTE}\"\n"
        ),
    )
    .unwrap();
    c.events_until(WAIT, |e| {
        matches!(e, Event::CharactersReloaded { characters } if characters.iter().any(|ch| ch.id == "kit"))
    })
    .await
    .unwrap();
    c.request(Request::SwitchCharacter { name: "kit".into() })
        .await
        .unwrap()
        .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn the_character_speaks_up_after_a_silence_backs_off_and_stops_at_its_cap() {
    let (mock, daemon) = daemon_with_mock(MockBehaviour::reply("Still there?"));
    let mut c = with_kit(&daemon).await;

    // Nobody has spoken yet: no turn of its own, however long the wait.
    let quiet = c
        .events_until(Duration::from_millis(1500), |e| {
            matches!(e, Event::TurnStarted { .. })
        })
        .await;
    assert!(quiet.is_err(), "it spoke before anyone did: {quiet:?}");

    let Ok(Reply::TurnAccepted {
        conversation_id, ..
    }) = c
        .request(Request::SendText {
            text: "hello".into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
    else {
        panic!("send_text refused")
    };
    // The user's turn, then two turns of its own (1 s, then 1.5 s of quiet), then none.
    let mut own = 0;
    let mut ended = 0;
    c.events_until(Duration::from_secs(20), |e| {
        match e {
            Event::TurnStarted { origin, text, .. } if origin == "proactive" => {
                assert!(text.is_empty(), "the instruction is not shown: {text}");
                own += 1;
            }
            Event::TurnEnded { .. } => ended += 1,
            _ => {}
        }
        ended == 3
    })
    .await
    .unwrap();
    assert_eq!(own, 2);
    let more = c
        .events_until(Duration::from_millis(3000), |e| {
            matches!(e, Event::TurnStarted { .. })
        })
        .await;
    assert!(more.is_err(), "it went on past its cap: {more:?}");

    // The model saw the instruction last; the history keeps only what was said.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs[1..] {
        let last = r.messages().last().cloned().unwrap_or_default();
        assert_eq!(last["role"], "user");
        assert_eq!(last["content"], NOTE);
    }
    let stored = conversation_messages(&mut c, conversation_id).await;
    let roles: Vec<Role> = stored.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Assistant,
            Role::Assistant
        ]
    );
    assert!(stored.iter().all(|m| m.text != NOTE));

    // The user answers: the count starts again.
    c.request(Request::SendText {
        text: "yes".into(),
        images: Vec::new(),
    })
    .await
    .unwrap()
    .unwrap();
    c.events_until(
        Duration::from_secs(10),
        |e| matches!(e, Event::TurnStarted { origin, .. } if origin == "proactive"),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ai_speak_signal_makes_the_character_speak_up_at_once() {
    let (mock, daemon) = daemon_with_mock(MockBehaviour::reply("Hi again!"));
    let _c = with_kit(&daemon).await;
    let base = web_url(&daemon).await;
    let mut ws = Ws::connect(&base).await;
    ws.greeting().await;
    ws.send(json!({"type": "ai-speak-signal"})).await;
    let mut turn = ws.until(|m| m["type"] == "backend-synth-complete").await;
    ws.send(json!({"type": "frontend-playback-complete"})).await;
    turn.extend(ws.until(|m| is_control(m, "conversation-chain-end")).await);
    let types: Vec<&str> = turn.iter().filter_map(|m| m["type"].as_str()).collect();
    assert!(!types.contains(&"user-input"), "{types:?}");
    assert!(!types.contains(&"error"), "{turn:?}");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].messages().last().unwrap()["content"], NOTE);
}
