//! The network speech engines through the real binaries: a character whose `[voice]`
//! names an engine, `vtuber speak` to a file, and a mock service on 127.0.0.1 that
//! speaks the engine's documented wire format (paths, headers, field names, audio
//! formats, error bodies) and refuses anything else. Text in, decoded audio out, and
//! the request checked field by field; retries, errors and key handling alongside.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use vtuber_shared::Event;
use vtuber_shared::client::Hello;
use vtuber_test_support::daemon::{TestClient, TestDaemon};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm};
use vtuber_test_support::mock_speech::{MockSpeech, SpeechAnswer, SpeechRequest};
use vtuberd::pcm::Pcm;

use crate::common::*;

/// 0.6 s of a 300→600 Hz sweep at half scale, 24 kHz mono, encoded by lame.
const MP3: &[u8] = include_bytes!("../../daemon/src/speech/fixtures/tone-24k.mp3");
const SECRET: &str = "sk-test-never-logged-7f3a";
const TEXT: &str = "Hello there, friend.";

/// A 0.5 s tone at `rate`, as the services that send PCM or WAV would.
fn tone(rate: u32) -> Pcm {
    let n = rate / 2;
    Pcm::new(
        (0..n)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.5)
            .collect(),
        rate,
    )
}

/// Raw 16-bit little-endian samples (the WAV without its 44-byte header).
fn raw16(pcm: &Pcm) -> Vec<u8> {
    pcm.to_wav()[44..].to_vec()
}

/// A daemon whose character `tester` speaks with `engine` in `voice`, with `settings`
/// (YAML lines) under `speech.tts.<engine>` and `SECRET` in `VTUBER_TEST_TTS_KEY`.
fn engine_daemon(engine: &str, settings: &str, voice: &str) -> TestDaemon {
    let settings: String = settings.lines().map(|l| format!("      {l}\n")).collect();
    let config = format!(
        "{}character:\n  default: tester\nspeech:\n  enabled: true\n  tts:\n    {engine}:\n{settings}audio:\n  input: none\n  output: none\n  playback: clients\n",
        openai_config("http://127.0.0.1:9/v1")
    );
    let mut daemon = TestDaemon::new(&config).expect("daemon home");
    let characters = daemon.dir.path().join("config/vtuber/characters");
    std::fs::write(
        characters.join("tester.toml"),
        format!(
            "name = \"Tester\"\npersona = \"You test.\"\n\n[voice]\ntts = \"{engine}\"\nvoice = \"{voice}\"\nlanguage = \"en\"\n"
        ),
    )
    .expect("character file");
    daemon
        .extra_env
        .push(("VTUBER_TEST_TTS_KEY".into(), SECRET.into()));
    daemon.start().expect("daemon starts");
    daemon
}

/// `vtuber speak TEXT -o out.wav`: the audio written, or the error printed.
async fn speak(daemon: &TestDaemon, text: &str) -> Result<Pcm, String> {
    let out_path = daemon.dir.path().join("out.wav");
    let _ = std::fs::remove_file(&out_path);
    let mut cmd = daemon.vtuber();
    cmd.args(["speak", text, "-o"]).arg(&out_path);
    let out = run(cmd).await;
    if !out.status.success() {
        return Err(stderr(&out));
    }
    let bytes = std::fs::read(&out_path).map_err(|e| e.to_string())?;
    Pcm::from_wav(&bytes).map_err(|e| e.to_string())
}

/// The decoded MP3 fixture: its rate, its length (plus the encoder's padding), its level.
fn assert_is_the_mp3(pcm: &Pcm) {
    assert_eq!(pcm.sample_rate, 24_000);
    let secs = pcm.duration_secs();
    assert!((0.55..0.75).contains(&secs), "duration {secs}");
    assert!((0.25..0.45).contains(&pcm.rms()), "rms {}", pcm.rms());
}

fn assert_is_tone(pcm: &Pcm, rate: u32) {
    assert_eq!(pcm.sample_rate, rate);
    assert!(
        (0.49..0.51).contains(&pcm.duration_secs()),
        "{}",
        pcm.duration_secs()
    );
    assert!((0.3..0.4).contains(&pcm.rms()), "rms {}", pcm.rms());
}

/// The key never reaches the log, whatever happened.
fn assert_key_not_logged(daemon: &TestDaemon) {
    assert!(
        !daemon.log_text().contains(SECRET),
        "the API key was logged"
    );
}

fn bearer_ok(r: &SpeechRequest) -> bool {
    r.header("authorization") == Some(&format!("Bearer {SECRET}"))
}

