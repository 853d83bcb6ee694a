//! Voice figures: engine speeds (ASR and TTS real-time factors, VAD cost per frame),
//! echo cancellation, time to first audio with a breakdown, barge-in latency, and the
//! daemon's memory with every default model loaded.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use vtuber_shared::{Event, ModelLoad, Reply, Request};
use vtuber_test_support::daemon::{TestClient, TestDaemon, link_models};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};
use vtuberd::pcm::Pcm;
use vtuberd::speech::{espeak, piper::PiperVoice, vad::SileroVad, whisper::WhisperModel};

use super::{percentile, rss_kib, sorted};

fn models() -> std::path::PathBuf {
    vtuber_shared::paths::models_dir()
}

/// Speech from espeak-ng at 16 kHz.
fn espeak_16k(text: &str) -> anyhow::Result<Pcm> {
    let pcm = espeak::EspeakTts {
        voice: "en-us".into(),
        rate_wpm: 160,
    }
    .synthesize(text)?;
    Ok(pcm.resampled(16_000)?)
}

pub fn bench_engines() -> anyhow::Result<()> {
    vtuberd::speech::onnx::init_runtime(None)?;

    // ASR: Whisper tiny.en.
    let t = Instant::now();
    let mut whisper = WhisperModel::load(&models().join("whisper-tiny.en"), 0, None)?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    for text in [
        "What is the weather like in Paris today?",
        "Please remind me to buy milk, eggs and bread on my way home from work tomorrow evening.",
    ] {
        let pcm = espeak_16k(text)?;
        let _ = whisper.transcribe(&pcm.samples)?; // warm
        let mut times = Vec::new();
        let mut heard = String::new();
        for _ in 0..5 {
            let t = Instant::now();
            heard = whisper.transcribe(&pcm.samples)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let s = sorted(times);
        let p50 = percentile(&s, 0.5);
        println!(
            "asr: whisper tiny.en, {:.1} s of speech: p50 {:.0} ms, RTF {:.3} (target ≤ 0.1); load {load_ms:.0} ms; heard {heard:?}",
            pcm.duration_secs(),
            p50 * 1000.0,
            p50 / pcm.duration_secs()
        );
    }
    drop(whisper);

    // TTS: Piper (joe, medium) and espeak-ng.
    let t = Instant::now();
    let mut piper = PiperVoice::load(&models().join("piper/en_US-joe-medium.onnx"), None)?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let sentence = "Hello there, it is a lovely day for a cup of tea and a chat.";
    let _ = piper.synthesize(sentence, 1.0)?;
    let mut rtf = Vec::new();
    let mut ms = Vec::new();
    let mut audio_secs = 0.0;
    for _ in 0..5 {
        let t = Instant::now();
        let pcm = piper.synthesize(sentence, 1.0)?;
        let el = t.elapsed().as_secs_f64();
        audio_secs = pcm.duration_secs();
        rtf.push(el / audio_secs);
        ms.push(el * 1000.0);
    }
    let short = "Hi there!";
    let t = Instant::now();
    let _ = piper.synthesize(short, 1.0)?;
    let short_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "tts: piper en_US-joe-medium, {audio_secs:.1} s sentence: p50 {:.0} ms, RTF {:.3} (target ≤ 0.1); \"{short}\" {short_ms:.0} ms; load {load_ms:.0} ms",
        percentile(&sorted(ms), 0.5),
        percentile(&sorted(rtf), 0.5)
    );
    let es = espeak::EspeakTts {
        voice: "en-us".into(),
        rate_wpm: 175,
    };
    let t = Instant::now();
    let pcm = es.synthesize(sentence)?;
    let el = t.elapsed().as_secs_f64();
    println!(
        "tts: espeak-ng, {:.1} s sentence: {:.0} ms, RTF {:.3}",
        pcm.duration_secs(),
        el * 1000.0,
        el / pcm.duration_secs()
    );

    // VAD: Silero per 32 ms frame.
    let mut vad = SileroVad::load(&models().join("silero_vad.onnx"))?;
    let speech = espeak_16k(sentence)?;
    let mut signal = vec![0.0f32; 16_000];
    signal.extend_from_slice(&speech.samples);
    let mut times = Vec::new();
    for _ in 0..4 {
        for frame in signal.chunks_exact(SileroVad::FRAME) {
            let t = Instant::now();
            vad.probability(frame)?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let n = times.len();
    let mean = times.iter().sum::<f64>() / n as f64;
    let s = sorted(times);
    println!(
        "vad: silero v6 per 512-sample (32 ms) frame: mean {:.0} µs, p50 {:.0} µs, p99 {:.0} µs over {n} frames (target ≤ 1 ms)",
        mean,
        percentile(&s, 0.5),
        percentile(&s, 0.99)
    );

    bench_echo(&speech)?;
    bench_player_stop();
    Ok(())
}

/// Echo cancellation on a simulated room: the speaker plays speech, the microphone hears
/// it 40 ms later, quieter and filtered, plus a little noise. Measures how much echo
/// is removed (ERLE) and whether voice detection still fires on the echo alone, and on
/// a person speaking over it (double talk).
fn bench_echo(speech16: &Pcm) -> anyhow::Result<()> {
    use vtuberd::sound::echo::{EchoCanceller, FRAME};
    use vtuberd::speech::vad::{Segmenter, SegmenterSettings, VadEvent};
    let far = espeak::EspeakTts {
        voice: "en-gb".into(),
        rate_wpm: 170,
    }
    .synthesize(
        "This is the character talking through the speaker, loud and clear, for quite a while now.",
    )?
    .resampled(48_000)?;
    let near_person = speech16.resampled(48_000)?;
    let delay = 48 * 40;
    let mut seed = 12345u32;
    let mut noise = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 9) as f32 / (1u32 << 23) as f32 - 0.5
    };
    // Echo path: delay, 0.5 gain, one-pole low-pass.
    let mut lp = 0.0f32;
    let echo: Vec<f32> = (0..far.samples.len() + delay)
        .map(|i| {
            let x = if i >= delay {
                far.samples[i - delay]
            } else {
                0.0
            };
            lp = 0.7 * lp + 0.3 * x;
            0.5 * lp + 0.002 * noise()
        })
        .collect();
    let run = |with_aec: bool, person: bool| -> anyhow::Result<(f64, usize)> {
        let mut aec = EchoCanceller::new().map_err(|e| anyhow::anyhow!(e))?;
        let mut vad = SileroVad::load(&models().join("silero_vad.onnx"))?;
        let mut seg = Segmenter::new(SegmenterSettings {
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 600,
            pre_roll_ms: 300,
            max_utterance_ms: 30_000,
        });
        let mut resampler =
            vtuberd::pcm::StreamResampler::new(48_000, 16_000).context("resampler")?;
        let mut e_in = 0.0f64;
        let mut e_out = 0.0f64;
        let mut starts = 0;
        let person_at = echo.len() / 3;
        for (i, block) in echo.chunks(FRAME).enumerate() {
            let start = i * FRAME;
            let far_block: Vec<f32> = (start..start + block.len())
                .map(|j| far.samples.get(j).copied().unwrap_or(0.0))
                .collect();
            let mut mic = block.to_vec();
            if person {
                for (k, m) in mic.iter_mut().enumerate() {
                    let j = start + k;
                    if j >= person_at && j - person_at < near_person.samples.len() {
                        *m += near_person.samples[j - person_at];
                    }
                }
            }
            let out = if with_aec {
                aec.push_far(&far_block);
                aec.process(&mic)
            } else {
                mic.clone()
            };
            // Energy after the canceller has had 2 s to converge, echo-only region.
            if start > 96_000 && (!person || start < person_at) {
                e_in += mic.iter().map(|s| f64::from(s * s)).sum::<f64>();
                e_out += out.iter().map(|s| f64::from(s * s)).sum::<f64>();
            }
            let s16 = resampler.push(&out);
            for ev in seg.push(&mut vad, &s16)? {
                if let VadEvent::SpeechStart { .. } = ev {
                    starts += 1;
                }
            }
        }
        let erle = 10.0 * (e_in / e_out.max(1e-12)).log10();
        Ok((erle, starts))
    };
    let (_, raw_starts) = run(false, false)?;
    let (erle, aec_starts) = run(true, false)?;
    let (_, talk_starts) = run(true, true)?;
    println!(
        "echo: simulated room (40 ms, −6 dB, low-passed): ERLE {erle:.1} dB after convergence; \
         voice detected on echo alone: {raw_starts} time(s) without cancellation, {aec_starts} with; \
         person talking over the echo detected: {}",
        if talk_starts > 0 { "yes" } else { "NO" }
    );
    Ok(())
}

