//! Requests to replies: the handshake, then one answer per request from the daemon's
//! services. No I/O of its own, so every request kind is tested here without a socket.

use vtuber_shared::framing::{self, Line};
use vtuber_shared::{
    ClientFrame, ErrorBody, ErrorCode, Outcome, PROTOCOL_VERSION, Reply, Request, ServerFrame,
};

use super::listener::Cookie;
use crate::clients::Connection;
use crate::events::EventReceiver;
use crate::services::Services;
use crate::speech::Pcm;
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
        return handshake(services, cookie, peer, frame);
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
    services: &Services,
    cookie: &Cookie,
    peer: &mut Peer,
    frame: ClientFrame,
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
        Request::SendText { text } => {
            conversation
                .send_text(text, label)
                .await
                .map(|(turn_id, conversation_id)| Reply::TurnAccepted {
                    turn_id,
                    conversation_id,
                })
        }
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
        Request::SendAudio { wav_base64 } => {
            match services.voice() {
                Ok(v) => match decode_wav(&wav_base64) {
                    Ok(pcm) => v.utterance(pcm, &format!("{label} (audio)")).await.map(
                        |(transcript, turn)| Reply::Heard {
                            transcript,
                            turn_id: turn.map(|t| t.0),
                            conversation_id: turn.map(|t| t.1),
                        },
                    ),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
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
