//! The conversation's handle: the cheap-to-clone API every client of the conversation
//! uses (the socket, the web page, voice input). Each call is a [`Command`] to the actor;
//! reads of the status view never queue behind it.

use tokio::sync::{mpsc, oneshot};
use vtuber_shared::framing::json_str_len;
use vtuber_shared::{CharacterInfo, DaemonState, ErrorBody, ErrorCode, ImageInput};

use super::actor::{self, Command, ConversationSetup};
use super::view::{ConversationView, SharedView};
use crate::events::EventBus;
use crate::store::Store;

/// Longest input `send_text` accepts: it is repeated in `turn_started`, which must fit a
/// frame, and no model's context holds more anyway.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Cheap handle used by clients to drive the conversation.
#[derive(Clone)]
pub struct Conversation {
    tx: mpsc::Sender<Command>,
    view: SharedView,
}

fn actor_gone() -> ErrorBody {
    ErrorBody::new(ErrorCode::ShuttingDown, "the daemon is shutting down")
        .with_hint("start it again with `vtuber daemon start`")
}

impl Conversation {
    /// Starts the actor. `character_dir` is watched for edits when it exists.
    pub fn start(setup: ConversationSetup, store: Store, bus: EventBus) -> Self {
        let (tx, view) = actor::spawn(setup, store, bus);
        Self { tx, view }
    }

    pub fn view(&self) -> ConversationView {
        self.view.get()
    }

    /// Hands-free listening changed (for the state shown to clients).
    pub fn set_listening(&self, on: bool) {
        let _ = self.tx.try_send(Command::SetListening(on));
    }

    /// Someone started or stopped speaking to the daemon.
    pub fn set_hearing(&self, on: bool) {
        let _ = self.tx.try_send(Command::SetHearing(on));
    }

    /// Whether the character is thinking or speaking (what barge-in interrupts).
    pub fn is_busy(&self) -> bool {
        let v = self.view();
        matches!(v.state, DaemonState::Thinking | DaemonState::Speaking)
            || v.speaking_turn.is_some()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ErrorBody> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| actor_gone())?;
        rx.await.map_err(|_| actor_gone())
    }

    /// Starts a turn with `text`; returns (turn id, conversation id).
    pub async fn send_text(&self, text: String, origin: String) -> Result<(u64, i64), ErrorBody> {
        self.send_text_with_images(text, Vec::new(), origin).await
    }

    /// The character speaks up now, unasked, with its proactive prompt (Open-LLM-VTuber's
    /// `ai-speak-signal`); refused while it is already talking.
    pub async fn speak_up(&self) -> Result<(u64, i64), ErrorBody> {
        self.ask(|reply| Command::SpeakUp { reply }).await?
    }

    /// [`Conversation::send_text`] with pictures. They are checked, downscaled and
    /// re-encoded here, on the blocking pool, before the actor sees them; a bad one
    /// refuses the whole message with the reason.
    pub async fn send_text_with_images(
        &self,
        text: String,
        images: Vec<ImageInput>,
        origin: String,
    ) -> Result<(u64, i64), ErrorBody> {
        if text.trim().is_empty() && images.is_empty() {
            return Err(
                ErrorBody::new(ErrorCode::InvalidArgument, "the message is empty")
                    .with_hint("type something to say"),
            );
        }
        if json_str_len(&text) > MAX_INPUT_BYTES {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the message is {} bytes; the limit is {MAX_INPUT_BYTES}",
                    text.len()
                ),
            )
            .with_hint("send a shorter message"));
        }
        let images = crate::images::prepare_all(images)
            .await
            .map_err(|e| e.to_body())?;
        self.ask(|reply| Command::SendText {
            text,
            images,
            origin,
            reply,
        })
        .await?
    }

    pub async fn interrupt(&self) -> Result<Option<u64>, ErrorBody> {
        self.ask(|reply| Command::Interrupt { reply }).await
    }

    pub async fn switch_character(&self, name: String) -> Result<CharacterInfo, ErrorBody> {
        self.ask(|reply| Command::SwitchCharacter { name, reply })
            .await?
    }

    pub async fn new_conversation(&self) -> Result<i64, ErrorBody> {
        self.ask(|reply| Command::NewConversation { reply }).await?
    }

    pub async fn load_conversation(&self, id: i64) -> Result<i64, ErrorBody> {
        self.ask(|reply| Command::LoadConversation { id, reply })
            .await?
    }

    pub async fn delete_conversation(&self, id: i64) -> Result<(), ErrorBody> {
        self.ask(|reply| Command::DeleteConversation { id, reply })
            .await?
    }

    pub async fn characters(&self) -> Result<(String, Vec<CharacterInfo>), ErrorBody> {
        self.ask(|reply| Command::ListCharacters { reply }).await
    }

    /// Cancels the running turn, waits for it to store its partial reply, and stops the
    /// actor. Later commands fail with `shutting_down`.
    /// Answers when the actor has handled every command sent before it: a stuck actor
    /// never answers (the service watchdog's probe).
    pub async fn ping(&self) -> Result<(), ErrorBody> {
        self.ask(|reply| Command::Ping { reply }).await
    }

    /// Applies reloaded settings and characters (validated by the caller); returns notes
    /// for the person who asked.
    pub async fn reload(
        &self,
        config: crate::config::Config,
        roster: crate::characters::Roster,
    ) -> Result<Vec<String>, ErrorBody> {
        self.ask(|reply| Command::Reload {
            config: Box::new(config),
            roster,
            reply,
        })
        .await
    }

    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}
