//! Open-LLM-VTuber's wire format: the messages a page sends and the messages it gets,
//! as JSON shapes, with the parser that says what is wrong with a bad one. See
//! `docs/web-protocol.md` for the dialect.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use vtuber_shared::{ApprovalDecision, ApprovalResolution};

/// The pictures of a `text-input` or `mic-audio-end`: each entry's `data` (a data URL
/// or bare base64) and `mime_type`; entries without a `data` string are skipped (the
/// daemon checks the data itself, so nothing here needs to be trusted).
pub fn images_of(images: Option<&Value>) -> Vec<vtuber_shared::ImageInput> {
    let Some(Value::Array(list)) = images else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let data = entry.get("data")?.as_str()?;
            let mime = entry.get("mime_type").and_then(Value::as_str).unwrap_or("");
            Some(vtuber_shared::ImageInput::new(mime, data))
        })
        .collect()
}

/// A message from a client. Unknown fields are ignored (clients send extras).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    TextInput {
        text: String,
        /// `[{source, data: "data:image/...;base64,...", mime_type}]`; see
        /// [`images_of`].
        #[serde(default)]
        images: Option<Value>,
    },
    MicAudioData {
        audio: Vec<f32>,
    },
    MicAudioEnd {
        #[serde(default)]
        images: Option<Value>,
    },
    RawAudioData {
        audio: Vec<f32>,
    },
    InterruptSignal {
        #[serde(default)]
        text: Option<String>,
    },
    AiSpeakSignal,
    FrontendPlaybackComplete,
    AudioPlayStart {
        #[serde(default)]
        display_text: Option<Value>,
    },
    FetchHistoryList,
    FetchAndSetHistory {
        history_uid: String,
    },
    CreateNewHistory,
    DeleteHistory {
        history_uid: String,
    },
    FetchConfigs,
    SwitchConfig {
        file: String,
    },
    FetchBackgrounds,
    RequestInitConfig,
    Heartbeat,
    AddClientToGroup {
        #[serde(default)]
        invitee_uid: Option<String>,
    },
    RemoveClientFromGroup {
        #[serde(default)]
        target_uid: Option<String>,
    },
    RequestGroupInfo,
    /// Our extension: the answer to an `approval-request`.
    ApprovalResponse {
        request_id: u64,
        decision: ApprovalDecision,
    },
    /// Our extension: whether the page could show the character's model (`error`:
    /// why not, e.g. a `.moc3` too new for its Cubism Core), for `vtuber status`.
    AvatarStatus {
        #[serde(default)]
        model_url: String,
        #[serde(default)]
        error: Option<String>,
    },
}

/// Every `type` a client may send, for telling "unknown type" from "bad fields".
pub const CLIENT_TYPES: &[&str] = &[
    "text-input",
    "mic-audio-data",
    "mic-audio-end",
    "raw-audio-data",
    "interrupt-signal",
    "ai-speak-signal",
    "frontend-playback-complete",
    "audio-play-start",
    "fetch-history-list",
    "fetch-and-set-history",
    "create-new-history",
    "delete-history",
    "fetch-configs",
    "switch-config",
    "fetch-backgrounds",
    "request-init-config",
    "heartbeat",
    "add-client-to-group",
    "remove-client-from-group",
    "request-group-info",
    "approval-response",
    "avatar-status",
];

/// Parses one text frame; the error is a sentence for an `error` message.
pub fn parse_client(text: &str) -> Result<ClientMessage, String> {
    // The fast path parses straight into the enum (audio frames are large); only a
    // failure pays for a second look to say what was wrong.
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(m) => Ok(m),
        Err(e) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| format!("the message is not valid JSON: {e}"))?;
            let Some(obj) = value.as_object() else {
                return Err("expected a JSON object with a `type` field".into());
            };
            let Some(kind) = obj.get("type").and_then(Value::as_str) else {
                return Err("the message has no `type` field (a string)".into());
            };
            if !CLIENT_TYPES.contains(&kind) {
                return Err(format!(
                    "unknown message type `{kind}` (see docs/web-protocol.md for the supported ones)"
                ));
            }
            Err(format!("bad `{kind}` message: {}", strip_position(&e)))
        }
    }
}

