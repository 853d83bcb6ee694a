//! A connection's worker: requests that wait on the conversation or the history store,
//! run one at a time, in order.

use std::sync::Arc;

use tokio::sync::mpsc;
use vtuber_shared::ErrorBody;

use super::{ORIGIN_TEXT, Out};
use crate::speech::text::expressions::extract_expressions;
use crate::web::WebState;
use crate::web::olv_messages::{
    ClientMessage, ConfigFile, HistoryEntry, HistoryMessage, LatestMessage, ServerMessage, iso8601,
    olv_role,
};

/// What the reader hands the worker.
#[derive(Debug)]
pub(super) enum Job {
    Msg(ClientMessage),
    /// A `create-new-history` sent as part of connecting (see the reader): answered with
    /// the conversation everyone is in, which is not replaced.
    JoinCurrent,
}

/// Runs requests that wait on the conversation or the store, in order.
pub(super) async fn run(web: Arc<WebState>, mut rx: mpsc::Receiver<Job>, out: mpsc::Sender<Out>) {
    while let Some(job) = rx.recv().await {
        let answers = match job {
            Job::Msg(msg) => request(&web, msg).await,
            Job::JoinCurrent => join_current(&web).await,
        };
        for o in answers {
            if out.send(o).await.is_err() {
                return;
            }
        }
    }
}

fn err(e: ErrorBody) -> Vec<Out> {
    vec![Out::msg(ServerMessage::error(e.to_string()))]
}

fn parse_uid(uid: &str) -> Result<i64, Vec<Out>> {
    uid.trim().parse::<i64>().map_err(|_| {
        vec![Out::msg(ServerMessage::error(format!(
            "no conversation `{uid}`: history ids are numbers (see fetch-history-list)"
        )))]
    })
}

/// Reply text as the page shows it: the `[joy]` expression tags taken out, as they are
/// from live subtitles (`olv_events`), using the character's own emotion map.
fn shown_text(
    role: &str,
    text: String,
    emotions: &std::collections::BTreeMap<String, i64>,
) -> String {
    if role == "ai" && !emotions.is_empty() {
        extract_expressions(&text, emotions).0.trim().to_owned()
    } else {
        text
    }
}

/// `history-data` of conversation `id`.
async fn history_data(web: &WebState, id: i64) -> Vec<Out> {
    match web.services.store.conversation(id).await {
        Ok((summary, messages)) => {
            let ai_name = web.characters.name(&summary.character);
            let emotions = web.characters.emotions(&summary.character);
            let messages = messages
                .into_iter()
                .filter_map(|m| {
                    let role = olv_role(m.role)?;
                    Some(HistoryMessage {
                        role,
                        timestamp: iso8601(m.created_ms),
                        content: shown_text(role, m.text, &emotions),
                        name: if role == "ai" {
                            ai_name.clone()
                        } else {
                            "You".into()
                        },
                        avatar: None,
                        interrupted: m.interrupted,
                    })
                })
                .collect();
            vec![Out::msg(ServerMessage::HistoryData { messages })]
        }
        Err(e) => err(e.to_body()),
    }
}

/// A connecting client's `create-new-history`: every client shares one conversation,
/// so opening or reloading a page must not move everyone (the terminal user too) to a
/// new, empty one. It is told the current conversation's id instead, then shown its
/// messages; a new one is made only when there is none yet.
async fn join_current(web: &WebState) -> Vec<Out> {
    let Some(id) = web.services.conversation.view().conversation_id else {
        return request(web, ClientMessage::CreateNewHistory).await;
    };
    tracing::debug!(
        conversation = id,
        "a connecting web client asked for a new conversation; it joins the current one"
    );
    let mut out = vec![Out::msg(ServerMessage::NewHistoryCreated {
        history_uid: id.to_string(),
    })];
    let has_messages = web
        .services
        .store
        .recent_messages(id, 1)
        .await
        .is_ok_and(|m| !m.is_empty());
    if has_messages {
        out.extend(history_data(web, id).await);
    }
    out
}