/// Speaker stop latency in the player itself (the virtual device renders 10 ms blocks).
fn bench_player_stop() {
    use vtuberd::sound::Player;
    let player = Player::virtual_sink(48_000, 10);
    let mut lat = Vec::new();
    for _ in 0..50 {
        let _rx = player.play(&Pcm::new(vec![0.1; 48_000], 48_000));
        std::thread::sleep(Duration::from_millis(23));
        player.stop();
        let t = Instant::now();
        while player.last_stop_latency().is_none() && t.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_micros(200));
        }
        if let Some(l) = player.last_stop_latency() {
            lat.push(l.as_secs_f64() * 1000.0);
        }
    }
    let s = sorted(lat);
    println!(
        "barge-in: stop() → speaker silent: p50 {:.1} ms, max {:.1} ms (virtual device, 10 ms blocks; a real device adds its buffer)",
        percentile(&s, 0.5),
        s.last().copied().unwrap_or(f64::NAN)
    );
}

fn voice_config(base_url: &str, character: &str, output: &str) -> String {
    format!(
        "llm:\n  provider: openai_compatible\n  base_url: {base_url}\n  model: mock-model\n  retries: 0\ncharacter:\n  default: {character}\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: {output}\n  playback: both\n"
    )
}

async fn voice_daemon(base_url: &str, character: &str, output: &str) -> anyhow::Result<TestDaemon> {
    let mut d = TestDaemon::new(&voice_config(base_url, character, output))?;
    d.log_filter = "warn".into();
    link_models(&d.models_dir())?;
    d.start()?;
    // Wait until the engines are loaded, so load time is not counted as latency.
    let mut c = d.client("bench").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Reply::Status(s)) = c.request(Request::Status).await?
            && let Some(v) = &s.voice
        {
            {
                let ready = [&v.vad.load, &v.asr.load, &v.tts.load]
                    .iter()
                    .all(|l| matches!(l, ModelLoad::Ready));
                if ready {
                    break;
                }
                if let Some(failed) = [&v.vad, &v.asr, &v.tts]
                    .iter()
                    .find(|e| matches!(e.load, ModelLoad::Failed { .. }))
                {
                    bail!("{} failed to load: {:?}", failed.backend, failed.load);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("speech engines did not load within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(d)
}

/// Times of one turn's milestones, seen by a client.
#[derive(Default, Debug)]
struct Milestones {
    first_delta: Option<Instant>,
    first_sentence_text_done: Option<Instant>,
    first_audio: Option<Instant>,
    synth_ms: u32,
}

/// Follows a turn until its first sentence arrives with audio.
async fn follow_first_audio(
    c: &mut TestClient,
    turn: Option<u64>,
) -> anyhow::Result<(u64, Milestones)> {
    let mut m = Milestones::default();
    let mut text = String::new();
    let mut turn_id = turn;
    loop {
        let (_, ev) = c.next_event(Duration::from_secs(60)).await?;
        let now = Instant::now();
        match ev {
            Event::TurnStarted { turn_id: t, .. } if turn_id.is_none() => turn_id = Some(t),
            Event::Delta {
                turn_id: t,
                text: d,
            } if Some(t) == turn_id => {
                m.first_delta.get_or_insert(now);
                text.push_str(&d);
                // The first sentence of the mock's reply ends at its first '!'.
                if m.first_sentence_text_done.is_none() && text.contains('!') {
                    m.first_sentence_text_done = Some(now);
                }
            }
            Event::Sentence {
                turn_id: t,
                audio: Some(_),
                synth_ms,
                ..
            } if Some(t) == turn_id => {
                m.first_audio = Some(now);
                m.synth_ms = synth_ms;
                return Ok((t, m));
            }
            _ => {}
        }
    }
}

/// One voice-path run: total, end-of-speech detection, ASR, LLM first sentence, TTS,
/// daemon time (all ms).
type VoiceRow = (f64, f64, f64, f64, f64, f64);

/// Streams `live` (16 kHz) in real time, `chunk` samples at a time, on its own
/// connection (so event reading elsewhere is not delayed). Returns when each chunk was
/// sent.
fn stream_in_background(
    socket: std::path::PathBuf,
    live: Vec<f32>,
    chunk: usize,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<Instant>>> {
    tokio::spawn(async move {
        let mut mic = TestClient::connect(&socket, "bench-mic", false).await?;
        let started = Instant::now();
        let mut sent = Vec::new();
        for (i, c) in live.chunks(chunk).enumerate() {
            let bytes: Vec<u8> = c.iter().flat_map(|s| s.to_le_bytes()).collect();
            mic.request(Request::StreamAudio {
                samples_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            })
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            sent.push(Instant::now());
            let due = started + Duration::from_secs_f64((i + 1) as f64 * chunk as f64 / 16_000.0);
            tokio::time::sleep_until(due.into()).await;
        }
        Ok(sent)
    })
}

/// Time to first audio from a text submit and from the end of speech, with the mock LLM
/// at 30 tokens/s and the embedded Piper voice.
pub async fn bench_first_audio() -> anyhow::Result<()> {
    let reply =
        "Hello there, my friend! It is a lovely day today, and I am happy to see you again.";
    let tokens: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
    let mock = MockLlm::start(MockBehaviour::Reply(
        MockReply::tokens(tokens).with_rate(30.0),
    ))
    .await?;
    let d = voice_daemon(&mock.base_url(), "mao", "none").await?;
    let mut c = d.client("bench").await?;

    let mut rows = Vec::new();
    for _ in 0..8 {
        let t0 = Instant::now();
        let r = c
            .request(Request::SendText {
                text: "hi".into(),
                images: Vec::new(),
            })
            .await?;
        let Ok(Reply::TurnAccepted { turn_id, .. }) = r else {
            bail!("{r:?}")
        };
        let (_, m) = follow_first_audio(&mut c, Some(turn_id)).await?;
        c.request(Request::Interrupt).await?.ok();
        let ms =
            |a: Option<Instant>, b: Instant| a.map_or(f64::NAN, |a| (a - b).as_secs_f64() * 1000.0);
        let total = ms(m.first_audio, t0);
        let llm_first = ms(m.first_delta, t0);
        let sentence_done = ms(m.first_sentence_text_done, t0);
        let after_text = ms(m.first_audio, m.first_sentence_text_done.unwrap_or(t0));
        let added = after_text - f64::from(m.synth_ms);
        rows.push((
            total,
            llm_first,
            sentence_done,
            f64::from(m.synth_ms),
            added,
        ));
    }
    let col = |f: fn(&(f64, f64, f64, f64, f64)) -> f64| {
        percentile(&sorted(rows.iter().map(f).collect()), 0.5)
    };
    println!(
        "first audio (text): submit → first audio p50 {:.0} ms = LLM first token {:.0} ms + first sentence complete at {:.0} ms (30 tok/s) + TTS {:.0} ms + daemon {:.2} ms (target ≤ 5 ms)",
        col(|r| r.0),
        col(|r| r.1),
        col(|r| r.2),
        col(|r| r.3),
        col(|r| r.4)
    );

    // From the end of speech: stream an utterance in real time, then silence, on a
    // second connection; this one reads the events as they come.
    let speech = espeak_16k("Hello, how are you doing today?")?;
    // Where the speech really ends (espeak pads the clip with silence).
    let last_loud = speech
        .samples
        .chunks(160)
        .rposition(|c| vtuberd::pcm::rms(c) > 0.02)
        .unwrap_or(0);
    let mut rows = Vec::new();
    for _ in 0..4 {
        let mut live = vec![0.0f32; 4_800];
        live.extend_from_slice(&speech.samples);
        let speech_end = 4_800 + (last_loud + 1) * 160;
        live.extend(std::iter::repeat_n(0.0f32, 24_000));
        let chunk = 320;
        let mic = stream_in_background(d.socket.clone(), live, chunk);
        let mut vad_end = None;
        let mut transcript_at = None;
        let mut asr_ms = 0;
        let mut turn = None;
        let mut first_delta = None;
        let mut text = String::new();
        let mut sentence_done = None;
        let mut first_audio = None;
        let mut synth = 0;
        while first_audio.is_none() {
            let (_, ev) = c.next_event(Duration::from_secs(60)).await?;
            let now = Instant::now();
            match ev {
                Event::VoiceActivity { speaking: false } => vad_end = Some(now),
                Event::Transcript {
                    asr_ms: a, turn_id, ..
                } => {
                    transcript_at = Some(now);
                    asr_ms = a;
                    turn = turn_id;
                }
                Event::Delta { turn_id, text: d } if Some(turn_id) == turn => {
                    first_delta.get_or_insert(now);
                    text.push_str(&d);
                    if sentence_done.is_none() && text.contains("! ") {
                        sentence_done = Some(now);
                    }
                }
                Event::Sentence {
                    turn_id,
                    audio: Some(_),
                    synth_ms,
                    ..
                } if Some(turn_id) == turn => {
                    first_audio = Some(now);
                    synth = synth_ms;
                }
                _ => {}
            }
        }
        let sent = mic.await??;
        // The chunk holding the last speech sample: the user stopped talking then.
        let eos = sent[(speech_end - 1) / chunk];
        c.request(Request::Interrupt).await?.ok();
        let ms = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => (a.max(b) - b).as_secs_f64() * 1000.0,
            _ => f64::NAN,
        };
        let total = ms(first_audio, Some(eos));
        let detect = ms(vad_end, Some(eos));
        // Daemon time: utterance end → transcript beyond ASR itself, transcript → first
        // delta (the mock answers at once), sentence text complete → audio beyond TTS.
        let added = (ms(transcript_at, vad_end) - f64::from(asr_ms))
            + ms(first_delta, transcript_at)
            + (ms(first_audio, sentence_done) - f64::from(synth));
        let llm_sentence = ms(sentence_done, first_delta);
        rows.push((
            total,
            detect,
            f64::from(asr_ms),
            llm_sentence,
            f64::from(synth),
            added,
        ));
    }
    let col = |f: fn(&VoiceRow) -> f64| percentile(&sorted(rows.iter().map(f).collect()), 0.5);
    println!(
        "first audio (voice): end of speech → first audio p50 {:.0} ms = end-of-speech detection {:.0} ms (min_silence_ms 600) + ASR {:.0} ms + LLM first sentence {:.0} ms (30 tok/s) + TTS {:.0} ms + daemon {:.2} ms (target ≤ 5 ms)",
        col(|r| r.0),
        col(|r| r.1),
        col(|r| r.2),
        col(|r| r.3),
        col(|r| r.4),
        col(|r| r.5)
    );
    Ok(())
}

/// Barge-in: while the character speaks through the (virtual) speaker, the user talks.
/// Speech onset in the stream → voice detected → speech cut.
pub async fn bench_barge_in() -> anyhow::Result<()> {
    let long: String = (0..300).map(|i| format!("word{i} ")).collect();
    let mock = MockLlm::start(MockBehaviour::Reply(
        MockReply::text(&format!("Let me tell you a long story. {long}")).with_rate(30.0),
    ))
    .await?;
    let d = voice_daemon(&mock.base_url(), "sage", "virtual").await?;
    let mut c = d.client("bench").await?;
    let speech = espeak_16k("Stop, please.")?;
    // Where speech really starts in the clip.
    let onset = speech
        .samples
        .chunks(160)
        .position(|c| vtuberd::pcm::rms(c) > 0.02)
        .unwrap_or(0)
        * 160;
    let mut detect = Vec::new();
    let mut cut = Vec::new();
    for _ in 0..5 {
        let r = c
            .request(Request::SendText {
                text: "story".into(),
                images: Vec::new(),
            })
            .await?;
        let Ok(Reply::TurnAccepted { turn_id, .. }) = r else {
            bail!("{r:?}")
        };
        c.events_until(
            Duration::from_secs(30),
            |e| matches!(e, Event::Sentence { turn_id: t, .. } if *t == turn_id),
        )
        .await?;
        let mut live = vec![0.0f32; 3_200];
        live.extend_from_slice(&speech.samples);
        live.extend(std::iter::repeat_n(0.0f32, 16_000));
        let onset_sample = 3_200 + onset;
        let chunk = 320;
        let mic = stream_in_background(d.socket.clone(), live, chunk);
        let mut detected = None;
        let mut stopped = None;
        while detected.is_none() || stopped.is_none() {
            let (_, ev) = c.next_event(Duration::from_secs(30)).await?;
            match ev {
                Event::VoiceActivity { speaking: true } => {
                    detected.get_or_insert(Instant::now());
                }
                Event::SpeechFinished { turn_id: t, .. } if t == turn_id => {
                    stopped.get_or_insert(Instant::now());
                }
                _ => {}
            }
        }
        let sent = mic.await??;
        let onset_at = sent.get(onset_sample / chunk).copied();
        let (Some(o), Some(dt), Some(s)) = (onset_at, detected, stopped) else {
            bail!("barge-in not observed (detected {detected:?}, stopped {stopped:?})");
        };
        detect.push((dt - o).as_secs_f64() * 1000.0);
        cut.push((s.max(dt) - dt).as_secs_f64() * 1000.0);
        // The utterance becomes a turn of its own; stop that one too before the next run.
        let seen = c
            .events_until(
                Duration::from_secs(30),
                |e| matches!(e, Event::TurnStarted { turn_id: t, .. } if *t != turn_id),
            )
            .await?;
        if let Some((_, Event::TurnStarted { turn_id: next, .. })) = seen.last() {
            let next = *next;
            c.request(Request::Interrupt).await?.ok();
            c.events_until(
                Duration::from_secs(30),
                |e| matches!(e, Event::SpeechFinished { turn_id: t, .. } if *t == next),
            )
            .await?;
        }
    }
    println!(
        "barge-in: speech onset → voice detected p50 {:.0} ms (min_speech_ms 250 + 32 ms frames), voice detected → speech stopped (event at the client) p50 {:.1} ms, max {:.1} ms (target ≤ 50 ms)",
        percentile(&sorted(detect), 0.5),
        percentile(&sorted(cut.clone()), 0.5),
        sorted(cut).last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// RSS with the embedded LLM, Whisper, Piper and Silero loaded.
pub async fn bench_voice_rss() -> anyhow::Result<()> {
    let mut d = TestDaemon::new(
        "llm:\n  max_tokens: 64\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: none\n",
    )?;
    d.log_filter = "warn".into();
    link_models(&d.models_dir())?;
    d.start()?;
    let pid = d.pid().context("pid")?;
    let mut c = d.client("bench").await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Reply::Status(s)) = c.request(Request::Status).await? {
            let voice_ready = s.voice.as_ref().is_some_and(|v| {
                [&v.vad.load, &v.asr.load, &v.tts.load]
                    .iter()
                    .all(|l| matches!(l, ModelLoad::Ready))
            });
            if voice_ready && matches!(s.model_load, ModelLoad::Ready) {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("models did not load within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded = rss_kib(pid)?;
    // One spoken turn with the embedded LLM, so inference buffers are counted too.
    let r = c
        .request(Request::SendText {
            text: "Say hello.".into(),
            images: Vec::new(),
        })
        .await?;
    if let Ok(Reply::TurnAccepted { turn_id, .. }) = r {
        c.events_until(
            Duration::from_secs(120),
            |e| matches!(e, Event::SpeechFinished { turn_id: t, .. } if *t == turn_id),
        )
        .await?;
    }
    let after = rss_kib(pid)?;
    println!(
        "rss: all default models loaded (SmolLM2, Whisper tiny.en, Piper joe, Silero): {:.1} MB; after a spoken turn: {:.1} MB",
        loaded as f64 / 1024.0,
        after as f64 / 1024.0
    );
    Ok(())
}