/// A JSON error answer.
fn error(status: u16, body: Value) -> SpeechAnswer {
    SpeechAnswer::json(status, &body)
}

#[tokio::test(flavor = "multi_thread")]
async fn elevenlabs_streams_mp3_retries_a_429_and_names_a_missing_voice() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mock = MockSpeech::start(move |r| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let voice = r
            .path
            .strip_prefix("/v1/text-to-speech/")
            .and_then(|p| p.strip_suffix("/stream"));
        let body = r.json();
        if r.header("xi-api-key") != Some(SECRET) {
            return error(401, json!({"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}));
        }
        let Some(voice) = voice.filter(|_| r.method == "POST") else {
            return error(404, json!({"detail": "Not Found"}));
        };
        if body["text"].as_str().is_none() || body["model_id"].as_str().is_none() {
            return error(422, json!({"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "value_error.missing"}]}));
        }
        if voice != "JBFqnCBsd6RMkjVDRZzb" {
            return error(404, json!({"detail": {"status": "voice_not_found", "message": format!("A voice with the voice_id {voice} was not found.")}}));
        }
        if n == 0 {
            return error(429, json!({"detail": {"status": "too_many_concurrent_requests", "message": "Too many concurrent requests."}}));
        }
        match r.query_param("output_format").as_deref() {
            Some("mp3_44100_128") => SpeechAnswer::audio("audio/mpeg", MP3)
                .streamed(417, Duration::from_millis(5)),
            _ => error(400, json!({"detail": {"status": "invalid_output_format"}})),
        }
    })
    .await
    .expect("mock");
    let settings = format!(
        "base_url: {}\napi_key_env: VTUBER_TEST_TTS_KEY\nmodel_id: eleven_flash_v2_5\noutput_format: mp3_44100_128",
        mock.url()
    );
    let daemon = engine_daemon("elevenlabs", &settings, "JBFqnCBsd6RMkjVDRZzb");
    let pcm = speak(&daemon, TEXT).await.expect("speaks");
    assert_is_the_mp3(&pcm);
    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "one 429, one retry");
    let body = requests[1].json();
    assert_eq!(body["text"], TEXT);
    assert_eq!(body["model_id"], "eleven_flash_v2_5");
    assert_eq!(requests[1].header("accept"), Some("audio/mpeg"));

    // A voice the account does not have: the error names the engine and the cause.
    let wrong = engine_daemon(
        "elevenlabs",
        &format!("base_url: {}\napi_key_env: VTUBER_TEST_TTS_KEY", mock.url()),
        "nobody",
    );
    let err = speak(&wrong, TEXT).await.expect_err("fails");
    assert!(
        err.contains("ElevenLabs") && err.contains("voice_not_found") && err.contains("404"),
        "{err}"
    );
    assert_key_not_logged(&daemon);
    assert_key_not_logged(&wrong);
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_speaks_ssml_as_raw_pcm_and_says_which_key_is_missing() {
    let mock = MockSpeech::start(|r| {
        if r.path != "/cognitiveservices/v1" || r.method != "POST" {
            return SpeechAnswer::new(404, "text/plain", "");
        }
        if r.header("ocp-apim-subscription-key") != Some(SECRET) {
            // Azure answers 401 with an empty body.
            return SpeechAnswer::new(401, "text/plain", "");
        }
        let ssml = r.text();
        if r.header("content-type") != Some("application/ssml+xml")
            || !ssml.contains("<voice name='en-GB-SoniaNeural'>")
            || !ssml.contains("xml:lang='en-GB'")
        {
            return SpeechAnswer::new(400, "text/plain", "");
        }
        match r.header("x-microsoft-outputformat") {
            Some("raw-16khz-16bit-mono-pcm") => {
                SpeechAnswer::audio("audio/x-wav", raw16(&tone(16_000)))
            }
            Some("riff-24khz-16bit-mono-pcm") => {
                SpeechAnswer::audio("audio/x-wav", tone(24_000).to_wav())
            }
            _ => SpeechAnswer::new(400, "text/plain", ""),
        }
    })
    .await
    .expect("mock");
    let daemon = engine_daemon(
        "azure",
        &format!(
            "base_url: {}\napi_key_env: VTUBER_TEST_TTS_KEY\noutput_format: raw-16khz-16bit-mono-pcm",
            mock.url()
        ),
        "en-GB-SoniaNeural",
    );
    assert_is_tone(
        &speak(&daemon, "Tom & Jerry <3").await.expect("speaks"),
        16_000,
    );
    let ssml = mock.requests()[0].text();
    assert!(ssml.contains("Tom &amp; Jerry"), "{ssml}");

    // No key in the environment: said before anything is sent.
    let keyless = engine_daemon(
        "azure",
        &format!(
            "base_url: {}\napi_key_env: VTUBER_TEST_UNSET_KEY",
            mock.url()
        ),
        "en-GB-SoniaNeural",
    );
    let err = speak(&keyless, TEXT).await.expect_err("fails");
    assert!(
        err.contains("Azure Speech") && err.contains("VTUBER_TEST_UNSET_KEY"),
        "{err}"
    );
    assert_eq!(mock.requests().len(), 1);
    assert_key_not_logged(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn gpt_sovits_sends_reference_audio_fields_and_reads_streamed_wav() {
    let mock = MockSpeech::start(|r| {
        let b = r.json();
        if r.path != "/tts" {
            return error(404, json!({"detail": "Not Found"}));
        }
        let Some(ref_audio) = b["ref_audio_path"].as_str().filter(|s| !s.is_empty()) else {
            return error(400, json!({"message": "ref_audio_path is required"}));
        };
        if ref_audio != "/refs/alice.wav" || b["text"].as_str().is_none() {
            return error(
                400,
                json!({"message": "tts failed", "Exception": "file not found"}),
            );
        }
        // As api_v2 streams: a WAV header with unknown lengths, then the samples.
        let mut wav = tone(32_000).to_wav();
        wav[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        SpeechAnswer::audio("audio/wav", wav).streamed(4096, Duration::from_millis(2))
    })
    .await
    .expect("mock");
    let daemon = engine_daemon(
        "gpt_sovits",
        &format!(
            "base_url: {}\ntext_lang: en\nprompt_text: Hi, I am Alice.\nprompt_lang: en\nstreaming_mode: true",
            mock.url()
        ),
        "/refs/alice.wav",
    );
    assert_is_tone(&speak(&daemon, TEXT).await.expect("speaks"), 32_000);
    let b = mock.requests()[0].json();
    assert_eq!(b["text"], TEXT);
    assert_eq!(b["text_lang"], "en");
    assert_eq!(b["prompt_text"], "Hi, I am Alice.");
    assert_eq!(b["prompt_lang"], "en");
    assert_eq!(b["media_type"], "wav");
    assert_eq!(b["streaming_mode"], true);

    let wrong = engine_daemon(
        "gpt_sovits",
        &format!("base_url: {}", mock.url()),
        "/refs/bob.wav",
    );
    let err = speak(&wrong, TEXT).await.expect_err("fails");
    assert!(
        err.contains("GPT-SoVITS") && err.contains("file not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fish_audio_sends_the_reference_voice_and_model_header() {
    let mock = MockSpeech::start(|r| {
        if r.path != "/v1/tts" {
            return error(404, json!({"status": 404, "message": "Not Found"}));
        }
        if !bearer_ok(r) {
            return error(401, json!({"status": 401, "message": "Invalid token"}));
        }
        let b = r.json();
        if r.header("model") != Some("s1")
            || b["reference_id"] != "7f92f8afb8ec43bf81429cc1c9199cb1"
        {
            return error(
                422,
                json!({"status": 422, "message": "invalid model or reference"}),
            );
        }
        match b["format"].as_str() {
            Some("mp3") => SpeechAnswer::audio("audio/mpeg", MP3).streamed(1000, Duration::ZERO),
            _ => error(422, json!({"status": 422, "message": "bad format"})),
        }
    })
    .await
    .expect("mock");
    let daemon = engine_daemon(
        "fish_audio",
        &format!("base_url: {}\napi_key_env: VTUBER_TEST_TTS_KEY", mock.url()),
        "7f92f8afb8ec43bf81429cc1c9199cb1",
    );
    assert_is_the_mp3(&speak(&daemon, TEXT).await.expect("speaks"));
    assert_eq!(mock.requests()[0].json()["text"], TEXT);
    assert_key_not_logged(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn siliconflow_names_voices_model_colon_voice_and_reports_its_error_body() {
    let mock = MockSpeech::start(|r| {
        if r.path != "/v1/audio/speech" {
            return error(404, json!({"code": 404, "message": "Not Found", "data": null}));
        }
        if !bearer_ok(r) {
            return error(401, json!({"code": 20001, "message": "Invalid token", "data": null}));
        }
        let b = r.json();
        if b["model"] != "FunAudioLLM/CosyVoice2-0.5B" {
            return error(400, json!({"code": 20012, "message": "Model does not exist. Please check it carefully.", "data": null}));
        }
        if b["voice"] != "FunAudioLLM/CosyVoice2-0.5B:alex" || b["input"].as_str().is_none() {
            return error(400, json!({"code": 20015, "message": "voice not found", "data": null}));
        }
        match (b["response_format"].as_str(), b["sample_rate"].as_u64()) {
            (Some("pcm"), Some(24_000)) => {
                SpeechAnswer::audio("audio/pcm", raw16(&tone(24_000)))
            }
            _ => error(400, json!({"code": 20015, "message": "bad format", "data": null})),
        }
    })
    .await
    .expect("mock");
    let daemon = engine_daemon(
        "siliconflow",
        &format!(
            "base_url: {}/v1\napi_key_env: VTUBER_TEST_TTS_KEY\nresponse_format: pcm\nsample_rate: 24000",
            mock.url()
        ),
        "alex",
    );
    assert_is_tone(&speak(&daemon, TEXT).await.expect("speaks"), 24_000);

    let wrong = engine_daemon(
        "siliconflow",
        &format!(
            "base_url: {}/v1\napi_key_env: VTUBER_TEST_TTS_KEY\nmodel: no/such-model",
            mock.url()
        ),
        "alex",
    );
    let err = speak(&wrong, TEXT).await.expect_err("fails");
    assert!(
        err.contains("SiliconFlow") && err.contains("Model does not exist"),
        "{err}"
    );
    assert_key_not_logged(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn minimax_decodes_hex_audio_and_retries_its_rate_limit_code() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mock = MockSpeech::start(move |r| {
        if r.path != "/v1/t2a_v2" {
            return error(404, json!({"base_resp": {"status_code": 404, "status_msg": "not found"}}));
        }
        if !bearer_ok(r) || r.query_param("GroupId").as_deref() != Some("1888") {
            // MiniMax reports failures in base_resp with HTTP 200.
            return error(200, json!({"base_resp": {"status_code": 1004, "status_msg": "login fail: Please carry the API secret key in the 'Authorization' field of the request header"}}));
        }
        let b = r.json();
        if b["voice_setting"]["voice_id"] != "female-shaonv"
            || b["audio_setting"]["format"] != "mp3"
            || b["text"].as_str().is_none()
        {
            return error(200, json!({"base_resp": {"status_code": 2013, "status_msg": "invalid params"}}));
        }
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            return error(200, json!({"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}));
        }
        let hex: String = MP3.iter().map(|b| format!("{b:02x}")).collect();
        error(200, json!({
            "data": {"audio": hex, "status": 2},
            "extra_info": {"audio_format": "mp3", "audio_sample_rate": 24000, "audio_channel": 1},
            "trace_id": "0123",
            "base_resp": {"status_code": 0, "status_msg": "success"},
        }))
    })
    .await
    .expect("mock");
    let daemon = engine_daemon(
        "minimax",
        &format!(
            "base_url: {}\napi_key_env: VTUBER_TEST_TTS_KEY\ngroup_id: \"1888\"",
            mock.url()
        ),
        "female-shaonv",
    );
    assert_is_the_mp3(&speak(&daemon, TEXT).await.expect("speaks"));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one rate limit, one retry");

    let wrong = engine_daemon(
        "minimax",
        &format!("base_url: {}\napi_key_env: VTUBER_TEST_TTS_KEY", mock.url()),
        "female-shaonv",
    );
    let err = speak(&wrong, TEXT).await.expect_err("fails");
    assert!(
        err.contains("MiniMax") && err.contains("1004") && err.contains("group_id"),
        "{err}"
    );
    assert_key_not_logged(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn cosyvoice_posts_form_fields_and_reads_streamed_raw_pcm() {
    let mock = MockSpeech::start(|r| {
        let form = r.text();
        let multipart = r
            .header("content-type")
            .is_some_and(|c| c.starts_with("multipart/form-data"));
        if r.path != "/inference_sft" || !multipart {
            return error(404, json!({"detail": "Not Found"}));
        }
        if !form.contains("name=\"tts_text\"") || !form.contains("name=\"spk_id\"") {
            return error(
                422,
                json!({"detail": [{"loc": ["body", "spk_id"], "msg": "field required"}]}),
            );
        }
        if !form.contains("英文女") || !form.contains(TEXT) {
            return error(422, json!({"detail": "unexpected fields"}));
        }
        SpeechAnswer::audio("application/octet-stream", raw16(&tone(22_050)))
            .streamed(2205, Duration::from_millis(2))
    })
    .await
    .expect("mock");
    let daemon = engine_daemon("cosyvoice", &format!("base_url: {}", mock.url()), "");
    assert_is_tone(&speak(&daemon, TEXT).await.expect("speaks"), 22_050);
    assert_eq!(mock.requests().len(), 1);
}

/// A daemon recognizing speech with `backend`, `settings` under `speech.asr.<backend>`,
/// talking to `llm` (the transcript starts a turn).
fn asr_daemon(llm: &MockLlm, backend: &str, settings: &str) -> TestDaemon {
    let settings: String = settings.lines().map(|l| format!("      {l}\n")).collect();
    let config = format!(
        "{}speech:\n  enabled: true\n  asr:\n    backend: {backend}\n    language: en\n    {backend}:\n{settings}audio:\n  input: none\n  output: none\n  playback: clients\n",
        openai_config(&llm.base_url())
    );
    let mut daemon = TestDaemon::new(&config).expect("daemon home");
    daemon
        .extra_env
        .push(("VTUBER_TEST_ASR_KEY".into(), SECRET.into()));
    daemon.start().expect("daemon starts");
    daemon
}

/// `vtuber listen FILE` on a tone at 22.05 kHz: what the user was heard saying (stderr)
/// and the reply (stdout).
async fn listen(daemon: &TestDaemon) -> std::process::Output {
    let wav = daemon.dir.path().join("question.wav");
    std::fs::write(&wav, tone(22_050).to_wav()).expect("wav");
    let mut cmd = daemon.vtuber();
    cmd.arg("listen").arg(&wav);
    run(cmd).await
}

/// The body is a 16 kHz mono 16-bit WAV of about half a second.
fn is_16k_wav(body: &[u8]) -> bool {
    Pcm::from_wav(body)
        .is_ok_and(|p| p.sample_rate == 16_000 && (0.45..0.55).contains(&p.duration_secs()))
}

#[tokio::test(flavor = "multi_thread")]
async fn deepgram_hears_the_transcript_of_its_first_alternative() {
    let llm = MockLlm::start(MockBehaviour::echo_last_user())
        .await
        .expect("mock LLM");
    let mock = MockSpeech::start(|r| {
        if r.path != "/v1/listen" || r.method != "POST" {
            return error(404, json!({"err_code": "NOT_FOUND", "err_msg": "Not found"}));
        }
        if r.header("authorization") != Some(&format!("Token {SECRET}")) {
            return error(401, json!({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "r1"}));
        }
        if r.query_param("model").as_deref() != Some("nova-3")
            || r.header("content-type") != Some("audio/wav")
            || !is_16k_wav(&r.body)
        {
            return error(400, json!({"err_code": "Bad Request", "err_msg": "bad audio or model"}));
        }
        error(200, json!({
            "metadata": {"request_id": "r2", "duration": 0.5, "channels": 1},
            "results": {"channels": [{"alternatives": [
                {"transcript": "What is the weather in Paris?", "confidence": 0.98, "words": []},
                {"transcript": "not this one", "confidence": 0.1, "words": []},
            ]}]},
        }))
    })
    .await
    .expect("mock");
    let daemon = asr_daemon(
        &llm,
        "deepgram",
        &format!("base_url: {}\napi_key_env: VTUBER_TEST_ASR_KEY", mock.url()),
    );
    let out = listen(&daemon).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("What is the weather in Paris?"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("Paris"), "{}", stdout(&out));
    assert_eq!(
        mock.requests()[0].query_param("language").as_deref(),
        Some("en")
    );

    let wrong = asr_daemon(
        &llm,
        "deepgram",
        &format!(
            "base_url: {}\napi_key_env: VTUBER_TEST_UNSET_KEY",
            mock.url()
        ),
    );
    let out = listen(&wrong).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Deepgram") && stderr(&out).contains("VTUBER_TEST_UNSET_KEY"),
        "{}",
        stderr(&out)
    );
    assert_key_not_logged(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_short_audio_recognition_reads_display_text_and_no_match() {
    let llm = MockLlm::start(MockBehaviour::echo_last_user())
        .await
        .expect("mock LLM");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mock = MockSpeech::start(move |r| {
        if r.path != "/speech/recognition/conversation/cognitiveservices/v1" {
            return SpeechAnswer::new(404, "text/plain", "");
        }
        if r.header("ocp-apim-subscription-key") != Some(SECRET) {
            return SpeechAnswer::new(401, "text/plain", "");
        }
        if r.query_param("language").as_deref() != Some("en-GB")
            || r.query_param("format").as_deref() != Some("simple")
            || !r
                .header("content-type")
                .is_some_and(|c| c.starts_with("audio/wav") && c.contains("samplerate=16000"))
            || !is_16k_wav(&r.body)
        {
            return SpeechAnswer::new(400, "text/plain", "");
        }
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            error(200, json!({"RecognitionStatus": "Success", "DisplayText": "Good morning.", "Offset": 0, "Duration": 5000000}))
        } else {
            error(200, json!({"RecognitionStatus": "NoMatch", "Offset": 0, "Duration": 0}))
        }
    })
    .await
    .expect("mock");
    let daemon = asr_daemon(
        &llm,
        "azure",
        &format!(
            "base_url: {}\napi_key_env: VTUBER_TEST_ASR_KEY\nlanguage: en-GB",
            mock.url()
        ),
    );
    let out = listen(&daemon).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Good morning."), "{}", stderr(&out));
    // NoMatch: nothing was said, and no turn is started for it.
    let out = listen(&daemon).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing intelligible"),
        "{}",
        stderr(&out)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(llm.requests().len(), 1, "one turn, for the first utterance");
    assert_key_not_logged(&daemon);
}

/// Collects one turn's `sentence` events (whether each carried audio) until speech ends.
async fn sentences_of_turn(c: &mut TestClient, turn_id: u64) -> Vec<bool> {
    let mut with_audio = Vec::new();
    loop {
        match c
            .next_event(Duration::from_secs(30))
            .await
            .expect("event")
            .1
        {
            Event::Sentence {
                turn_id: id, audio, ..
            } if id == turn_id => with_audio.push(audio.is_some()),
            Event::SpeechFinished { turn_id: id, .. } if id == turn_id => return with_audio,
            _ => {}
        }
    }
}

/// With no speaker and no client that plays audio, a reply is text only and nothing is
/// synthesized (synthesis would only take CPU from the model); once a client that plays
/// audio is attached, replies are spoken again, and when it leaves they are text only.
#[tokio::test(flavor = "multi_thread")]
async fn replies_are_spoken_only_while_someone_listens() {
    let tts = MockSpeech::start(|_| SpeechAnswer::audio("audio/wav", tone(16_000).to_wav()))
        .await
        .expect("mock TTS");
    let llm = MockLlm::start(MockBehaviour::reply("Hello there. How are you today?"))
        .await
        .expect("mock LLM");
    let config = format!(
        "{}character:\n  default: tester\nspeech:\n  enabled: true\n  tts:\n    base_url: {}/v1\naudio:\n  input: none\n  output: none\n  playback: clients\n",
        openai_config(&llm.base_url()),
        tts.url()
    );
    let mut daemon = TestDaemon::new(&config).expect("daemon home");
    std::fs::write(
        daemon.dir.path().join("config/vtuber/characters/tester.toml"),
        "name = \"Tester\"\npersona = \"You test.\"\n\n[voice]\ntts = \"openai\"\nvoice = \"alloy\"\n",
    )
    .expect("character file");
    daemon.start().expect("daemon starts");

    // What `vtuber chat` is: a client that shows text only.
    let mut text = TestClient::connect_with(&daemon.socket, Hello::new("chat", true).text_only())
        .await
        .expect("text client");
    let turn = text.send_text("hi").await.expect("turn");
    let spoken = sentences_of_turn(&mut text, turn).await;
    assert_eq!(spoken, [false, false], "text only: {spoken:?}");
    assert_eq!(tts.requests().len(), 0, "nothing synthesized");

    // A client that plays audio (the default, as the web page does).
    let listener = TestClient::connect(&daemon.socket, "player", true)
        .await
        .expect("listening client");
    let turn = text.send_text("again").await.expect("turn");
    let spoken = sentences_of_turn(&mut text, turn).await;
    assert_eq!(spoken, [true, true], "spoken for the listener: {spoken:?}");
    assert_eq!(tts.requests().len(), 2, "both sentences synthesized");

    drop(listener);
    // The daemon counts the listener out when it sees the connection close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let turn = text.send_text("and again").await.expect("turn");
        let spoken = sentences_of_turn(&mut text, turn).await;
        if spoken == [false, false] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still spoken after the listener left: {spoken:?}"
        );
    }
}
