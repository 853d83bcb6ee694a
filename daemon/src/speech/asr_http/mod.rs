//! Speech recognition services over HTTP, one module each: 16 kHz mono speech in as
//! WAV, its text out.

pub mod azure;
pub mod deepgram;

use futures::future::BoxFuture;

use super::SpeechError;
use crate::pcm::Pcm;

/// A speech recognition service.
pub trait HttpAsr: Send + Sync {
    /// The text of `pcm` ("" when nothing was said).
    fn transcribe<'a>(&'a self, pcm: &'a Pcm) -> BoxFuture<'a, Result<String, SpeechError>>;

    /// The backend name (`deepgram`) and model, for status.
    fn describe(&self) -> (&'static str, String);
}
