//! Every protocol message survives encoding and decoding: each `Request`, `Reply` and
//! `Event` variant is framed, parsed back and compared.
//!
//! A new variant cannot be forgotten: the `*_name` matches below have no `_` arm (a new
//! variant does not compile until it is named there), each name must be the variant's
//! wire `type`, and the test fails until the sample list holds every variant (for
//! `Request` and `Reply` serde's own list of wire names is the reference; `Event` has a
//! catch-all, so its count sits beside its match).

use std::collections::BTreeSet;

use serde_json::json;
use vtuber_shared::framing;
use vtuber_shared::*;

fn status() -> Status {
    Status {
        state: DaemonState::Thinking,
        character: "aria".into(),
        llm: LlmInfo {
            backend: "embedded".into(),
            model: "tiny".into(),
        },
        model_load: ModelLoad::Failed {
            reason: "no file".into(),
        },
        clients: 2,
        daemon_version: "0.1.0".into(),
        uptime_secs: 1.5,
        pid: 42,
        conversation_id: Some(3),
        socket: "/run/v.sock".into(),
        config_file: Some("/etc/v.yaml".into()),
        last_error: Some(ErrorBody::new(ErrorCode::Llm, "down").with_hint("start it")),
        voice: Some(Box::new(voice())),
        web_url: Some("http://127.0.0.1:1/?token=t".into()),
        web_auth: Some("token".into()),
        web_error: None,
        avatar_error: None,
        config_files: vec!["conf.yaml".into()],
        reload_error: Some(ErrorBody::new(
            ErrorCode::Config,
            "conf.yaml:3: llm.model: bad",
        )),
        needs_restart: vec!["web.port".into()],
        cpu: None,
    }
}

fn voice() -> VoiceStatus {
    let engine = |backend: &str| EngineStatus {
        backend: backend.into(),
        model: "m".into(),
        load: ModelLoad::Ready,
    };
    VoiceStatus {
        audio: "ready".into(),
        input_device: Some("mic".into()),
        output_device: None,
        listening: true,
        push_to_talk: false,
        barge_in: "voice".into(),
        playback: "local".into(),
        echo_cancellation: "webrtc".into(),
        vad: engine("silero"),
        asr: engine("whisper"),
        tts: engine("piper"),
    }
}

fn character() -> CharacterInfo {
    CharacterInfo {
        id: "aria".into(),
        name: "Aria".into(),
        description: "a test".into(),
        greeting: Some("hi".into()),
        source: "built-in".into(),
    }
}

fn summary() -> ConversationSummary {
    ConversationSummary {
        id: 3,
        character: "aria".into(),
        title: "t".into(),
        created_ms: 1,
        updated_ms: 2,
        message_count: 2,
    }
}

fn mcp_server() -> McpServerInfo {
    McpServerInfo {
        name: "time".into(),
        transport: "stdio".into(),
        state: McpServerState::Restarting {
            attempt: 2,
            in_ms: 1500,
            reason: "exit 1".into(),
        },
        tools: 1,
        sandbox: SandboxLevel::Partial,
        sandbox_detail: "no network rules".into(),
    }
}

fn speech() -> SpeechAudio {
    SpeechAudio {
        wav_base64: "UklGRg==".into(),
        sample_rate: 22050,
        duration_ms: 500,
        volumes: vec![0.5, 1.0],
        slice_ms: 20,
    }
}

