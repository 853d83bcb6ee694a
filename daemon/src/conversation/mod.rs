//! The conversation: the current character, its stored conversation, and the one turn in
//! progress (what the daemon is talking about, with whom, and the reply being made).
//!
//! - [`handle`]: [`Conversation`], the cheap handle clients drive it with;
//! - `actor`: the one task that owns the state and handles commands in order;
//! - [`turn`]: one reply: prompt → LLM stream → deltas and sentences → speech → tools;
//! - [`tool_use`]: tools as a turn sees them ([`tool_use::ToolRunner`]) and JSON-mode calls;
//! - [`view`]: the status view mirrored for `status`;
//! - [`proactive`]: when the character speaks up on its own after a quiet spell;
//! - [`provider`]: which LLM provider a character's settings call for;
//! - [`character_files`]: where character files live and the watcher that reloads them.

mod actor;
pub mod character_files;
#[cfg(test)]
mod fake_tools;
pub mod handle;
pub mod proactive;
pub mod provider;
#[cfg(test)]
mod tests;
pub mod tool_use;
pub mod turn;
pub mod view;

pub use actor::ConversationSetup;
pub use handle::Conversation;
pub use view::ConversationView;
