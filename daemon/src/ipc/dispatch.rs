//! Requests to replies: the handshake, then one answer per request from the daemon's
//! services. No I/O of its own, so every request kind is tested here without a socket.

use vtuber_shared::framing::{self, Line};
use vtuber_shared::{
    ClientFrame, ErrorBody, ErrorCode, Outcome, PROTOCOL_VERSION, Reply, Request, ServerFrame,
};

use super::listener::Cookie;
use crate::clients::Connection;
use crate::events::EventReceiver;
use crate::pcm::Pcm;
use crate::services::Services;
use crate::speech_out::speech_error;

/// A connection as requests see it: its place in the client registry, and the client's
/// name once it said `hello`.
pub(super) struct Peer {
    connection: Connection,
    client: Option<String>,
}

impl Peer {
    pub(super) fn new(connection: Connection) -> Self {
        Self {
            connection,
            client: None,
        }
    }
}

/// The answer to one request.
pub(super) struct Dispatched {
    pub reply: ServerFrame,
    /// Close the connection after the reply (a failed handshake).
    pub close: bool,
    /// Events to forward from now on (a `hello` that subscribed).
    pub subscription: Option<EventReceiver>,
}

pub(super) fn response(id: Option<u64>, outcome: Result<Reply, ErrorBody>) -> ServerFrame {
    ServerFrame::Response {
        id,
        outcome: match outcome {
            Ok(r) => Outcome::Ok(r),
            Err(e) => Outcome::Err(e),
        },
    }
}

/// One line from the client as a request, or the error frame that answers it.
pub(super) fn parse_line(line: Line) -> Result<ClientFrame, Box<ServerFrame>> {
    match line {
        Line::Oversized { len } => Err(Box::new(response(
            None,
            Err(ErrorBody::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {len} bytes exceeds the {}-byte limit; it was dropped",
                    framing::MAX_FRAME_BYTES
                ),
            )
            .with_hint("send smaller messages")),
        ))),
        Line::Frame(bytes) => framing::decode::<ClientFrame>(&bytes).map_err(|e| {
            Box::new(response(
                peek_id(&bytes),
                Err(ErrorBody::new(ErrorCode::BadRequest, e.to_string()).with_hint(
                    "send one JSON object per line: {\"id\": N, \"request\": {\"type\": ...}} (see docs/protocol.md)",
                )),
            ))
        }),
    }
}

/// Best effort: the `id` of a frame that failed to parse as a whole.
fn peek_id(bytes: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get("id")?
        .as_u64()
}

/// Answers one request of `peer`.
pub(super) async fn dispatch(
    services: &Services,
    cookie: &Cookie,
    peer: &mut Peer,
    frame: ClientFrame,
) -> Dispatched {
    let id = Some(frame.id);
    let Some(label) = peer.client.clone() else {
        return handshake(peer, frame, services, cookie);
    };
    let result = answer(services, peer.connection.id(), label, frame.request).await;
    Dispatched {
        reply: response(id, result),
        close: false,
        subscription: None,
    }
}

