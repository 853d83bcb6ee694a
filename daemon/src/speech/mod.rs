//! Speech: turning a streamed reply into something a voice can read.
//!
//! The voice feature speaks a reply sentence by sentence while the LLM is still writing,
//! so the first audio starts early. [`text`] holds the pure-text half of that pipeline
//! (sentence splitting, cleaning for TTS, expression tags); the audio half builds on it.

pub mod text;