fn request_samples() -> Vec<Request> {
    vec![
        Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "test".into(),
            subscribe: false,
            audio: true,
            cookie: Some("00ff".into()),
        },
        Request::Ping,
        Request::Status,
        Request::SendText {
            text: "what is this?".into(),
            images: vec![ImageInput::new("image/png", "iVBORw0KGgo=")],
        },
        Request::Interrupt,
        Request::ListCharacters,
        Request::SwitchCharacter { name: "bob".into() },
        Request::ListConversations {
            character: Some("aria".into()),
        },
        Request::GetConversation {
            id: 3,
            page: Some(PageCursor {
                message_id: 9,
                text_offset: 12,
            }),
        },
        Request::NewConversation,
        Request::LoadConversation { id: 3 },
        Request::DeleteConversation { id: 3 },
        Request::Shutdown,
        Request::Reload,
        Request::ApproveToolCall {
            request_id: 5,
            decision: ApprovalDecision::AllowForSession,
        },
        Request::ListMcpServers,
        Request::ListMcpTools {
            server: Some("time".into()),
        },
        Request::RestartMcpServer {
            name: "time".into(),
        },
        Request::ToolAudit {
            since_ms: Some(1),
            limit: Some(10),
        },
        Request::SendAudio {
            wav_base64: "UklGRg==".into(),
        },
        Request::Speak { text: "hi".into() },
        Request::StreamAudio {
            samples_base64: "AAAA".into(),
        },
        Request::SetListening { on: true },
        Request::PushToTalk { pressed: true },
    ]
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Hello { .. } => "hello",
        Request::Ping => "ping",
        Request::Status => "status",
        Request::SendText { .. } => "send_text",
        Request::Interrupt => "interrupt",
        Request::ListCharacters => "list_characters",
        Request::SwitchCharacter { .. } => "switch_character",
        Request::ListConversations { .. } => "list_conversations",
        Request::GetConversation { .. } => "get_conversation",
        Request::NewConversation => "new_conversation",
        Request::LoadConversation { .. } => "load_conversation",
        Request::DeleteConversation { .. } => "delete_conversation",
        Request::Shutdown => "shutdown",
        Request::Reload => "reload",
        Request::ApproveToolCall { .. } => "approve_tool_call",
        Request::ListMcpServers => "list_mcp_servers",
        Request::ListMcpTools { .. } => "list_mcp_tools",
        Request::RestartMcpServer { .. } => "restart_mcp_server",
        Request::ToolAudit { .. } => "tool_audit",
        Request::SendAudio { .. } => "send_audio",
        Request::Speak { .. } => "speak",
        Request::StreamAudio { .. } => "stream_audio",
        Request::SetListening { .. } => "set_listening",
        Request::PushToTalk { .. } => "push_to_talk",
    }
}

fn reply_samples() -> Vec<Reply> {
    let mut message = StoredMessage::new(9, Role::Assistant, "hello", 2);
    message.interrupted = true;
    message.cut = Some(CutReason::Time);
    message.text_continues = true;
    let mut with_image = StoredMessage::new(8, Role::User, "hi", 1);
    with_image.images = vec![StoredImage {
        sha256: "ab".repeat(32),
        mime_type: "image/jpeg".into(),
    }];
    vec![
        Reply::Welcome {
            protocol: PROTOCOL_VERSION,
            daemon_version: "0.1.0".into(),
            status: status(),
            last_seq: 7,
        },
        Reply::Pong,
        Reply::Status(status()),
        Reply::TurnAccepted {
            turn_id: 1,
            conversation_id: 3,
        },
        Reply::Interrupted { turn_id: Some(1) },
        Reply::Characters {
            current: "aria".into(),
            characters: vec![character()],
        },
        Reply::CharacterSwitched {
            character: character(),
        },
        Reply::Conversations {
            conversations: vec![summary()],
        },
        Reply::Conversation {
            conversation: summary(),
            messages: vec![with_image, message],
            next: Some(PageCursor {
                message_id: 9,
                text_offset: 5,
            }),
        },
        Reply::ConversationChanged { conversation_id: 4 },
        Reply::Deleted { id: 3 },
        Reply::ShuttingDown,
        Reply::Reloaded {
            report: ReloadReport {
                files: vec!["conf.yaml".into(), "conf.d/10-llm.yaml".into()],
                applied: vec!["llm.model".into()],
                needs_restart: vec!["web.port".into()],
            },
        },
        Reply::ApprovalRecorded {
            request_id: 5,
            accepted: true,
        },
        Reply::McpServers {
            servers: vec![mcp_server()],
        },
        Reply::McpTools {
            tools: vec![McpToolInfo {
                server: "time".into(),
                name: "now".into(),
                exposed_name: "time__now".into(),
                description: "the time".into(),
                input_schema: json!({"type": "object"}),
                read_only: true,
                destructive: false,
                policy: ToolPolicy::Ask,
            }],
        },
        Reply::McpRestarting {
            name: "time".into(),
        },
        Reply::ToolAudit {
            entries: vec![AuditEntry {
                id: 1,
                time_ms: 2,
                character: "aria".into(),
                server: "time".into(),
                tool: "now".into(),
                arguments: "{}".into(),
                decision: "auto".into(),
                duration_ms: 3,
                outcome: ToolOutcome::TimedOut,
                detail: "slow".into(),
            }],
        },
        Reply::Heard {
            transcript: "hi".into(),
            turn_id: Some(1),
            conversation_id: Some(3),
        },
        Reply::Speech { audio: speech() },
        Reply::Voice {
            voice: Box::new(voice()),
        },
        Reply::AudioReceived,
    ]
}

