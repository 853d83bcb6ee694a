//! Speech output: the TTS engine, the daemon's speaker and where reply audio goes.
//! Turns speak their replies through it, `speak` requests synthesize with it, and voice
//! input reports on it and stops it on barge-in.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vtuber_shared::{ErrorBody, ErrorCode};

use crate::characters::Character;
use crate::config::{Playback, TtsConfig};
use crate::events::EventBus;
use crate::pcm::Pcm;
use crate::sound::Player;
use crate::speech::listeners::Listeners;
use crate::speech::speaker::{Speaker, SpeakerSetup, SpeechSummary};
use crate::speech::text::sentences::SplitterConfig;
use crate::speech::tts::Tts;
use crate::speech::{SpeechError, Voice};

/// What the daemon speaks with; cheap to clone.
#[derive(Clone)]
pub struct SpeechOut {
    pub tts: Tts,
    /// The daemon's speaker, when replies play locally.
    pub player: Option<Player>,
    pub playback: Playback,
    /// Clients that play the reply's audio: with none and no speaker, replies are text
    /// only (synthesis would only take CPU from the model).
    pub listeners: Listeners,
}

impl SpeechOut {
    /// Starts speaking the reply of turn `turn_id` in `character`'s voice, sentence by
    /// sentence as its text is pushed; the task ends when the speaker is dropped and
    /// everything is said, or on `cancel`.
    pub fn speak_turn(
        &self,
        turn_id: u64,
        character: &Character,
        tts: &TtsConfig,
        bus: EventBus,
        cancel: CancellationToken,
    ) -> (Speaker, JoinHandle<SpeechSummary>) {
        Speaker::start(SpeakerSetup {
            turn_id,
            tts: self.tts.clone(),
            voice: character.voice.clone(),
            clean: character.voice.clean.clone(),
            splitter: SplitterConfig {
                first_min_chars: tts.first_sentence_min_chars,
                max_chars: tts.max_sentence_chars,
            },
            parallel: self.tts.parallel(&character.voice, tts.parallel),
            emotions: character.avatar.emotions.clone(),
            bus,
            player: self.player.clone(),
            listeners: self.listeners.clone(),
            audio_to_clients: self.playback != Playback::Local,
            cancel,
        })
    }

    /// `text` in `voice` (markup, code and tags left out).
    pub async fn speak(&self, text: &str, voice: &Voice) -> Result<Pcm, ErrorBody> {
        let clean = crate::speech::text::clean::clean_for_speech(
            &crate::speech::text::expressions::extract_expressions(text, &Default::default()).0,
            &voice.clean,
        );
        if clean.trim().is_empty() {
            return Err(ErrorBody::new(ErrorCode::InvalidArgument, "nothing to say")
                .with_hint("give some words; markup, code and tags are not read aloud"));
        }
        self.tts
            .synthesize(&clean, voice)
            .await
            .map_err(speech_error)
    }
}

/// A speech engine's error as clients see it.
pub fn speech_error(e: impl Into<SpeechError>) -> ErrorBody {
    let e = e.into();
    let code = match &e {
        SpeechError::BadAudio(_) => ErrorCode::InvalidArgument,
        _ => ErrorCode::Model,
    };
    ErrorBody::new(code, e.to_string()).with_hint(e.hint())
}