/// The first request, which must be a `hello` with this daemon's protocol and cookie.
fn handshake(
    peer: &mut Peer,
    frame: ClientFrame,
    services: &Services,
    cookie: &Cookie,
) -> Dispatched {
    let id = Some(frame.id);
    let refuse = |error: ErrorBody, close: bool| Dispatched {
        reply: response(id, Err(error)),
        close,
        subscription: None,
    };
    match frame.request {
        Request::Hello {
            protocol,
            client: name,
            subscribe,
            audio,
            cookie: presented,
        } => {
            if protocol != PROTOCOL_VERSION {
                return refuse(
                    ErrorBody::new(
                        ErrorCode::Handshake,
                        format!(
                            "protocol version {protocol} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                        ),
                    )
                    .with_hint("use the vtuber client from the same release as vtuberd"),
                    true,
                );
            }
            if !cookie.matches(presented.as_deref()) {
                tracing::warn!(client = %name, "refused a client without the socket cookie");
                let what = if presented.is_some() {
                    "the cookie in `hello` is not this daemon's"
                } else {
                    "`hello` carries no cookie"
                };
                return refuse(
                    ErrorBody::new(ErrorCode::Handshake, what).with_hint(format!(
                        "send the content of {} as `cookie` (the vtuber client does this); it changes at every daemon start",
                        vtuber_shared::cookie::cookie_path(&services.socket).display()
                    )),
                    true,
                );
            }
            let (subscription, last_seq) = if subscribe {
                let (rx, last) = services.bus.subscribe();
                (Some(rx), last)
            } else {
                (None, services.bus.last_seq())
            };
            peer.client = Some(name.clone());
            let n = peer.connection.attach();
            if subscribe && audio {
                peer.connection.listen();
            }
            tracing::debug!(client = %name, clients = n, "client attached");
            Dispatched {
                reply: response(
                    id,
                    Ok(Reply::Welcome {
                        protocol: PROTOCOL_VERSION,
                        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
                        status: services.status(),
                        last_seq,
                    }),
                ),
                close: false,
                subscription,
            }
        }
        Request::Ping
        | Request::Status
        | Request::SendText { .. }
        | Request::Interrupt
        | Request::ListCharacters
        | Request::SwitchCharacter { .. }
        | Request::ListConversations { .. }
        | Request::GetConversation { .. }
        | Request::NewConversation
        | Request::LoadConversation { .. }
        | Request::DeleteConversation { .. }
        | Request::Shutdown
        | Request::Reload
        | Request::ApproveToolCall { .. }
        | Request::ListMcpServers
        | Request::ListMcpTools { .. }
        | Request::RestartMcpServer { .. }
        | Request::ToolAudit { .. }
        | Request::SendAudio { .. }
        | Request::Speak { .. }
        | Request::StreamAudio { .. }
        | Request::SetListening { .. }
        | Request::PushToTalk { .. } => refuse(
            ErrorBody::new(ErrorCode::Handshake, "the first request must be `hello`").with_hint(
                format!(
                    "send {{\"id\":1,\"request\":{{\"type\":\"hello\",\"protocol\":{PROTOCOL_VERSION},\"client\":\"name\"}}}} first"
                ),
            ),
            false,
        ),
    }
}

/// A request after the handshake; `label` names the client (the turns' origin), `conn`
/// its connection (for audio streams).
async fn answer(
    services: &Services,
    conn: u64,
    label: String,
    request: Request,
) -> Result<Reply, ErrorBody> {
    let conversation = &services.conversation;
    match request {
        Request::Hello { .. } => Err(ErrorBody::new(
            ErrorCode::Handshake,
            "`hello` was already received on this connection",
        )
        .with_hint("send it once, first")),
        Request::Ping => Ok(Reply::Pong),
        Request::Status => Ok(Reply::Status(services.status())),
        Request::SendText { text, images } => conversation
            .send_text_with_images(text, images, label)
            .await
            .map(|(turn_id, conversation_id)| Reply::TurnAccepted {
                turn_id,
                conversation_id,
            }),
        Request::Interrupt => conversation
            .interrupt()
            .await
            .map(|turn_id| Reply::Interrupted { turn_id }),
        Request::ListCharacters => conversation
            .characters()
            .await
            .map(|(current, characters)| Reply::Characters {
                current,
                characters,
            }),
        Request::SwitchCharacter { name } => conversation
            .switch_character(name)
            .await
            .map(|character| Reply::CharacterSwitched { character }),
        Request::ListConversations { character } => services
            .store
            .list_conversations(character)
            .await
            .map(|conversations| Reply::Conversations { conversations })
            .map_err(|e| e.to_body()),
        Request::GetConversation { id, page } => services
            .store
            .conversation_page(
                id,
                page,
                crate::store::PAGE_TEXT_BUDGET,
                crate::store::PAGE_MAX_MESSAGES,
            )
            .await
            .map(|(conversation, messages, next)| Reply::Conversation {
                conversation,
                messages,
                next,
            })
            .map_err(|e| e.to_body()),
        Request::NewConversation => conversation
            .new_conversation()
            .await
            .map(|conversation_id| Reply::ConversationChanged { conversation_id }),
        Request::LoadConversation { id } => conversation
            .load_conversation(id)
            .await
            .map(|conversation_id| Reply::ConversationChanged { conversation_id }),
        Request::DeleteConversation { id } => conversation
            .delete_conversation(id)
            .await
            .map(|()| Reply::Deleted { id }),
        Request::Shutdown => {
            services.shutdown_requested.cancel();
            Ok(Reply::ShuttingDown)
        }
        Request::Reload => crate::reload::reload(services)
            .await
            .map(|report| Reply::Reloaded { report }),
        Request::ApproveToolCall {
            request_id,
            decision,
        } => services.mcp().map(|m| Reply::ApprovalRecorded {
            request_id,
            accepted: m.answer_approval(request_id, decision),
        }),
        Request::ListMcpServers => Ok(Reply::McpServers {
            servers: services
                .mcp
                .as_ref()
                .map(|m| m.servers())
                .unwrap_or_default(),
        }),
        Request::ListMcpTools { server } => Ok(Reply::McpTools {
            tools: services
                .mcp
                .as_ref()
                .map(|m| m.tools(server.as_deref()))
                .unwrap_or_default(),
        }),
        Request::RestartMcpServer { name } => match services.mcp() {
            Ok(m) => m
                .restart(&name)
                .await
                .map(|()| Reply::McpRestarting { name }),
            Err(e) => Err(e),
        },
        Request::ToolAudit { since_ms, limit } => match &services.mcp {
            Some(m) => m
                .audit(since_ms, limit.unwrap_or(100))
                .await
                .map(|entries| Reply::ToolAudit { entries }),
            None => crate::mcp::audit::query(&services.store, since_ms, limit.unwrap_or(100))
                .await
                .map(|entries| Reply::ToolAudit { entries }),
        },
        Request::SendAudio { wav_base64 } => match services.voice() {
            Ok(v) => match decode_wav(&wav_base64) {
                Ok(pcm) => v
                    .utterance(pcm, &format!("{label} (audio)"), Vec::new())
                    .await
                    .map(|(transcript, turn)| Reply::Heard {
                        transcript,
                        turn_id: turn.map(|t| t.0),
                        conversation_id: turn.map(|t| t.1),
                    }),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        Request::Speak { text } => match services.speech() {
            Ok(s) => s
                .speak(&text, &conversation.view().voice)
                .await
                .map(|pcm| Reply::Speech {
                    audio: crate::speech::speaker::speech_audio(&pcm, true),
                }),
            Err(e) => Err(e),
        },
        Request::StreamAudio { samples_base64 } => match services.voice() {
            Ok(v) => decode_f32(&samples_base64)
                .and_then(|samples| v.stream(conn, samples))
                .map(|()| Reply::AudioReceived),
            Err(e) => Err(e),
        },
        Request::SetListening { on } => services.voice().and_then(|v| {
            v.set_listening(on).map(|voice| Reply::Voice {
                voice: Box::new(voice),
            })
        }),
        Request::PushToTalk { pressed } => services.voice().and_then(|v| {
            v.push_to_talk(pressed).map(|voice| Reply::Voice {
                voice: Box::new(voice),
            })
        }),
    }
}

fn decode_wav(b64: &str) -> Result<Pcm, ErrorBody> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("wav_base64 is not base64: {e}"),
            )
            .with_hint("send the WAV file's bytes, base64-encoded (standard alphabet)")
        })?;
    Pcm::from_wav(&bytes).map_err(speech_error)
}