fn reply_name(reply: &Reply) -> &'static str {
    match reply {
        Reply::Welcome { .. } => "welcome",
        Reply::Pong => "pong",
        Reply::Status(_) => "status",
        Reply::TurnAccepted { .. } => "turn_accepted",
        Reply::Interrupted { .. } => "interrupted",
        Reply::Characters { .. } => "characters",
        Reply::CharacterSwitched { .. } => "character_switched",
        Reply::Conversations { .. } => "conversations",
        Reply::Conversation { .. } => "conversation",
        Reply::ConversationChanged { .. } => "conversation_changed",
        Reply::Deleted { .. } => "deleted",
        Reply::ShuttingDown => "shutting_down",
        Reply::Reloaded { .. } => "reloaded",
        Reply::ApprovalRecorded { .. } => "approval_recorded",
        Reply::McpServers { .. } => "mcp_servers",
        Reply::McpTools { .. } => "mcp_tools",
        Reply::McpRestarting { .. } => "mcp_restarting",
        Reply::ToolAudit { .. } => "tool_audit",
        Reply::Heard { .. } => "heard",
        Reply::Speech { .. } => "speech",
        Reply::Voice { .. } => "voice",
        Reply::AudioReceived => "audio_received",
    }
}

fn event_samples() -> Vec<Event> {
    vec![
        Event::StateChanged {
            state: DaemonState::Speaking,
        },
        Event::ModelLoad {
            load: ModelLoad::Loading,
        },
        Event::TurnStarted {
            turn_id: 1,
            conversation_id: 3,
            text: "hi".into(),
            origin: "vtuber-chat/0.1.0".into(),
        },
        Event::Delta {
            turn_id: 1,
            text: "Hel".into(),
        },
        Event::TurnEnded {
            turn_id: 1,
            outcome: TurnOutcome::Failed {
                error: ErrorBody::new(ErrorCode::Llm, "down"),
            },
            text: "Hel".into(),
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
            }),
            cut: Some(ReplyCut {
                reason: CutReason::Length,
                message: "too long".into(),
            }),
            text_omitted: true,
        },
        Event::CharacterChanged {
            character: character(),
            llm: LlmInfo {
                backend: "openai_compatible".into(),
                model: "m".into(),
            },
        },
        Event::CharactersReloaded {
            characters: vec![character()],
        },
        Event::ConversationChanged { conversation_id: 4 },
        Event::ConversationDeleted {
            id: 3,
            was_current: true,
        },
        Event::ClientsChanged { clients: 2 },
        Event::Error {
            error: ErrorBody::new(ErrorCode::Model, "no model").with_hint("fetch it"),
        },
        Event::McpServerChanged {
            server: mcp_server(),
        },
        Event::ToolCallStarted {
            turn_id: 1,
            call_id: "c1".into(),
            server: "time".into(),
            tool: "now".into(),
            arguments: json!({"zone": "UTC"}),
        },
        Event::ToolCallProgress {
            call_id: "c1".into(),
            progress: 0.5,
            total: Some(1.0),
            message: Some("half".into()),
        },
        Event::ToolCallEnded {
            turn_id: 1,
            call_id: "c1".into(),
            outcome: ToolOutcome::Ok,
            duration_ms: 12,
            summary: "12:00".into(),
        },
        Event::ApprovalRequested {
            request_id: 5,
            turn_id: 1,
            call_id: "c1".into(),
            server: "time".into(),
            tool: "now".into(),
            description: "the time".into(),
            arguments: json!({}),
            timeout_secs: 60,
        },
        Event::ApprovalResolved {
            request_id: 5,
            resolution: ApprovalResolution::ApprovedForSession,
        },
        Event::Sentence {
            turn_id: 1,
            index: 0,
            text: "Hello.".into(),
            expressions: vec!["joy".into()],
            audio: Some(speech()),
            synth_ms: 30,
        },
        Event::SpeechFinished {
            turn_id: 1,
            sentences: 1,
            interrupted: false,
        },
        Event::VoiceActivity { speaking: true },
        Event::InputLevel { level: 0.25 },
        Event::Transcript {
            text: "hi".into(),
            turn_id: Some(1),
            asr_ms: 80,
        },
        Event::VoiceChanged {
            voice: Box::new(voice()),
        },
        Event::Lagged { missed: 3 },
        Event::ShuttingDown,
        Event::Unknown,
    ]
}

