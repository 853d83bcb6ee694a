//! Tests of the whole conversation through its handle: turns on a mock LLM server, tool
//! rounds, interruption and the per-turn limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vtuber_shared::{CutReason, Event, TurnOutcome};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply, MockToolCall};

use super::fake_tools::FakeTools;
use super::{Conversation, ConversationSetup};
use crate::characters::Roster;
use crate::config::{Config, ProviderKind};
use crate::events::EventBus;
use crate::store::Store;

/// A conversation on a mock LLM, with the bus and store it reports to.
struct Fixture {
    stage: Conversation,
    bus: EventBus,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn stage_with(mock: &MockLlm, tools: Arc<FakeTools>) -> Fixture {
    stage_configured(mock, tools, |_| {}).await
}

async fn stage_configured(
    mock: &MockLlm,
    tools: Arc<FakeTools>,
    tweak: impl FnOnce(&mut Config),
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.llm.provider = ProviderKind::OpenaiCompatible;
    config.llm.base_url = mock.base_url();
    config.llm.model = Some("mock-model".into());
    config.llm.retries = 0;
    tweak(&mut config);
    let (roster, _) = Roster::load(None);
    let character = roster.get("mao").unwrap().clone();
    let store = Store::open(&dir.path().join("h.sqlite3")).unwrap();
    let bus = EventBus::new(1024);
    let stage = Conversation::start(
        ConversationSetup {
            config,
            roster,
            character_dir: None,
            character,
            conversation: None,
            tools: Some(tools),
            max_tool_rounds: 3,
            speech: None,
        },
        store.clone(),
        bus.clone(),
    );
    Fixture {
        stage,
        bus,
        store,
        _dir: dir,
    }
}

async fn finish(fx: &Fixture, text: &str) -> (Vec<Event>, String) {
    finish_with(fx, text, Vec::new()).await
}

async fn finish_with(
    fx: &Fixture,
    text: &str,
    images: Vec<vtuber_shared::ImageInput>,
) -> (Vec<Event>, String) {
    let (mut rx, _) = fx.bus.subscribe();
    fx.stage
        .send_text_with_images(text.into(), images, "test".into())
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let frame: vtuber_shared::ServerFrame = vtuber_shared::framing::decode(&ev.line).unwrap();
        let vtuber_shared::ServerFrame::Event { event, .. } = frame else {
            continue;
        };
        if let Event::TurnEnded { text, outcome, .. } = &event {
            assert_eq!(*outcome, TurnOutcome::Finished, "{events:?}");
            let text = text.clone();
            events.push(event);
            return (events, text);
        }
        events.push(event);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn native_tool_calls_run_and_results_go_back() {
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::Reply(MockReply::text("Let me add.").with_tool_calls(vec![
            MockToolCall::new("c1", "calc__add", r#"{"a": 2, "b": 3}"#),
        ])),
        MockBehaviour::reply(" It is 5."),
    ]))
    .await
    .unwrap();
    let tools = Arc::new(FakeTools {
        calls: AtomicUsize::new(0),
    });
    let fx = stage_with(&mock, tools.clone()).await;
    let (_, text) = finish(&fx, "2+3?").await;
    assert_eq!(text, "Let me add. It is 5.");
    assert_eq!(tools.calls.load(Ordering::SeqCst), 1);
    let second = mock.requests().pop().unwrap();
    let msgs = second.messages();
    let tool_msg = msgs
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool result sent");
    assert_eq!(tool_msg["content"], "5");
    assert_eq!(tool_msg["tool_call_id"], "c1");
    let asked = msgs
        .iter()
        .find(|m| m["role"] == "assistant" && m.get("tool_calls").is_some())
        .expect("assistant tool_calls echoed");
    assert_eq!(asked["tool_calls"][0]["function"]["name"], "calc__add");
    // The tools were offered in the first request.
    let first = &mock.requests()[0];
    assert_eq!(first.body["tools"][0]["function"]["name"], "calc__add");
}