/// serde_json's "at line 1 column 57" says nothing useful to a WebSocket client.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// `control` texts.
pub mod control {
    pub const START_MIC: &str = "start-mic";
    pub const INTERRUPT: &str = "interrupt";
    pub const CHAIN_START: &str = "conversation-chain-start";
    pub const CHAIN_END: &str = "conversation-chain-end";
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    #[serde(rename = "full-text")]
    FullText { text: String },
    #[serde(rename = "control")]
    Control { text: &'static str },
    #[serde(rename = "set-model-and-conf")]
    SetModelAndConf {
        model_info: Value,
        conf_name: String,
        conf_uid: String,
        client_uid: String,
    },
    #[serde(rename = "group-update")]
    GroupUpdate {
        members: Vec<String>,
        is_owner: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    #[serde(rename = "audio")]
    Audio {
        audio: Option<String>,
        volumes: Vec<f32>,
        slice_length: u32,
        display_text: DisplayText,
        actions: Option<Actions>,
        forwarded: bool,
    },
    /// Open-LLM-VTuber's frontend stops its playback on this (its `interrupt-signal`
    /// case calls its own `interrupt(false)`); it does not know `control: interrupt`.
    #[serde(rename = "interrupt-signal")]
    InterruptSignal,
    #[serde(rename = "backend-synth-complete")]
    BackendSynthComplete,
    #[serde(rename = "force-new-message")]
    ForceNewMessage,
    #[serde(rename = "user-input-transcription")]
    UserInputTranscription { text: String },
    /// Our extension: input that started a turn, from whichever client sent it.
    #[serde(rename = "user-input")]
    UserInput { text: String, origin: String },
    #[serde(rename = "tool_call_status")]
    ToolCallStatus {
        tool_id: String,
        tool_name: String,
        status: &'static str,
        content: String,
        timestamp: String,
        name: String,
    },
    /// Our extension: a tool call waits for a person's yes or no.
    #[serde(rename = "approval-request")]
    ApprovalRequest {
        request_id: u64,
        tool: String,
        server: String,
        description: String,
        arguments: Value,
        timeout_secs: u64,
    },
    /// Our extension: how an approval request was settled.
    #[serde(rename = "approval-resolved")]
    ApprovalResolved {
        request_id: u64,
        resolution: ApprovalResolution,
    },
    /// Our extension: the daemon's state (`idle`, `thinking`, `speaking`, ...).
    #[serde(rename = "state")]
    State { state: &'static str },
    #[serde(rename = "error")]
    Error { message: String },
    #[serde(rename = "history-list")]
    HistoryList { histories: Vec<HistoryEntry> },
    #[serde(rename = "history-data")]
    HistoryData { messages: Vec<HistoryMessage> },
    #[serde(rename = "new-history-created")]
    NewHistoryCreated { history_uid: String },
    #[serde(rename = "history-deleted")]
    HistoryDeleted {
        success: bool,
        history_uid: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    #[serde(rename = "config-files")]
    ConfigFiles { configs: Vec<ConfigFile> },
    #[serde(rename = "config-switched")]
    ConfigSwitched { message: String },
    #[serde(rename = "background-files")]
    BackgroundFiles { files: Vec<String> },
    #[serde(rename = "heartbeat-ack")]
    HeartbeatAck,
}

impl ServerMessage {
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
        }
    }

    pub fn control(text: &'static str) -> Self {
        Self::Control { text }
    }

    /// The JSON text frame.
    pub fn encode(&self) -> Utf8Bytes {
        match serde_json::to_string(self) {
            Ok(s) => Utf8Bytes::from(s),
            Err(e) => {
                tracing::error!(error = %e, "web message could not be encoded");
                Utf8Bytes::from_static(
                    r#"{"type":"error","message":"internal error: a message could not be encoded"}"#,
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisplayText {
    pub text: String,
    pub name: String,
    pub avatar: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actions {
    /// Expression indexes from the emotion map, or tag names the map does not know.
    pub expressions: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub uid: String,
    pub latest_message: Option<LatestMessage>,
    pub timestamp: String,
    /// Our extension: the conversation's title and size.
    pub title: String,
    pub message_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestMessage {
    pub role: &'static str,
    pub timestamp: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryMessage {
    pub role: &'static str,
    pub timestamp: String,
    pub content: String,
    pub name: String,
    pub avatar: Option<String>,
    /// Our extension: the reply was cut short.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigFile {
    pub filename: String,
    pub name: String,
}

/// OLV's role names for stored roles (`None`: not shown in OLV history).
pub fn olv_role(role: vtuber_shared::Role) -> Option<&'static str> {
    match role {
        vtuber_shared::Role::User => Some("human"),
        vtuber_shared::Role::Assistant => Some("ai"),
        _ => None,
    }
}

/// Unix milliseconds as ISO-8601 UTC (`2026-01-31T12:00:00Z`).
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

pub fn now_iso() -> String {
    iso8601(crate::store::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_parse_and_errors_say_why() {
        assert_eq!(
            parse_client(r#"{"type":"text-input","text":"hi","images":[]}"#).unwrap(),
            ClientMessage::TextInput {
                text: "hi".into(),
                images: Some(json!([]))
            }
        );
        assert_eq!(
            parse_client(r#"{"type":"heartbeat","extra":1}"#).unwrap(),
            ClientMessage::Heartbeat
        );
        assert_eq!(
            parse_client(r#"{"type":"mic-audio-data","audio":[0.5,-0.25]}"#).unwrap(),
            ClientMessage::MicAudioData {
                audio: vec![0.5, -0.25]
            }
        );
        assert_eq!(
            parse_client(
                r#"{"type":"approval-response","request_id":3,"decision":"allow_for_session"}"#
            )
            .unwrap(),
            ClientMessage::ApprovalResponse {
                request_id: 3,
                decision: ApprovalDecision::AllowForSession
            }
        );
        assert!(
            parse_client("{nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(parse_client("[1]").unwrap_err().contains("`type`"));
        assert!(
            parse_client(r#"{"text":"x"}"#)
                .unwrap_err()
                .contains("no `type`")
        );
        assert!(
            parse_client(r#"{"type":"dance"}"#)
                .unwrap_err()
                .contains("unknown message type `dance`")
        );
        let e = parse_client(r#"{"type":"switch-config"}"#).unwrap_err();
        assert!(
            e.contains("bad `switch-config`") && e.contains("file"),
            "{e}"
        );
        assert!(!e.contains("line 1"), "{e}");
        for t in CLIENT_TYPES {
            // Every listed type is one the enum knows (fields aside).
            let e = parse_client(&format!(r#"{{"type":"{t}"}}"#));
            assert!(
                e.is_ok() || e.as_ref().unwrap_err().starts_with("bad"),
                "{t}: {e:?}"
            );
        }
    }

    #[test]
    fn server_messages_have_olv_shapes() {
        let v = |m: ServerMessage| serde_json::to_value(&m).unwrap();
        assert_eq!(
            v(ServerMessage::control(control::START_MIC)),
            json!({"type":"control","text":"start-mic"})
        );
        assert_eq!(
            v(ServerMessage::BackendSynthComplete),
            json!({"type":"backend-synth-complete"})
        );
        assert_eq!(
            v(ServerMessage::HeartbeatAck),
            json!({"type":"heartbeat-ack"})
        );
        assert_eq!(
            v(ServerMessage::InterruptSignal),
            json!({"type":"interrupt-signal"})
        );
        assert_eq!(
            v(ServerMessage::GroupUpdate {
                members: vec![],
                is_owner: false,
                error: None
            }),
            json!({"type":"group-update","members":[],"is_owner":false})
        );
        let tool = v(ServerMessage::ToolCallStatus {
            tool_id: "c1".into(),
            tool_name: "read".into(),
            status: "running",
            content: "x".into(),
            timestamp: iso8601(0),
            name: "Mao".into(),
        });
        assert_eq!(tool["type"], "tool_call_status");
        assert_eq!(tool["timestamp"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_767_225_599_999), "2025-12-31T23:59:59Z");
        assert_eq!(iso8601(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn images_come_from_data_entries() {
        let v = json!([
            {"source": "camera", "data": "data:image/png;base64,AAAA", "mime_type": "image/png"},
            {"source": "upload"},
            "junk",
        ]);
        let images = images_of(Some(&v));
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].mime_type, "image/png");
        assert_eq!(images[0].data_base64, "data:image/png;base64,AAAA");
        assert!(images_of(None).is_empty());
        assert!(images_of(Some(&json!({"data": "x"}))).is_empty());
    }
}