/// Arms in `event_name`: `Event` decodes unknown types as `Unknown`, so serde cannot
/// list its variants; a new arm needs this raised, and then a sample.
const EVENT_VARIANTS: usize = 26;

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::StateChanged { .. } => "state_changed",
        Event::ModelLoad { .. } => "model_load",
        Event::TurnStarted { .. } => "turn_started",
        Event::Delta { .. } => "delta",
        Event::TurnEnded { .. } => "turn_ended",
        Event::CharacterChanged { .. } => "character_changed",
        Event::CharactersReloaded { .. } => "characters_reloaded",
        Event::ConversationChanged { .. } => "conversation_changed",
        Event::ConversationDeleted { .. } => "conversation_deleted",
        Event::ClientsChanged { .. } => "clients_changed",
        Event::Error { .. } => "error",
        Event::McpServerChanged { .. } => "mcp_server_changed",
        Event::ToolCallStarted { .. } => "tool_call_started",
        Event::ToolCallProgress { .. } => "tool_call_progress",
        Event::ToolCallEnded { .. } => "tool_call_ended",
        Event::ApprovalRequested { .. } => "approval_requested",
        Event::ApprovalResolved { .. } => "approval_resolved",
        Event::Sentence { .. } => "sentence",
        Event::SpeechFinished { .. } => "speech_finished",
        Event::VoiceActivity { .. } => "voice_activity",
        Event::InputLevel { .. } => "input_level",
        Event::Transcript { .. } => "transcript",
        Event::VoiceChanged { .. } => "voice_changed",
        Event::Lagged { .. } => "lagged",
        Event::ShuttingDown => "shutting_down",
        Event::Unknown => "unknown",
    }
}

/// The wire names serde knows for an internally tagged enum `T`, read from the error an
/// unknown `type` gets ("expected one of `a`, `b`").
fn serde_variant_names<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
    let err = serde_json::from_value::<T>(json!({"type": "no such variant"}))
        .expect_err("an unknown type must not decode");
    let text = err.to_string();
    let list = text
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no variant list in {text:?}"));
    list.split(", ")
        .map(|name| {
            name.trim_matches(|c: char| c == '`' || c.is_whitespace())
                .to_owned()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The `type` tag `value` is written with.
fn wire_type<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_value(value).expect("encodes");
    json["type"].as_str().expect("a type tag").to_owned()
}

/// Checks every sample's name against its wire tag; the names seen.
fn names_of<T: serde::Serialize + std::fmt::Debug>(
    samples: &[T],
    name: fn(&T) -> &'static str,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for sample in samples {
        assert_eq!(wire_type(sample), name(sample), "{sample:?}");
        assert!(
            seen.insert(name(sample).to_owned()),
            "two samples of {sample:?}"
        );
    }
    seen
}

#[test]
fn every_request_round_trips() {
    let samples = request_samples();
    assert_eq!(
        names_of(&samples, request_name),
        serde_variant_names::<Request>()
    );
    for (id, request) in samples.into_iter().enumerate() {
        let frame = ClientFrame {
            id: id as u64,
            request,
        };
        let line = framing::encode(&frame).expect("encodes");
        let back: ClientFrame = framing::decode(&line).expect("decodes");
        assert_eq!(back, frame);
    }
}

#[test]
fn every_reply_round_trips() {
    let samples = reply_samples();
    assert_eq!(
        names_of(&samples, reply_name),
        serde_variant_names::<Reply>()
    );
    for (id, reply) in samples.into_iter().enumerate() {
        let frame = ServerFrame::Response {
            id: Some(id as u64),
            outcome: Outcome::Ok(reply),
        };
        let line = framing::encode(&frame).expect("encodes");
        let back: ServerFrame = framing::decode(&line).expect("decodes");
        assert_eq!(back, frame);
    }
    let error = ServerFrame::Response {
        id: None,
        outcome: Outcome::Err(ErrorBody::new(ErrorCode::BadRequest, "bad").with_hint("fix")),
    };
    let back: ServerFrame =
        framing::decode(&framing::encode(&error).expect("encodes")).expect("decodes");
    assert_eq!(back, error);
}

#[test]
fn every_event_round_trips() {
    let samples = event_samples();
    assert_eq!(names_of(&samples, event_name).len(), EVENT_VARIANTS);
    for (seq, event) in samples.into_iter().enumerate() {
        let frame = ServerFrame::Event {
            seq: seq as u64,
            event,
        };
        let line = framing::encode(&frame).expect("encodes");
        let back: ServerFrame = framing::decode(&line).expect("decodes");
        assert_eq!(back, frame);
    }
}