/// An interrupted reply reaches the next prompt as said, marked as interrupted (a
/// small model otherwise carries on with it), and stays unmarked in the history.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_reply_reaches_the_next_prompt_marked() {
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::endless(200.0),
        MockBehaviour::reply("Paris."),
    ]))
    .await
    .unwrap();
    let tools = Arc::new(FakeTools {
        calls: AtomicUsize::new(0),
    });
    let fx = stage_with(&mock, tools).await;
    let (mut rx, _) = fx.bus.subscribe();
    fx.stage
        .send_text("tell me a story".into(), "test".into())
        .await
        .unwrap();
    // Interrupt once some of the reply has come.
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Ok(vtuber_shared::ServerFrame::Event {
            event: Event::Delta { .. },
            ..
        }) = vtuber_shared::framing::decode(&ev.line)
        {
            break;
        }
    }
    fx.stage.interrupt().await.unwrap();
    let (_, text) = finish(&fx, "capital of France?").await;
    assert_eq!(text, "Paris.");
    let second = mock.requests().pop().unwrap();
    let msgs = second.messages();
    let said = msgs
        .iter()
        .find(|m| m["role"] == "assistant")
        .and_then(|m| m["content"].as_str())
        .expect("the interrupted reply is in the prompt")
        .to_owned();
    assert!(
        said.ends_with(&format!("... {}", crate::llm::INTERRUPTED_NOTE)),
        "{said}"
    );
    let partial = said
        .strip_suffix(&format!("... {}", crate::llm::INTERRUPTED_NOTE))
        .unwrap_or_default();
    assert!(!partial.is_empty());
    assert_eq!(msgs.last().unwrap()["content"], "capital of France?");
    let conv = fx.stage.view().conversation_id.unwrap();
    let (_, stored) = fx.store.conversation(conv).await.unwrap();
    assert!(stored[1].interrupted);
    assert_eq!(stored[1].text.trim_end(), partial);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_of_one_step_run_concurrently() {
    let calls = (0..3)
        .map(|i| MockToolCall::new(format!("s{i}"), "calc__slow", "{}"))
        .collect();
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::Reply(MockReply::tool_calls(calls)),
        MockBehaviour::reply("Done."),
    ]))
    .await
    .unwrap();
    let tools = Arc::new(FakeTools {
        calls: AtomicUsize::new(0),
    });
    let fx = stage_with(&mock, tools.clone()).await;
    let t = Instant::now();
    let (_, text) = finish(&fx, "slow x3").await;
    let took = t.elapsed();
    assert_eq!(text, "Done.");
    assert_eq!(tools.calls.load(Ordering::SeqCst), 3);
    assert!(took < Duration::from_millis(800), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_rounds_are_bounded() {
    // The model asks for a tool every time; after 3 rounds it must answer without.
    let ask = MockBehaviour::Reply(MockReply::tool_calls(vec![MockToolCall::new(
        "c",
        "calc__add",
        "{}",
    )]));
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        ask.clone(),
        ask.clone(),
        ask,
        MockBehaviour::reply("Giving up on tools."),
    ]))
    .await
    .unwrap();
    let tools = Arc::new(FakeTools {
        calls: AtomicUsize::new(0),
    });
    let fx = stage_with(&mock, tools.clone()).await;
    let (_, text) = finish(&fx, "loop").await;
    assert_eq!(text, "Giving up on tools.");
    assert_eq!(tools.calls.load(Ordering::SeqCst), 3);
    let last = mock.requests().pop().unwrap();
    assert!(
        last.body
            .get("tools")
            .is_none_or(|t| t.as_array().is_none_or(Vec::is_empty))
    );
}

