//! Snapshot tests of the chat view on ratatui's test backend. Snapshots live in
//! `snapshots/`; review changes with `cargo insta review` (or set INSTA_UPDATE).

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use vtuber_shared::{
    ApprovalResolution, CharacterInfo, DaemonState, ErrorBody, ErrorCode, Event, McpServerInfo,
    McpServerState, ModelLoad, SandboxLevel, ToolOutcome, TurnOutcome,
};

use super::state::{App, Conn, Kind, Message};
use super::update::Action;
use super::view;
use super::wrap::str_width;
use vtuber_shared::client::fake_daemon as fake;

fn app() -> App {
    let mut app = App::new();
    app.connected(fake::status());
    app.set_characters(
        "aria",
        &[CharacterInfo {
            id: "aria".into(),
            name: "Aria".into(),
            description: "A cheerful streamer".into(),
            greeting: Some("Hi! I'm Aria.".into()),
            source: "built-in".into(),
        }],
    );
    app
}

fn turn(app: &mut App, id: u64, prompt: &str, reply: &str, outcome: Option<TurnOutcome>) {
    app.apply_event(Event::TurnStarted {
        turn_id: id,
        conversation_id: 7,
        text: prompt.into(),
        origin: "vtuber-chat/0.1.0".into(),
    });
    app.turn_accepted(id);
    app.apply_event(Event::Delta {
        turn_id: id,
        text: reply.into(),
    });
    if let Some(outcome) = outcome {
        app.apply_event(Event::TurnEnded {
            turn_id: id,
            outcome,
            text: reply.into(),
            usage: None,
            cut: None,
            text_omitted: false,
        });
    }
}

fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render(f, app)).unwrap();
    terminal
}

/// The first cell whose symbol starts `text` on some row, as (x, y).
fn find(terminal: &Terminal<TestBackend>, text: &str) -> (u16, u16) {
    let buf = terminal.backend().buffer();
    let first = text.chars().next().unwrap().to_string();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            if buf[(x, y)].symbol() == first {
                let row: String = (x..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect();
                if row.starts_with(text) {
                    return (x, y);
                }
            }
        }
    }
    panic!("{text:?} not on screen:\n{}", terminal.backend());
}

#[test]
fn ordinary_conversation() {
    let mut app = app();
    turn(
        &mut app,
        1,
        "Hi Aria, how are you?",
        "I'm **great**, thanks for asking! What shall we do *today*?",
        Some(TurnOutcome::Finished),
    );
    turn(
        &mut app,
        2,
        "Tell me about `ratatui`.",
        "It draws terminal UIs.",
        Some(TurnOutcome::Finished),
    );
    let terminal = draw(&mut app, 60, 18);
    insta::assert_snapshot!(terminal.backend());
    // Markup is styled rather than shown.
    let (x, y) = find(&terminal, "great");
    assert!(
        terminal.backend().buffer()[(x, y)]
            .modifier
            .contains(ratatui::style::Modifier::BOLD)
    );
}

#[test]
fn greeting_in_an_empty_conversation() {
    let mut app = app();
    app.loading_conversation(7);
    app.set_conversation(
        &vtuber_shared::ConversationSummary {
            id: 7,
            character: "aria".into(),
            title: String::new(),
            created_ms: 0,
            updated_ms: 0,
            message_count: 0,
        },
        &[],
    );
    insta::assert_snapshot!(draw(&mut app, 50, 10).backend());
}

#[test]
fn streaming_reply_in_progress() {
    let mut app = app();
    turn(
        &mut app,
        1,
        "Write me a haiku",
        "Autumn moonlight—\na worm digs silently",
        None,
    );
    app.apply_event(Event::StateChanged {
        state: DaemonState::Speaking,
    });
    let terminal = draw(&mut app, 50, 12);
    insta::assert_snapshot!(terminal.backend());
    find(&terminal, "silently▍");
}