/// Little-endian `f32` samples, base64.
fn decode_f32(b64: &str) -> Result<Vec<f32>, ErrorBody> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("samples_base64 is not base64: {e}"),
            )
            .with_hint("send little-endian f32 samples at 16 kHz, base64-encoded")
        })?;
    if bytes.len() % 4 != 0 {
        return Err(ErrorBody::new(
            ErrorCode::InvalidArgument,
            format!("{} bytes is not a whole number of f32 samples", bytes.len()),
        )
        .with_hint("send little-endian f32 samples at 16 kHz"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .map(|s| {
            if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use tokio_util::sync::CancellationToken;
    use vtuber_shared::{ApprovalDecision, Status};

    use super::*;
    use crate::characters::Roster;
    use crate::clients::Clients;
    use crate::config::{Config, ProviderKind};
    use crate::conversation::{Conversation, ConversationSetup};
    use crate::events::EventBus;
    use crate::services::{Services, WebAccess};
    use crate::store::Store;

    const SECRET: &str = "0123456789abcdef";

    /// Services over a fresh store, with an LLM nothing listens for, and no voice or
    /// MCP servers.
    fn services(dir: &tempfile::TempDir) -> Services {
        let mut config = Config::default();
        config.llm.provider = ProviderKind::OpenaiCompatible;
        config.llm.base_url = "http://127.0.0.1:9/v1".into();
        config.llm.model = Some("m".into());
        config.llm.retries = 0;
        let (roster, _) = Roster::load(None);
        let character = roster.get("mao").unwrap().clone();
        let store = Store::open(&dir.path().join("h.sqlite3")).unwrap();
        let bus = EventBus::new(256);
        let conversation = Conversation::start(
            ConversationSetup {
                config: config.clone(),
                roster,
                character_dir: None,
                character,
                conversation: None,
                tools: None,
                max_tool_rounds: 1,
                speech: None,
            },
            store.clone(),
            bus.clone(),
        );
        Services {
            started: Instant::now(),
            config: crate::services::LiveConfig::new(config, Vec::new()),
            config_file: None,
            notifier: Default::default(),
            socket: dir.path().join("s.sock"),
            store,
            clients: Clients::new(bus.clone(), None, Default::default()),
            bus,
            conversation,
            speech: None,
            voice: None,
            mcp: None,
            web: WebAccess::default(),
            shutdown_requested: CancellationToken::new(),
        }
    }

    fn cookie() -> Cookie {
        Cookie(Arc::from(SECRET))
    }

    fn hello(protocol: u32, cookie: Option<&str>) -> Request {
        Request::Hello {
            protocol,
            client: "test".into(),
            subscribe: true,
            audio: true,
            cookie: cookie.map(str::to_owned),
        }
    }

    fn outcome(frame: &ServerFrame) -> Result<Reply, ErrorBody> {
        match frame {
            ServerFrame::Response { outcome, .. } => match outcome {
                Outcome::Ok(r) => Ok(r.clone()),
                Outcome::Err(e) => Err(e.clone()),
            },
            ServerFrame::Event { .. } => panic!("an event, not a response: {frame:?}"),
        }
    }

    fn frame_id(frame: &ServerFrame) -> Option<u64> {
        match frame {
            ServerFrame::Response { id, .. } => *id,
            ServerFrame::Event { .. } => None,
        }
    }

    async fn send(services: &Services, peer: &mut Peer, id: u64, request: Request) -> Dispatched {
        dispatch(services, &cookie(), peer, ClientFrame { id, request }).await
    }

    /// A peer past the handshake.
    async fn attached(services: &Services) -> Peer {
        let mut peer = Peer::new(services.clients.connect());
        let d = send(
            services,
            &mut peer,
            1,
            hello(PROTOCOL_VERSION, Some(SECRET)),
        )
        .await;
        assert!(outcome(&d.reply).is_ok());
        peer
    }

    async fn ask(
        services: &Services,
        peer: &mut Peer,
        request: Request,
    ) -> Result<Reply, ErrorBody> {
        let d = send(services, peer, 7, request).await;
        assert_eq!(
            frame_id(&d.reply),
            Some(7),
            "the answer carries the request's id"
        );
        assert!(!d.close && d.subscription.is_none());
        outcome(&d.reply)
    }

    fn code(r: Result<Reply, ErrorBody>) -> ErrorCode {
        match r {
            Ok(reply) => panic!("expected an error, got {reply:?}"),
            Err(e) => {
                assert!(e.hint.is_some(), "every error says what to do: {e:?}");
                e.code
            }
        }
    }

    #[test]
    fn bad_frames_are_answered_with_errors() {
        let big = parse_line(Line::Oversized { len: 9_999_999 }).unwrap_err();
        assert_eq!(frame_id(&big), None);
        assert_eq!(code(outcome(&big)), ErrorCode::FrameTooLarge);

        let typo = parse_line(Line::Frame(
            br#"{"id": 4, "request": {"type": "dance"}}"#.to_vec(),
        ))
        .unwrap_err();
        assert_eq!(
            frame_id(&typo),
            Some(4),
            "the id is kept when it can be read"
        );
        assert_eq!(code(outcome(&typo)), ErrorCode::BadRequest);

        let junk = parse_line(Line::Frame(b"not json".to_vec())).unwrap_err();
        assert_eq!(frame_id(&junk), None);
        assert_eq!(code(outcome(&junk)), ErrorCode::BadRequest);

        let ok = parse_line(Line::Frame(
            br#"{"id": 5, "request": {"type": "ping"}}"#.to_vec(),
        ))
        .unwrap();
        assert_eq!(ok.id, 5);
        assert!(matches!(ok.request, Request::Ping));
    }

    #[tokio::test]
    async fn the_handshake_needs_hello_with_this_protocol_and_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(&dir);
        let mut peer = Peer::new(services.clients.connect());

        let first = send(&services, &mut peer, 1, Request::Ping).await;
        assert_eq!(code(outcome(&first.reply)), ErrorCode::Handshake);
        assert!(!first.close, "a client may still say hello");

        let old = send(
            &services,
            &mut peer,
            2,
            hello(PROTOCOL_VERSION + 1, Some(SECRET)),
        )
        .await;
        assert_eq!(code(outcome(&old.reply)), ErrorCode::Handshake);
        assert!(old.close);

        let none = send(&services, &mut peer, 3, hello(PROTOCOL_VERSION, None)).await;
        let Err(e) = outcome(&none.reply) else {
            panic!("accepted without a cookie")
        };
        assert_eq!(e.code, ErrorCode::Handshake);
        assert!(e.message.contains("no cookie"), "{e}");
        assert!(none.close);

        let wrong = send(
            &services,
            &mut peer,
            4,
            hello(PROTOCOL_VERSION, Some("nope")),
        )
        .await;
        assert_eq!(code(outcome(&wrong.reply)), ErrorCode::Handshake);
        assert!(wrong.close);
        assert_eq!(
            services.clients.count(),
            0,
            "refused clients are not counted"
        );

        let (mut events, _) = services.bus.subscribe();
        let welcome = send(
            &services,
            &mut peer,
            5,
            hello(PROTOCOL_VERSION, Some(SECRET)),
        )
        .await;
        assert_eq!(frame_id(&welcome.reply), Some(5));
        assert!(!welcome.close);
        assert!(
            welcome.subscription.is_some(),
            "`subscribe: true` subscribes"
        );
        let Ok(Reply::Welcome {
            protocol, status, ..
        }) = outcome(&welcome.reply)
        else {
            panic!("no welcome: {:?}", welcome.reply)
        };
        assert_eq!(protocol, PROTOCOL_VERSION);
        assert_eq!(status.character, "mao");
        assert_eq!(services.clients.count(), 1);
        let ev = events.recv().await.unwrap();
        assert!(matches!(
            ev.event,
            vtuber_shared::Event::ClientsChanged { clients: 1 }
        ));

        let again = ask(&services, &mut peer, hello(PROTOCOL_VERSION, Some(SECRET))).await;
        assert_eq!(code(again), ErrorCode::Handshake);
        drop(peer);
        assert_eq!(
            services.clients.count(),
            0,
            "a closed connection is counted out"
        );
    }

    #[tokio::test]
    async fn simple_requests_get_their_replies() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(&dir);
        let mut peer = attached(&services).await;

        assert!(matches!(
            ask(&services, &mut peer, Request::Ping).await,
            Ok(Reply::Pong)
        ));
        let Ok(Reply::Status(Status { clients, pid, .. })) =
            ask(&services, &mut peer, Request::Status).await
        else {
            panic!("no status")
        };
        assert_eq!((clients, pid), (1, std::process::id()));
        assert!(matches!(
            ask(&services, &mut peer, Request::Interrupt).await,
            Ok(Reply::Interrupted { turn_id: None })
        ));
        let Ok(Reply::Characters {
            current,
            characters,
        }) = ask(&services, &mut peer, Request::ListCharacters).await
        else {
            panic!("no characters")
        };
        assert_eq!(current, "mao");
        assert!(characters.iter().any(|c| c.id == "sage"));
        let Ok(Reply::CharacterSwitched { character }) = ask(
            &services,
            &mut peer,
            Request::SwitchCharacter {
                name: "sage".into(),
            },
        )
        .await
        else {
            panic!("no switch")
        };
        assert_eq!(character.id, "sage");
        let unknown = Request::SwitchCharacter {
            name: "nobody".into(),
        };
        assert_eq!(
            code(ask(&services, &mut peer, unknown).await),
            ErrorCode::NotFound
        );
        assert!(matches!(
            ask(&services, &mut peer, Request::Shutdown).await,
            Ok(Reply::ShuttingDown)
        ));
        assert!(services.shutdown_requested.is_cancelled());
    }

    #[tokio::test]
    async fn text_and_conversations() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(&dir);
        let mut peer = attached(&services).await;

        let empty = Request::SendText {
            text: " ".into(),
            images: Vec::new(),
        };
        assert_eq!(
            code(ask(&services, &mut peer, empty).await),
            ErrorCode::InvalidArgument
        );
        let Ok(Reply::TurnAccepted {
            turn_id,
            conversation_id,
        }) = ask(
            &services,
            &mut peer,
            Request::SendText {
                text: "hi".into(),
                images: Vec::new(),
            },
        )
        .await
        else {
            panic!("turn not accepted")
        };
        assert_eq!(turn_id, 1);
        let Ok(Reply::Conversations { conversations }) = ask(
            &services,
            &mut peer,
            Request::ListConversations { character: None },
        )
        .await
        else {
            panic!("no list")
        };
        assert_eq!(conversations.len(), 1);
        assert!(matches!(
            ask(
                &services,
                &mut peer,
                Request::GetConversation {
                    id: conversation_id,
                    page: None
                }
            )
            .await,
            Ok(Reply::Conversation { .. })
        ));
        let Ok(Reply::ConversationChanged {
            conversation_id: fresh,
        }) = ask(&services, &mut peer, Request::NewConversation).await
        else {
            panic!("no new conversation")
        };
        assert_ne!(fresh, conversation_id);
        assert!(matches!(
            ask(
                &services,
                &mut peer,
                Request::LoadConversation {
                    id: conversation_id
                }
            )
            .await,
            Ok(Reply::ConversationChanged { conversation_id: c }) if c == conversation_id
        ));
        assert!(matches!(
            ask(&services, &mut peer, Request::DeleteConversation { id: fresh }).await,
            Ok(Reply::Deleted { id }) if id == fresh
        ));
        for missing in [
            Request::GetConversation {
                id: 999,
                page: None,
            },
            Request::LoadConversation { id: 999 },
            Request::DeleteConversation { id: 999 },
        ] {
            assert_eq!(
                code(ask(&services, &mut peer, missing).await),
                ErrorCode::NotFound
            );
        }
    }

    #[tokio::test]
    async fn tool_requests_without_mcp_servers() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(&dir);
        let mut peer = attached(&services).await;

        let approve = Request::ApproveToolCall {
            request_id: 1,
            decision: ApprovalDecision::AllowOnce,
        };
        assert_eq!(
            code(ask(&services, &mut peer, approve).await),
            ErrorCode::NotFound
        );
        let restart = Request::RestartMcpServer { name: "fs".into() };
        assert_eq!(
            code(ask(&services, &mut peer, restart).await),
            ErrorCode::NotFound
        );
        assert!(matches!(
            ask(&services, &mut peer, Request::ListMcpServers).await,
            Ok(Reply::McpServers { servers }) if servers.is_empty()
        ));
        assert!(matches!(
            ask(&services, &mut peer, Request::ListMcpTools { server: None }).await,
            Ok(Reply::McpTools { tools }) if tools.is_empty()
        ));
        assert!(matches!(
            ask(
                &services,
                &mut peer,
                Request::ToolAudit {
                    since_ms: None,
                    limit: None
                }
            )
            .await,
            Ok(Reply::ToolAudit { entries }) if entries.is_empty()
        ));
    }

    #[tokio::test]
    async fn voice_requests_without_speech_say_how_to_turn_it_on() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(&dir);
        let mut peer = attached(&services).await;
        for request in [
            Request::SendAudio {
                wav_base64: String::new(),
            },
            Request::Speak { text: "hi".into() },
            Request::StreamAudio {
                samples_base64: String::new(),
            },
            Request::SetListening { on: true },
            Request::PushToTalk { pressed: true },
        ] {
            let Err(e) = ask(&services, &mut peer, request).await else {
                panic!("voice request answered without voice")
            };
            assert_eq!(e.code, ErrorCode::Config);
            assert!(e.hint.unwrap_or_default().contains("speech.enabled"));
        }
    }

    #[test]
    fn audio_payloads_are_checked() {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let e = decode_f32("not base64!").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = decode_f32(&b64(&[0, 0, 0])).unwrap_err();
        assert!(e.message.contains("whole number"), "{e}");
        let samples: Vec<u8> = [0.5f32, 2.0, f32::NAN]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(decode_f32(&b64(&samples)).unwrap(), vec![0.5, 1.0, 0.0]);
        let e = decode_wav("not base64!").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = decode_wav(&b64(b"not a wav")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
    }
}