/// Runs one turn and returns its deltas joined, and its `turn_ended`.
async fn turn_events(fx: &Fixture, text: &str) -> (String, Event) {
    let (mut rx, _) = fx.bus.subscribe();
    fx.stage
        .send_text(text.into(), "test".into())
        .await
        .unwrap();
    let mut deltas = String::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(ev.line.len() <= vtuber_shared::framing::MAX_FRAME_BYTES + 1);
        match &ev.event {
            Event::Delta { text, .. } => deltas.push_str(text),
            Event::TurnEnded { .. } => return (deltas, ev.event.clone()),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_over_the_token_limit_is_cut_and_stored_as_cut() {
    let words: Vec<String> = (0..100).map(|i| format!(" w{i}")).collect();
    let mock = MockLlm::start(MockBehaviour::Reply(MockReply::tokens(words.clone())))
        .await
        .unwrap();
    let tools = Arc::new(FakeTools {
        calls: AtomicUsize::new(0),
    });
    let fx = stage_configured(&mock, tools, |c| {
        c.llm.max_reply_tokens = Some(10);
    })
    .await;
    let (deltas, ended) = turn_events(&fx, "talk").await;
    assert_eq!(deltas, words[..10].concat());
    let Event::TurnEnded {
        outcome, text, cut, ..
    } = ended
    else {
        unreachable!()
    };
    assert_eq!(outcome, TurnOutcome::Finished);
    assert_eq!(text, deltas);
    let cut = cut.expect("a cut note");
    assert_eq!(cut.reason, CutReason::Length);
    assert!(
        cut.message.contains("llm.max_reply_tokens"),
        "{}",
        cut.message
    );
    let id = fx.stage.view().conversation_id.unwrap();
    let (_, msgs) = fx.store.conversation(id).await.unwrap();
    assert_eq!(msgs[1].text, deltas);
    assert_eq!(msgs[1].cut, Some(CutReason::Length));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_reply_goes_out_in_pieces_that_fit_frames() {
    // Two huge pieces, as a non-streaming server or a big chunk would hand over.
    let piece = "\u{1}\"ab".repeat(100_000);
    let mock = MockLlm::start(MockBehaviour::Reply(MockReply::tokens([
        piece.clone(),
        piece.clone(),
    ])))
    .await
    .unwrap();
    let tools = Arc::new(FakeTools {
        calls: AtomicUsize::new(0),
    });
    let fx = stage_configured(&mock, tools, |c| {
        c.llm.max_reply_bytes = Some(64 * 1024 * 1024);
    })
    .await;
    let (deltas, ended) = turn_events(&fx, "talk").await;
    assert_eq!(deltas, piece.repeat(2));
    let Event::TurnEnded {
        text,
        text_omitted,
        cut,
        ..
    } = ended
    else {
        unreachable!()
    };
    assert!(text_omitted, "a reply this large is not repeated");
    assert!(text.is_empty());
    assert_eq!(cut, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn pictures_reach_the_prompt_and_stay_in_later_ones() {
    use base64::Engine as _;
    let mock = MockLlm::start(MockBehaviour::reply("A square."))
        .await
        .unwrap();
    let tools = Arc::new(FakeTools {
        calls: AtomicUsize::new(0),
    });
    let fx = stage_with(&mock, tools).await;
    let png = crate::images::tests::encoded(20, 20, image::ImageFormat::Png);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let image = vtuber_shared::ImageInput::new("image/png", b64);
    finish_with(&fx, "what is this?", vec![image]).await;
    finish(&fx, "and its colour?").await;
    let requests = mock.requests();
    for r in &requests {
        let msgs = r.messages();
        let first_user = msgs.iter().find(|m| m["role"] == "user").unwrap();
        assert_eq!(first_user["content"][0]["text"], "what is this?");
        let url = first_user["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("data:image/jpeg;base64,/9j/"), "{url}");
    }
    assert_eq!(
        requests[1].messages().last().unwrap()["content"],
        "and its colour?"
    );

    // A picture that is not one is refused with the reason; no turn starts.
    let bad = vtuber_shared::ImageInput::new("image/png", "aGVsbG8=");
    let err = fx
        .stage
        .send_text_with_images("look".into(), vec![bad], "test".into())
        .await
        .unwrap_err();
    assert_eq!(err.code, vtuber_shared::ErrorCode::InvalidArgument);
    assert!(err.message.contains("cannot be read"), "{}", err.message);
    assert_eq!(mock.requests().len(), 2);
}
