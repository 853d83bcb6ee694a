//! Progress of running calls: rmcp puts its own progress token on every request, so a
//! server's `notifications/progress` is routed by that token to the call it belongs to
//! and reaches clients as `ToolCallProgress`.

use std::collections::HashMap;
use std::sync::Mutex;

use rmcp::model::{NumberOrString, ProgressNotificationParam, ProgressToken};
use vtuber_shared::Event;

use super::lock;
use crate::events::EventBus;

/// Progress token → call id, shared with the client handlers.
pub(super) struct ProgressRoutes {
    bus: EventBus,
    routes: Mutex<HashMap<String, String>>,
}

impl ProgressRoutes {
    pub fn new(bus: EventBus) -> Self {
        Self {
            bus,
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// Routes progress sent under `token` to `call_id`; returns the key for [`Self::unroute`].
    pub fn route(&self, token: &ProgressToken, call_id: String) -> String {
        let key = token_key(token);
        lock(&self.routes).insert(key.clone(), call_id);
        key
    }

    pub fn unroute(&self, key: &str) {
        lock(&self.routes).remove(key);
    }

    /// Emits a server's progress notification for the call it belongs to, if any.
    pub fn report(&self, params: ProgressNotificationParam) {
        let token = token_key(&params.progress_token);
        let call_id = lock(&self.routes).get(&token).cloned();
        if let Some(call_id) = call_id {
            self.bus.emit(Event::ToolCallProgress {
                call_id,
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
    }
}

fn token_key(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::String(s) => s.to_string(),
        NumberOrString::Number(n) => n.to_string(),
    }
}
