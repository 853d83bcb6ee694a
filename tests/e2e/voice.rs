//! Voice through the real binaries: speech recognition of real (espeak-ng) speech with
//! `vtuber listen`, synthesis with `vtuber speak`, spoken replies as ordered sentence
//! events, barge-in from streamed audio, and a daemon without a sound card.
//!
//! These use the default models (`scripts/setup.sh` installs them) and espeak-ng.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine as _;
use vtuber_shared::{Event, Reply, Request, TurnOutcome};
use vtuber_test_support::daemon::{TestClient, TestDaemon, link_models};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};
use vtuberd::pcm::Pcm;

/// A daemon with the speech engines on, the real models linked in, no audio devices
/// (or the virtual speaker with `speaker: "null"`), talking to `mock`.
fn voice_daemon(mock: &MockLlm, character: &str, speaker: &str, extra: &str) -> TestDaemon {
    let config = format!(
        "{}character:\n  default: {character}\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: {speaker}\n  playback: both\n{extra}",
        openai_config(&mock.base_url())
    );
    let mut daemon = TestDaemon::new(&config).expect("daemon home");
    link_models(&daemon.models_dir()).expect("models");
    daemon.start().expect("daemon starts");
    daemon
}

/// Speech from espeak-ng as a WAV file (22050 Hz mono).
fn espeak_wav(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    espeak_wav_in(dir, name, "en-us", text)
}

/// The same in another of espeak-ng's voices (`es`, `de`, ...).
fn espeak_wav_in(dir: &Path, name: &str, voice: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(status.success(), "espeak-ng failed");
    path
}

fn words(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect()
}

fn decode_audio(b64: &str) -> Pcm {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("audio is base64");
    Pcm::from_wav(&bytes).expect("audio is WAV")
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_transcribes_real_speech_and_prints_the_reply() {
    let mock = MockLlm::start(MockBehaviour::echo_last_user())
        .await
        .expect("mock");
    let daemon = voice_daemon(&mock, "sage", "none", "");
    let wav = espeak_wav(
        daemon.dir.path(),
        "question.wav",
        "What is the weather like in Paris today?",
    );
    let mut cmd = daemon.vtuber();
    cmd.arg("listen").arg(&wav);
    let out = run(cmd).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let heard = words(&stderr(&out));
    for w in ["weather", "paris", "today"] {
        assert!(heard.contains(w), "`{w}` not heard: {}", stderr(&out));
    }
    // The mock echoes what it was sent: the transcript reached the LLM as the user turn.
    let reply = words(&stdout(&out));
    assert!(
        reply.contains("you said") && reply.contains("paris"),
        "{reply}"
    );
    let reqs = mock.requests();
    let user = reqs[0]
        .last_user_message()
        .unwrap_or_default()
        .to_lowercase();
    assert!(user.contains("weather"), "{user}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multilingual_model_hears_other_languages() {
    let mock = MockLlm::start(MockBehaviour::echo_last_user())
        .await
        .expect("mock");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    link_models(&models).expect("models");
    // The multilingual base model told the language (detection is checked on longer
    // speech in the engine's own tests).
    let config = format!(
        "{}speech:\n  enabled: true\n  models_dir: {}\n  asr:\n    model_dir: {}\n    language: es\naudio:\n  input: none\n  output: none\n",
        openai_config(&mock.base_url()),
        models.display(),
        models.join("whisper-base").display()
    );
    let mut daemon = TestDaemon::new(&config).expect("daemon home");
    daemon.start().expect("daemon starts");
    let wav = espeak_wav_in(
        daemon.dir.path(),
        "pregunta.wav",
        "es",
        "Buenos días, me gustaría comprar dos billetes de tren para Madrid.",
    );
    let mut cmd = daemon.vtuber();
    cmd.arg("listen").arg(&wav);
    let out = run(cmd).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let heard = words(&stderr(&out));
    // espeak-ng's Spanish is robotic: the clear words are checked, not the place names.
    for w in ["buenos", "días", "gustaría", "comprar"] {
        assert!(heard.contains(w), "`{w}` not heard: {}", stderr(&out));
    }
    let user = mock.requests()[0]
        .last_user_message()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        user.contains("gustaría") && user.contains("comprar"),
        "{user}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_to_silence_hears_nothing_and_says_so() {
    let mock = MockLlm::start(MockBehaviour::echo_last_user())
        .await
        .expect("mock");
    let daemon = voice_daemon(&mock, "sage", "none", "");
    let path = daemon.dir.path().join("silence.wav");
    std::fs::write(&path, Pcm::new(vec![0.0; 32_000], 16_000).to_wav()).expect("write");
    let mut cmd = daemon.vtuber();
    cmd.arg("listen").arg(&path);
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing intelligible"),
        "{}",
        stderr(&out)
    );
    assert!(mock.requests().is_empty(), "no turn for silence");

    // Not audio at all: a clear error, and the daemon carries on.
    let junk = daemon.dir.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF not really a wav file").expect("write");
    let mut cmd = daemon.vtuber();
    cmd.arg("listen").arg(&junk);
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("WAV"), "{}", stderr(&out));
    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    assert!(run(cmd).await.status.success());
}