async fn request(web: &WebState, msg: ClientMessage) -> Vec<Out> {
    let conversation = &web.services.conversation;
    let store = &web.services.store;
    match msg {
        ClientMessage::TextInput { text, images } => {
            let images = crate::web::olv_messages::images_of(images.as_ref());
            match conversation
                .send_text_with_images(text, images, ORIGIN_TEXT.into())
                .await
            {
                // The turn's events answer it.
                Ok(_) => Vec::new(),
                Err(e) => err(e),
            }
        }
        // The frontend's idle timer: the character speaks up (a turn like any other).
        ClientMessage::AiSpeakSignal => match conversation.speak_up().await {
            Ok(_) => Vec::new(),
            Err(e) => err(e),
        },
        ClientMessage::FetchHistoryList => {
            let character = conversation.view().character.id;
            let emotions = web.characters.emotions(&character);
            let list = match store.list_conversations(Some(character)).await {
                Ok(l) => l,
                Err(e) => return err(e.to_body()),
            };
            let mut histories = Vec::with_capacity(list.len());
            for c in list {
                let latest = store
                    .recent_messages(c.id, 8)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .find_map(|m| {
                        olv_role(m.role).map(|role| LatestMessage {
                            role,
                            timestamp: iso8601(m.created_ms),
                            content: shown_text(role, m.text, &emotions),
                        })
                    });
                histories.push(HistoryEntry {
                    uid: c.id.to_string(),
                    latest_message: latest,
                    timestamp: iso8601(c.updated_ms),
                    title: c.title,
                    message_count: c.message_count,
                });
            }
            vec![Out::msg(ServerMessage::HistoryList { histories })]
        }
        ClientMessage::FetchAndSetHistory { history_uid } => {
            let id = match parse_uid(&history_uid) {
                Ok(id) => id,
                Err(o) => return o,
            };
            let id = match conversation.load_conversation(id).await {
                Ok(id) => id,
                Err(e) => return err(e),
            };
            history_data(web, id).await
        }
        ClientMessage::CreateNewHistory => match conversation.new_conversation().await {
            Ok(id) => vec![Out::msg(ServerMessage::NewHistoryCreated {
                history_uid: id.to_string(),
            })],
            Err(e) => err(e),
        },
        ClientMessage::DeleteHistory { history_uid } => {
            let id = match parse_uid(&history_uid) {
                Ok(id) => id,
                Err(o) => return o,
            };
            let result = conversation.delete_conversation(id).await;
            vec![Out::msg(ServerMessage::HistoryDeleted {
                success: result.is_ok(),
                history_uid,
                error: result.err().map(|e| e.to_string()),
            })]
        }
        ClientMessage::FetchConfigs => match conversation.characters().await {
            Ok((_, characters)) => vec![Out::msg(ServerMessage::ConfigFiles {
                configs: characters
                    .into_iter()
                    .map(|c| ConfigFile {
                        filename: c.id,
                        name: c.name,
                    })
                    .collect(),
            })],
            Err(e) => err(e),
        },
        ClientMessage::SwitchConfig { file } => {
            // OLV clients name config files; ours are character ids (a `.yaml` or `.toml`
            // suffix is forgiven).
            let name = file
                .trim()
                .trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .trim_end_matches(".toml")
                .to_owned();
            match conversation.switch_character(name).await {
                Ok(info) => vec![
                    Out::msg(ServerMessage::ConfigSwitched {
                        message: format!("Switched to {}", info.name),
                    }),
                    Out::Model {
                        conf: Arc::new(web.characters.model_conf(&info)),
                        force: false,
                    },
                ],
                Err(e) => err(e),
            }
        }
        ClientMessage::FetchBackgrounds => {
            let dir = web.backgrounds_dir.clone();
            let files = tokio::task::spawn_blocking(move || crate::web::list_files(&dir))
                .await
                .unwrap_or_default();
            vec![Out::msg(ServerMessage::BackgroundFiles { files })]
        }
        ClientMessage::ApprovalResponse {
            request_id,
            decision,
        } => match &web.services.mcp {
            Some(m) => {
                if m.answer_approval(request_id, decision) {
                    Vec::new()
                } else {
                    vec![Out::msg(ServerMessage::error(format!(
                        "approval request {request_id} is unknown or already settled"
                    )))]
                }
            }
            None => vec![Out::msg(ServerMessage::error(
                "no MCP servers are configured, so there is nothing to approve",
            ))],
        },
        // The reader handles these itself.
        ClientMessage::MicAudioData { .. }
        | ClientMessage::MicAudioEnd { .. }
        | ClientMessage::RawAudioData { .. }
        | ClientMessage::InterruptSignal { .. }
        | ClientMessage::FrontendPlaybackComplete
        | ClientMessage::AudioPlayStart { .. }
        | ClientMessage::RequestInitConfig
        | ClientMessage::Heartbeat
        | ClientMessage::AddClientToGroup { .. }
        | ClientMessage::RemoveClientFromGroup { .. }
        | ClientMessage::RequestGroupInfo
        | ClientMessage::AvatarStatus { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn history_text_loses_expression_tags_like_live_subtitles() {
        let emotions: BTreeMap<String, i64> = [("joy".to_owned(), 1), ("sad".to_owned(), 2)]
            .into_iter()
            .collect();
        assert_eq!(
            shown_text("ai", "[joy] Hello there! [Sad]Bye.".into(), &emotions),
            "Hello there! Bye."
        );
        // Other brackets stay, and so does what the user typed.
        assert_eq!(shown_text("ai", "[note] hi".into(), &emotions), "[note] hi");
        assert_eq!(
            shown_text("human", "[joy] me".into(), &emotions),
            "[joy] me"
        );
        assert_eq!(
            shown_text("ai", "[joy] x".into(), &BTreeMap::new()),
            "[joy] x"
        );
    }
}
