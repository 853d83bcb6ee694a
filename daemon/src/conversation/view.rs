//! The conversation's status view: what `status` shows of it, mirrored by the actor and
//! the running turn so status requests never queue behind the actor.

use std::sync::{Arc, Mutex};

use vtuber_shared::{CharacterInfo, DaemonState, ErrorBody, Event, LlmInfo, ModelLoad};

use crate::events::EventBus;

/// Snapshot of what clients see in `status`, kept current by the actor.
#[derive(Debug, Clone)]
pub struct ConversationView {
    pub state: DaemonState,
    pub character: CharacterInfo,
    pub llm: LlmInfo,
    pub model_load: ModelLoad,
    pub conversation_id: Option<i64>,
    pub last_error: Option<ErrorBody>,
    /// The current character's voice.
    pub voice: crate::speech::Voice,
    /// Hands-free listening is on.
    pub listening: bool,
    /// Someone is speaking to the daemon right now.
    pub hearing: bool,
    /// The turn whose reply is still being spoken, if any.
    pub speaking_turn: Option<u64>,
}

/// The view shared by the handle (reads), the actor and the running turn (writes).
#[derive(Clone)]
pub(super) struct SharedView(Arc<Mutex<ConversationView>>);

impl SharedView {
    pub(super) fn new(view: ConversationView) -> Self {
        Self(Arc::new(Mutex::new(view)))
    }

    pub(super) fn get(&self) -> ConversationView {
        match self.0.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(super) fn update<T>(&self, f: impl FnOnce(&mut ConversationView) -> T) -> T {
        match self.0.lock() {
            Ok(mut v) => f(&mut v),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Sets the state, telling clients when it changed.
    pub(super) fn set_state(&self, state: DaemonState, bus: &EventBus) {
        if self.update(|v| std::mem::replace(&mut v.state, state) != state) {
            bus.emit(Event::StateChanged { state });
        }
    }
}
