//! Conversations through the real binaries: `vtuber say`, interruption, history across
//! restarts and crashes, several clients at once, LLM failures.

use std::time::Duration;

use crate::common::*;
use vtuber_shared::{Event, Reply, Request, Role, TurnOutcome};
use vtuber_test_support::daemon::TestClient;
use vtuber_test_support::mock_llm::{MockBehaviour, MockReply};

#[tokio::test(flavor = "multi_thread")]
async fn say_streams_the_reply_to_stdout() {
    let (mock, daemon) = daemon_with_mock(MockBehaviour::reply("Hello there, friend!"));
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "hi", "Mao"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), "Hello there, friend!");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].last_user_message(), Some("hi Mao"));
    // The persona leads the prompt.
    assert_eq!(reqs[0].messages()[0]["role"], "system");
    assert!(
        reqs[0].messages()[0]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("Mao")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn say_json_prints_protocol_events() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("One two three."));
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "--json", "count"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let frames: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let types: Vec<&str> = frames
        .iter()
        .filter_map(|f| f["event"]["type"].as_str())
        .collect();
    assert!(types.contains(&"turn_started"), "{types:?}");
    assert!(types.contains(&"delta"), "{types:?}");
    assert_eq!(types.last(), Some(&"turn_ended"), "{types:?}");
    let text: String = frames
        .iter()
        .filter(|f| f["event"]["type"] == "delta")
        .filter_map(|f| f["event"]["text"].as_str())
        .collect();
    assert_eq!(text, "One two three.");
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_errors_fail_say_with_a_hint() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::status(401));
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "hello"]);
    let out = run(cmd).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("api_key_env"), "hint missing: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_reported() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = vtuber_test_support::daemon::TestDaemon::spawn(&openai_config(&format!(
        "http://127.0.0.1:{port}/v1"
    )))
    .unwrap();
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "hello"]);
    let out = run(cmd).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains("base_url"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_input_interrupts_and_keeps_the_partial_reply() {
    let slow = MockReply::text("one two three four five six seven eight nine ten eleven twelve")
        .with_rate(20.0);
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::Script(vec![
        MockBehaviour::Reply(slow),
        MockBehaviour::reply("Second answer."),
    ]));
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();
    let Ok(Reply::TurnAccepted {
        turn_id: first,
        conversation_id,
    }) = a
        .request(Request::SendText {
            text: "long please".into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
    else {
        panic!("turn not accepted");
    };
    // Wait for the reply to be under way, then interrupt it from the other client.
    b.events_until(
        WAIT,
        |e| matches!(e, Event::Delta { turn_id, .. } if *turn_id == first),
    )
    .await
    .unwrap();
    let Ok(Reply::TurnAccepted {
        turn_id: second, ..
    }) = b
        .request(Request::SendText {
            text: "stop, short one".into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
    else {
        panic!("second turn not accepted");
    };
    let events = a
        .events_until(
            WAIT,
            |e| matches!(e, Event::TurnEnded { turn_id, .. } if *turn_id == second),
        )
        .await
        .unwrap();
    let first_end = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::TurnEnded {
                turn_id,
                outcome,
                text,
                ..
            } if *turn_id == first => Some((outcome.clone(), text.clone())),
            _ => None,
        })
        .expect("first turn ended");
    assert_eq!(first_end.0, TurnOutcome::Interrupted);
    assert!(
        !first_end.1.is_empty() && first_end.1.len() < 60,
        "{}",
        first_end.1
    );

    let messages = conversation_messages(&mut a, conversation_id).await;
    let shape: Vec<(Role, bool)> = messages.iter().map(|m| (m.role, m.interrupted)).collect();
    assert_eq!(
        shape,
        vec![
            (Role::User, false),
            (Role::Assistant, true),
            (Role::User, false),
            (Role::Assistant, false)
        ]
    );
    assert_eq!(messages[1].text, first_end.1);
    assert_eq!(messages[3].text, "Second answer.");
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupt_request_stops_the_reply() {
    let slow = MockReply::text("a b c d e f g h i j k l m n o p").with_rate(10.0);
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::Reply(slow));
    let mut c = daemon.client("c").await.unwrap();
    let Ok(Reply::TurnAccepted { turn_id, .. }) = c
        .request(Request::SendText {
            text: "go".into(),
            images: Vec::new(),
        })
        .await
        .unwrap()
    else {
        panic!("not accepted");
    };
    c.events_until(WAIT, |e| matches!(e, Event::Delta { .. }))
        .await
        .unwrap();
    let r = c.request(Request::Interrupt).await.unwrap();
    assert_eq!(
        r,
        Ok(Reply::Interrupted {
            turn_id: Some(turn_id)
        })
    );
    let events = c
        .events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .unwrap();
    assert!(matches!(
        events.last(),
        Some((
            _,
            Event::TurnEnded {
                outcome: TurnOutcome::Interrupted,
                ..
            }
        ))
    ));
    // Nothing is running any more.
    assert_eq!(
        c.request(Request::Interrupt).await.unwrap(),
        Ok(Reply::Interrupted { turn_id: None })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_survives_restart_and_kill_9() {
    let (mock, mut daemon) = daemon_with_mock(MockBehaviour::echo_last_user());
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "remember the word teapot"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "You said: remember the word teapot");

    // A crash right after the turn ended loses nothing.
    daemon.kill9().unwrap();
    daemon.start().unwrap();
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "what was the word?"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // The resumed conversation reached the prompt.
    let last = mock.requests().pop().unwrap();
    let contents: Vec<&str> = last
        .messages()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        contents.contains(&"remember the word teapot"),
        "{contents:?}"
    );
    assert!(
        contents.contains(&"You said: remember the word teapot"),
        "{contents:?}"
    );

    // And a clean restart keeps it too.
    assert!(daemon.terminate().unwrap().success());
    daemon.start().unwrap();
    let mut c = daemon.client("t").await.unwrap();
    let Ok(Reply::Conversations { conversations }) = c
        .request(Request::ListConversations { character: None })
        .await
        .unwrap()
    else {
        panic!("list failed");
    };
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].message_count, 4);
    assert_eq!(conversations[0].title, "remember the word teapot");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_see_the_same_events_in_order() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply(
        "The quick brown fox jumps over the lazy dog.",
    ));
    let mut a = daemon.client("a").await.unwrap();
    let mut b = daemon.client("b").await.unwrap();
    // Let b's attach notice pass so both start from the same point.
    a.events_until(WAIT, |e| matches!(e, Event::ClientsChanged { clients: 2 }))
        .await
        .unwrap();
    a.request(Request::SendText {
        text: "go".into(),
        images: Vec::new(),
    })
    .await
    .unwrap()
    .unwrap();
    let is_end = |e: &Event| matches!(e, Event::TurnEnded { .. });
    let ea = a.events_until(WAIT, is_end).await.unwrap();
    let eb = b.events_until(WAIT, is_end).await.unwrap();
    let tail = |v: &[(u64, Event)]| -> Vec<(u64, Event)> {
        let start = v
            .iter()
            .position(|(_, e)| matches!(e, Event::TurnStarted { .. }))
            .expect("turn started seen");
        v[start..].to_vec()
    };
    let (ta, tb) = (tail(&ea), tail(&eb));
    assert_eq!(ta, tb);
    for w in ta.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "gap in sequence numbers");
    }
    let text: String = ta
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Delta { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "The quick brown fox jumps over the lazy dog.");
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_commands_list_show_export_delete() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("Tea is *great*."));
    let mut cmd = daemon.vtuber();
    cmd.args(["say", "tea?"]);
    assert!(run(cmd).await.status.success());

    let mut c = TestClient::connect(&daemon.socket, "t", false)
        .await
        .unwrap();
    let Ok(Reply::Conversations { conversations }) = c
        .request(Request::ListConversations { character: None })
        .await
        .unwrap()
    else {
        panic!()
    };
    let id = conversations[0].id.to_string();

    let mut cmd = daemon.vtuber();
    cmd.args(["history", "export", &id, "--format", "md"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(
        md.contains("tea?") && md.contains("Tea is *great*."),
        "{md}"
    );

    let mut cmd = daemon.vtuber();
    cmd.args(["history", "export", &id, "--format", "json"]);
    let out = run(cmd).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json export");
    assert_eq!(json["messages"].as_array().map(Vec::len), Some(2));

    let mut cmd = daemon.vtuber();
    cmd.args(["history", "delete", &id]);
    assert!(run(cmd).await.status.success());
    let Ok(Reply::Conversations { conversations }) = c
        .request(Request::ListConversations { character: None })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(conversations.is_empty());
}