async fn speak_to_file(daemon: &TestDaemon, text: &str) -> Pcm {
    let out_path = daemon.dir.path().join("out.wav");
    let mut cmd = daemon.vtuber();
    cmd.args(["speak", text, "-o"]).arg(&out_path);
    let out = run(cmd).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    Pcm::from_wav(&std::fs::read(&out_path).expect("file written")).expect("valid WAV")
}

#[tokio::test(flavor = "multi_thread")]
async fn speak_writes_plausible_speech_with_piper_and_espeak() {
    let mock = MockLlm::start(MockBehaviour::reply("ok"))
        .await
        .expect("mock");
    // Mao speaks with the Piper voice.
    let daemon = voice_daemon(&mock, "mao", "none", "");
    let text = "Hello there, it is a lovely day for a cup of tea.";
    let pcm = speak_to_file(&daemon, text).await;
    assert_eq!(pcm.sample_rate, 22_050);
    let secs = pcm.duration_secs();
    assert!((1.5..6.0).contains(&secs), "duration {secs}");
    assert!(pcm.rms() > 0.02, "rms {}", pcm.rms());
    // What Piper said is what was asked: Whisper hears it back.
    let wav = daemon.dir.path().join("piper.wav");
    std::fs::write(&wav, pcm.to_wav()).expect("write");
    let mut cmd = daemon.vtuber();
    cmd.arg("listen").arg(&wav);
    let heard = words(&stderr(&run(cmd).await));
    assert!(heard.contains("lovely") && heard.contains("tea"), "{heard}");

    // Sage speaks with espeak-ng.
    let mut client = daemon.client("test").await.expect("client");
    let r = client
        .request(Request::SwitchCharacter {
            name: "sage".into(),
        })
        .await
        .expect("answer");
    assert!(r.is_ok(), "{r:?}");
    let pcm = speak_to_file(&daemon, text).await;
    assert!(
        (1.5..6.0).contains(&pcm.duration_secs()),
        "{}",
        pcm.duration_secs()
    );
    assert!(pcm.rms() > 0.02);

    // Markup and tags are not spoken; nothing left to say is an error.
    let mut cmd = daemon.vtuber();
    cmd.args(["speak", "[joy] 😀", "-o"])
        .arg(daemon.dir.path().join("x.wav"));
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nothing to say"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_are_spoken_sentence_by_sentence_in_order() {
    let reply = "[joy] Hello there, my friend! This is the second sentence. \
                 Here is `code` and a third one? **Bold** ends it.";
    let mock = MockLlm::start(MockBehaviour::Reply(MockReply::text(reply).with_rate(60.0)))
        .await
        .expect("mock");
    let daemon = voice_daemon(&mock, "sage", "none", "");
    let mut client = daemon.client("test").await.expect("client");
    let r = client
        .request(Request::SendText {
            text: "talk to me".into(),
            images: Vec::new(),
        })
        .await
        .expect("answer");
    let Ok(Reply::TurnAccepted { turn_id, .. }) = r else {
        panic!("{r:?}")
    };
    let mut sentences = Vec::new();
    let mut deltas_done = false;
    let finished = loop {
        let (_, ev) = client.next_event(WAIT).await.expect("event");
        match ev {
            Event::Sentence {
                turn_id: t,
                index,
                text,
                expressions,
                audio,
                ..
            } if t == turn_id => sentences.push((index, text, expressions, audio, deltas_done)),
            Event::TurnEnded {
                turn_id: t,
                outcome,
                ..
            } if t == turn_id => {
                assert_eq!(outcome, TurnOutcome::Finished);
                deltas_done = true;
            }
            Event::SpeechFinished {
                turn_id: t,
                sentences: n,
                interrupted,
            } if t == turn_id => break (n, interrupted),
            _ => {}
        }
    };
    assert_eq!(finished, (sentences.len() as u32, false));
    assert_eq!(sentences.len(), 4, "{sentences:?}");
    let indexes: Vec<u32> = sentences.iter().map(|s| s.0).collect();
    assert_eq!(indexes, vec![0, 1, 2, 3]);
    // The first sentence was spoken while the LLM was still writing.
    assert!(!sentences[0].4, "first audio only after the whole reply");
    assert_eq!(sentences[0].1, "Hello there, my friend!");
    assert_eq!(sentences[0].2, vec!["joy".to_owned()]);
    assert!(sentences.iter().all(|s| !s.1.contains("[joy]")));
    for (_, text, _, audio, _) in &sentences {
        let audio = audio
            .as_ref()
            .unwrap_or_else(|| panic!("no audio for {text}"));
        let pcm = decode_audio(&audio.wav_base64);
        assert_eq!(pcm.sample_rate, audio.sample_rate);
        assert!(pcm.rms() > 0.01, "silent audio for {text}");
        assert!(
            (i64::from(pcm.duration_ms()) - i64::from(audio.duration_ms)).abs() <= 1,
            "duration mismatch"
        );
        assert_eq!(audio.slice_ms, 20);
        let expected_slices =
            (pcm.samples.len() as f64 / (f64::from(pcm.sample_rate) * 0.02)).ceil();
        assert_eq!(audio.volumes.len() as f64, expected_slices);
        let max = audio.volumes.iter().copied().fold(0.0f32, f32::max);
        assert!((max - 1.0).abs() < 1e-6 && audio.volumes.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

/// Streams `pcm` (16 kHz) to the daemon as live microphone audio, in real time.
async fn stream_live(client: &mut TestClient, pcm: &[f32]) {
    let chunk = 1600; // 100 ms
    let started = Instant::now();
    for (i, c) in pcm.chunks(chunk).enumerate() {
        let bytes: Vec<u8> = c.iter().flat_map(|s| s.to_le_bytes()).collect();
        let r = client
            .request(Request::StreamAudio {
                samples_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            })
            .await
            .expect("answer");
        assert!(matches!(r, Ok(Reply::AudioReceived)), "{r:?}");
        let due = started + Duration::from_millis(100 * (i as u64 + 1));
        tokio::time::sleep_until(due.into()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn speaking_over_the_character_interrupts_it() {
    // A long, slow reply: plenty of time to talk over it.
    let long: Vec<String> = (0..200).map(|i| format!("word{i} ")).collect();
    let mock = MockLlm::start(MockBehaviour::Script(vec![
        MockBehaviour::Reply(
            MockReply::text(&format!("Let me tell you a long story. {}", long.concat()))
                .with_rate(20.0),
        ),
        MockBehaviour::echo_last_user(),
    ]))
    .await
    .expect("mock");
    let daemon = voice_daemon(&mock, "sage", "virtual", "");
    let mut client = daemon.client("test").await.expect("client");
    let r = client
        .request(Request::SendText {
            text: "tell me a story".into(),
            images: Vec::new(),
        })
        .await
        .expect("answer");
    let Ok(Reply::TurnAccepted { turn_id, .. }) = r else {
        panic!("{r:?}")
    };
    // Wait until the character is speaking.
    client
        .events_until(
            WAIT,
            |e| matches!(e, Event::Sentence { turn_id: t, .. } if *t == turn_id),
        )
        .await
        .expect("first sentence");
    // Then the user talks: half a second of silence, speech, a second of silence.
    let wav = espeak_wav(
        daemon.dir.path(),
        "stop.wav",
        "Please stop and tell me the time.",
    );
    let speech = Pcm::from_wav(&std::fs::read(&wav).expect("read"))
        .expect("wav")
        .resampled(16_000)
        .expect("resample");
    let mut live = vec![0.0f32; 8_000];
    live.extend_from_slice(&speech.samples);
    live.extend(std::iter::repeat_n(0.0f32, 16_000));
    stream_live(&mut client, &live).await;

    let mut saw_voice = false;
    let mut interrupted_turn = false;
    let mut speech_cut = false;
    let next_turn = loop {
        let (_, ev) = client.next_event(WAIT).await.expect("event");
        match ev {
            Event::VoiceActivity { speaking: true } => saw_voice = true,
            Event::TurnEnded {
                turn_id: t,
                outcome,
                ..
            } if t == turn_id => {
                assert_eq!(outcome, TurnOutcome::Interrupted);
                interrupted_turn = true;
            }
            Event::SpeechFinished {
                turn_id: t,
                interrupted,
                ..
            } if t == turn_id => {
                assert!(interrupted);
                speech_cut = true;
            }
            Event::TurnStarted {
                text,
                origin,
                turn_id: t,
                ..
            } if t != turn_id => {
                break (text, origin);
            }
            _ => {}
        }
    };
    assert!(saw_voice && interrupted_turn && speech_cut);
    assert!(next_turn.1.starts_with("voice"), "{next_turn:?}");
    let heard = words(&next_turn.0);
    assert!(heard.contains("stop") && heard.contains("time"), "{heard}");
    // The partial reply is in history, marked interrupted.
    let Ok(Reply::Status(status)) = client.request(Request::Status).await.expect("status") else {
        panic!("no status")
    };
    let id = status.conversation_id.expect("conversation");
    let Ok(Reply::Conversation { messages, .. }) = client
        .request(Request::GetConversation { id, page: None })
        .await
        .expect("conversation")
    else {
        panic!("no conversation")
    };
    assert!(
        messages
            .iter()
            .any(|m| m.interrupted && m.text.contains("long story")),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_without_a_sound_card_still_talks() {
    let mock = MockLlm::start(MockBehaviour::reply("Hi."))
        .await
        .expect("mock");
    let config = format!(
        "{}character:\n  default: sage\nspeech:\n  enabled: true\naudio:\n  input: default\n  output: default\n",
        openai_config(&mock.base_url())
    );
    let mut daemon = TestDaemon::new(&config).expect("home");
    link_models(&daemon.models_dir()).expect("models");
    daemon.start().expect("starts without a sound card");
    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let out = run(cmd).await;
    let status: vtuber_shared::Status = serde_json::from_str(&stdout(&out)).expect("status JSON");
    let voice = status.voice.expect("voice status");
    let has_card = std::fs::read_to_string("/proc/asound/cards")
        .map(|c| !c.contains("no soundcards") && !c.trim().is_empty())
        .unwrap_or(false);
    if has_card {
        assert!(
            voice.input_device.is_some() || voice.output_device.is_some(),
            "{voice:?}"
        );
    } else {
        assert_eq!(voice.audio, "no audio device");
        assert!(!voice.listening);
        // Listening needs a microphone: a clear refusal.
        let mut client = daemon.client("t").await.expect("client");
        let r = client
            .request(Request::SetListening { on: true })
            .await
            .expect("answer");
        let err = r.expect_err("cannot listen without a microphone");
        assert!(err.hint.unwrap_or_default().contains("vtuber listen"));
    }
    // Voice through files still works.
    let pcm = speak_to_file(&daemon, "Still talking.").await;
    assert!(pcm.rms() > 0.01);
    // libasound's own messages ("ALSA lib confmisc.c:... cannot find card") stay out of
    // the log; at most one line of ours says what is missing.
    let log = daemon.log_text();
    assert!(!log.contains("ALSA lib"), "{log}");
    if !has_card {
        assert_eq!(log.matches("local audio:").count(), 1, "{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn voice_requests_on_a_text_only_daemon_explain_how_to_enable_it() {
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("ok"));
    let mut cmd = daemon.vtuber();
    cmd.args(["speak", "hello", "-o"])
        .arg(daemon.dir.path().join("x.wav"));
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("speech.enabled"), "{}", stderr(&out));
}
