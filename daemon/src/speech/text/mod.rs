//! Text side of the voice pipeline: split a streaming reply into sentences, clean a
//! sentence into what the TTS engine should read, and pull expression tags out of it.
//!
//! Everything here is pure and synchronous so it can be tested exhaustively; the audio
//! side only ever sees [`sentences::Sentence`]s and strings.

pub mod clean;
pub mod expressions;
mod markers;
pub mod sentences;
#[cfg(test)]
mod test_text;