#[test]
fn cjk_and_emoji_wrap_inside_a_narrow_window() {
    let mut app = app();
    turn(
        &mut app,
        1,
        "日本語で話せますか？🙂",
        "はい、もちろんです！日本語でお話ししましょう。👨‍👩‍👧‍👦 家族の絵文字もOK 🎉🎉🎉 mixed English text too",
        Some(TurnOutcome::Finished),
    );
    let width = 24;
    let text_width = width as usize - 1;
    for line in view::message_list(&app, text_width) {
        let w = str_width(&line.to_string());
        assert!(
            w <= text_width,
            "{line} is {w} cells, wider than {text_width}"
        );
    }
    let terminal = draw(&mut app, width, 24);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn code_block() {
    let mut app = app();
    turn(
        &mut app,
        1,
        "Show me hello world in Rust",
        "Here you go:\n```rust\nfn main() {\n    println!(\"hello, world\");\n}\n```\nRun it with `cargo run`.",
        Some(TurnOutcome::Finished),
    );
    let terminal = draw(&mut app, 50, 16);
    insta::assert_snapshot!(terminal.backend());
    let (x, y) = find(&terminal, "fn main");
    assert_eq!(terminal.backend().buffer()[(x, y)].fg, Color::Yellow);
}

#[test]
fn error_with_hint_and_interrupted_reply() {
    let mut app = app();
    turn(
        &mut app,
        1,
        "Tell me a long story",
        "Once upon a time",
        Some(TurnOutcome::Interrupted),
    );
    turn(
        &mut app,
        2,
        "Hello?",
        "",
        Some(TurnOutcome::Failed {
            error: ErrorBody::new(
                ErrorCode::Llm,
                "cannot reach the LLM server at http://localhost:8080",
            )
            .with_hint("start the server or fix `llm.base_url` in conf.yaml"),
        }),
    );
    app.apply_event(Event::StateChanged {
        state: DaemonState::Error,
    });
    let terminal = draw(&mut app, 50, 20);
    insta::assert_snapshot!(terminal.backend());
    let (x, y) = find(&terminal, "cannot reach");
    assert_eq!(terminal.backend().buffer()[(x, y)].fg, Color::Red);
    let (x, y) = find(&terminal, "hint: start");
    assert_eq!(terminal.backend().buffer()[(x, y)].fg, Color::Yellow);
}

#[test]
fn help_overlay() {
    let mut app = app();
    turn(&mut app, 1, "hi", "hello!", Some(TurnOutcome::Finished));
    app.show_help = true;
    insta::assert_snapshot!(draw(&mut app, 64, 18).backend());
}

#[test]
fn multi_line_input_grows_and_keeps_the_cursor_visible() {
    let mut app = app();
    app.input.insert("first line\nsecond line\nthird");
    let mut terminal = draw(&mut app, 40, 12);
    insta::assert_snapshot!(terminal.backend());
    // The cursor sits after "third", on the input's last row.
    let (x, y) = find(&terminal, "third");
    terminal.backend_mut().assert_cursor_position((x + 5, y));
}

#[test]
fn scrolled_back_view_shows_older_messages() {
    let mut app = app();
    for i in 0..10 {
        turn(
            &mut app,
            i,
            &format!("question {i}"),
            &format!("answer {i}"),
            Some(TurnOutcome::Finished),
        );
    }
    draw(&mut app, 40, 12);
    app.scroll = Some(0);
    let terminal = draw(&mut app, 40, 12);
    insta::assert_snapshot!(terminal.backend());
    find(&terminal, "question 0");
}

#[test]
fn status_line_states() {
    let mut lines = Vec::new();
    let mut show = |label: &str, app: &App| {
        lines.push(format!("{label:<12}|{}|", view::status_line(app, 72)));
    };
    let mut app = app();
    show("idle", &app);
    app.apply_event(Event::StateChanged {
        state: DaemonState::Loading,
    });
    app.apply_event(Event::ModelLoad {
        load: ModelLoad::Loading,
    });
    show("loading", &app);
    app.apply_event(Event::StateChanged {
        state: DaemonState::Thinking,
    });
    show("thinking", &app);
    app.apply_event(Event::ModelLoad {
        load: ModelLoad::Ready,
    });
    app.apply_event(Event::StateChanged {
        state: DaemonState::Speaking,
    });
    show("speaking", &app);
    if let Some(s) = &mut app.status {
        s.last_error = Some(ErrorBody::new(ErrorCode::Model, "model file missing"));
    }
    app.apply_event(Event::StateChanged {
        state: DaemonState::Error,
    });
    show("error", &app);
    app.disconnected();
    show("offline", &app);
    app.reconnect_failed();
    app.reconnect_failed();
    show("retrying", &app);
    let mut fresh = App::new();
    show("connecting", &fresh);
    fresh.scroll = Some(0);
    fresh.conn = Conn::Connected;
    show("scrolled", &fresh);
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn messages_from_other_clients_show_where_they_came_from() {
    let mut app = app();
    app.apply_event(Event::TurnStarted {
        turn_id: 4,
        conversation_id: 7,
        text: "sent from a script".into(),
        origin: "vtuber-say/0.1.0".into(),
    });
    let lines: Vec<String> = view::message_list(&app, 50)
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!(lines[0], "You · from vtuber-say/0.1.0");
    assert_eq!(app.messages[0].kind, Kind::User);
    app.push(Message::new(Kind::System, "now talking to Bo"));
    let last = view::message_list(&app, 50).last().unwrap().to_string();
    assert_eq!(last, "· now talking to Bo");
}

fn tool_started(turn_id: u64, call_id: &str, tool: &str, args: serde_json::Value) -> Event {
    Event::ToolCallStarted {
        turn_id,
        call_id: call_id.into(),
        server: "time".into(),
        tool: tool.into(),
        arguments: args,
    }
}

fn tool_ended(turn_id: u64, call_id: &str, outcome: ToolOutcome, ms: u64, summary: &str) -> Event {
    Event::ToolCallEnded {
        turn_id,
        call_id: call_id.into(),
        outcome,
        duration_ms: ms,
        summary: summary.into(),
    }
}

fn server(name: &str, state: McpServerState, tools: usize) -> McpServerInfo {
    McpServerInfo {
        name: name.into(),
        transport: "stdio".into(),
        state,
        tools,
        sandbox: SandboxLevel::Enforced,
        sandbox_detail: String::new(),
    }
}

#[test]
fn running_tool_call_with_progress() {
    let mut app = app();
    app.set_mcp_servers(vec![server("time", McpServerState::Ready, 2)]);
    turn(&mut app, 1, "What time is it in UTC?", "", None);
    app.apply_event(tool_started(
        1,
        "c1",
        "get_current_time",
        serde_json::json!({"timezone": "UTC"}),
    ));
    app.apply_event(Event::ToolCallProgress {
        call_id: "c1".into(),
        progress: 2.0,
        total: Some(5.0),
        message: Some("asking the clock".into()),
    });
    app.apply_event(Event::StateChanged {
        state: DaemonState::Thinking,
    });
    let terminal = draw(&mut app, 70, 12);
    insta::assert_snapshot!(terminal.backend());
    let (x, y) = find(&terminal, "⚙");
    assert_eq!(terminal.backend().buffer()[(x, y)].fg, Color::Blue);
    find(&terminal, "tool │ Aria");
    find(&terminal, "tools: 2 ready");
}

#[test]
fn finished_denied_and_timed_out_tool_calls() {
    let mut app = app();
    turn(&mut app, 1, "Check everything", "", None);
    let args = serde_json::json!({"path": "/home/me/notes.txt"});
    app.apply_event(tool_started(
        1,
        "c1",
        "get_current_time",
        serde_json::json!({}),
    ));
    app.apply_event(tool_ended(
        1,
        "c1",
        ToolOutcome::Ok,
        120,
        "2024-05-06 07:08 UTC",
    ));
    app.apply_event(tool_started(1, "c2", "read_file", args.clone()));
    app.apply_event(tool_ended(1, "c2", ToolOutcome::Error, 8, "no such file"));
    app.apply_event(Event::ApprovalRequested {
        request_id: 1,
        turn_id: 1,
        call_id: "c3".into(),
        server: "fs".into(),
        tool: "delete_file".into(),
        description: String::new(),
        arguments: args.clone(),
        timeout_secs: 30,
    });
    app.apply_event(Event::ApprovalResolved {
        request_id: 1,
        resolution: ApprovalResolution::Denied,
    });
    app.apply_event(tool_ended(1, "c3", ToolOutcome::Denied, 0, ""));
    app.apply_event(Event::ApprovalRequested {
        request_id: 2,
        turn_id: 1,
        call_id: "c4".into(),
        server: "fs".into(),
        tool: "write_file".into(),
        description: String::new(),
        arguments: args,
        timeout_secs: 30,
    });
    app.apply_event(Event::ApprovalResolved {
        request_id: 2,
        resolution: ApprovalResolution::TimedOut,
    });
    app.apply_event(tool_ended(1, "c4", ToolOutcome::TimedOut, 30_000, ""));
    app.apply_event(tool_started(1, "c5", "slow", serde_json::json!({})));
    app.apply_event(Event::TurnEnded {
        turn_id: 1,
        outcome: TurnOutcome::Interrupted,
        text: "It is 07:08.".into(),
        usage: None,
        cut: None,
        text_omitted: false,
    });
    assert!(app.approvals.is_empty());
    assert!(!app.tool_running());
    let terminal = draw(&mut app, 72, 16);
    insta::assert_snapshot!(terminal.backend());
    let (x, y) = find(&terminal, "✓");
    assert_eq!(terminal.backend().buffer()[(x, y)].fg, Color::Green);
    let (x, y) = find(&terminal, "error: no such file");
    assert_eq!(terminal.backend().buffer()[(x, y)].fg, Color::Red);
}

#[test]
fn approval_dialog() {
    let mut app = app();
    turn(&mut app, 1, "Tidy up my notes", "", None);
    for (id, tool) in [(7, "delete_file"), (8, "write_file")] {
        app.apply_event(Event::ApprovalRequested {
            request_id: id,
            turn_id: 1,
            call_id: format!("c{id}"),
            server: "filesystem".into(),
            tool: tool.into(),
            description: "Delete a file or directory. Cannot be undone; use with care.".into(),
            arguments: serde_json::json!({
                "path": "/home/me/notes/old.txt",
                "recursive": false,
                "options": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}
            }),
            timeout_secs: 30,
        });
    }
    // 2.5 s later: the countdown rounds up.
    app.now += std::time::Duration::from_millis(2500);
    let terminal = draw(&mut app, 72, 26);
    insta::assert_snapshot!(terminal.backend());
    find(&terminal, "28 s");
    find(&terminal, "1 more waiting");
    find(&terminal, "⚙ filesystem · delete_file");
}

fn voice_status(input: Option<&str>, listening: bool) -> vtuber_shared::VoiceStatus {
    let engine = |backend: &str| vtuber_shared::EngineStatus {
        backend: backend.into(),
        model: "m".into(),
        load: ModelLoad::Ready,
    };
    vtuber_shared::VoiceStatus {
        audio: if input.is_some() {
            "ready".into()
        } else {
            "no audio device".into()
        },
        input_device: input.map(str::to_owned),
        output_device: None,
        listening,
        push_to_talk: false,
        barge_in: "voice".into(),
        playback: "both".into(),
        echo_cancellation: "webrtc".into(),
        vad: engine("silero"),
        asr: engine("whisper"),
        tts: engine("piper"),
    }
}

#[test]
fn status_line_shows_voice_state_and_level() {
    let mut lines = Vec::new();
    let mut show = |label: &str, app: &App| {
        lines.push(format!("{label:<12}|{}|", view::status_line(app, 80)));
    };
    let mut app = app();
    app.apply_event(Event::VoiceChanged {
        voice: Box::new(voice_status(None, false)),
    });
    show("no mic", &app);
    // F2 without a microphone explains instead of sending a request.
    assert_eq!(
        app.handle_key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::F(2),
            crossterm::event::KeyModifiers::NONE
        )),
        None
    );
    assert!(
        app.messages
            .last()
            .is_some_and(|m| m.text.contains("cannot listen"))
    );
    app.apply_event(Event::VoiceChanged {
        voice: Box::new(voice_status(Some("USB mic"), true)),
    });
    app.apply_event(Event::StateChanged {
        state: DaemonState::Listening,
    });
    app.apply_event(Event::InputLevel { level: 0.1 });
    show("listening", &app);
    app.apply_event(Event::StateChanged {
        state: DaemonState::Hearing,
    });
    app.apply_event(Event::InputLevel { level: 0.9 });
    show("hearing", &app);
    assert_eq!(
        app.handle_key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::F(2),
            crossterm::event::KeyModifiers::NONE
        )),
        Some(Action::SetListening(false))
    );
    assert_eq!(
        app.handle_key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::F(3),
            crossterm::event::KeyModifiers::NONE
        )),
        Some(Action::PushToTalk(true))
    );
    insta::assert_snapshot!(lines.join("\n"));
}
