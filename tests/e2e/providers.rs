//! The native LLM providers (Anthropic, Gemini, Ollama) through the real daemon, against
//! the mock server speaking each vendor's wire format: a streamed turn, a tool round on
//! the test MCP server, and a retry after HTTP 429 with `retry-after`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vtuber_test_support::mcp::{McpConfig, McpDaemon, ServerSpec, call, tool_script};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, RecordedRequest};

use crate::common::{WAIT, run, stderr, stdout};

const KEY_VAR: &str = "VTUBER_E2E_VENDOR_KEY";
const KEY: &str = "e2e-vendor-key-0123456789";

/// The `llm:` section for `provider` at the mock.
fn llm_section(provider: &str, mock: &MockLlm, retries: u32) -> Value {
    json!({
        "provider": provider,
        // OpenAI-compatible servers are configured up to `/v1`, the others at the root.
        "base_url": if provider == "openai_compatible" { mock.base_url() } else { mock.root_url() },
        "model": "mock-model",
        "api_key_env": KEY_VAR,
        "timeout_secs": 10,
        "retries": retries,
    })
}

/// A daemon using `provider` at a mock with `behaviour`, and `servers` as MCP servers.
async fn setup(
    provider: &str,
    behaviour: MockBehaviour,
    servers: Vec<ServerSpec>,
    retries: u32,
) -> (MockLlm, McpDaemon) {
    let mock = MockLlm::start_blocking(behaviour).expect("mock LLM starts");
    let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
    let mut config = McpConfig::new(&mock.base_url(), servers);
    config
        .extra
        .insert("llm".into(), llm_section(provider, &mock, retries));
    let daemon = McpDaemon::spawn(&config.to_yaml(), &[(KEY_VAR, KEY)]).expect("daemon starts");
    if !names.is_empty() {
        let mut client = daemon.client("providers").await.expect("client");
        for name in names {
            if let Err(e) = client.wait_server_ready(&name, WAIT).await {
                panic!("{e:#}\n--- daemon log ---\n{}", daemon.log_text());
            }
        }
    }
    (mock, daemon)
}

/// `vtuber say text`; its stdout.
async fn say(daemon: &McpDaemon, text: &str) -> String {
    say_args(daemon, &["say".as_ref(), text.as_ref()]).await
}

/// `vtuber ARGS` (a `say`); its stdout.
async fn say_args(daemon: &McpDaemon, args: &[&std::ffi::OsStr]) -> String {
    let mut cmd = daemon.daemon.vtuber();
    cmd.args(args);
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "stderr: {}\n--- daemon log ---\n{}",
        stderr(&out),
        daemon.log_text()
    );
    stdout(&out).trim_end().to_owned()
}

/// A 1×1 PNG.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// `vtuber say --image a.png "what is this?"` reaches the mock; `check` gets the user
/// message of the request and the base64 picture the daemon made (JPEG or PNG).
async fn image_turn(provider: &str, check: fn(&Value)) {
    use base64::Engine as _;
    let (mock, daemon) = setup(provider, MockBehaviour::reply("A dot."), Vec::new(), 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a.png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_1X1)
        .expect("test PNG");
    std::fs::write(&file, png).expect("write test PNG");
    let args = [
        "say".as_ref(),
        "--image".as_ref(),
        file.as_os_str(),
        "what is this?".as_ref(),
    ];
    assert_eq!(say_args(&daemon, &args).await, "A dot.");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    // Gemini calls them contents.
    let list = match reqs[0].body["contents"].as_array() {
        Some(contents) => contents.as_slice(),
        None => reqs[0].messages(),
    };
    let user = list
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .cloned()
        .expect("a user message");
    check(&user);
}

/// Whether `b64` is a picture the daemon re-encoded (JPEG or PNG, base64).
fn is_reencoded(b64: &Value) -> bool {
    b64.as_str()
        .is_some_and(|s| s.starts_with("/9j/") || s.starts_with("iVBORw0KGgo"))
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_compatible_gets_an_image_url_part() {
    image_turn("openai_compatible", |user| {
        assert_eq!(user["content"][0]["type"], "text", "{user:#}");
        assert_eq!(user["content"][0]["text"], "what is this?");
        assert_eq!(user["content"][1]["type"], "image_url");
        let url = user["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap_or("");
        let (head, data) = url.split_once(',').unwrap_or_default();
        assert!(
            head.starts_with("data:image/") && head.ends_with(";base64"),
            "{url}"
        );
        assert!(is_reencoded(&json!(data)), "{url}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_gets_a_base64_image_block() {
    image_turn("anthropic", |user| {
        let image = &user["content"][0];
        assert_eq!(image["type"], "image", "{user:#}");
        assert_eq!(image["source"]["type"], "base64");
        assert!(
            image["source"]["media_type"]
                .as_str()
                .unwrap_or("")
                .starts_with("image/")
        );
        assert!(is_reencoded(&image["source"]["data"]), "{user:#}");
        assert_eq!(user["content"][1]["text"], "what is this?");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_gets_inline_data() {
    image_turn("gemini", |user| {
        assert_eq!(user["parts"][0]["text"], "what is this?", "{user:#}");
        let inline = &user["parts"][1]["inlineData"];
        assert!(
            inline["mimeType"]
                .as_str()
                .unwrap_or("")
                .starts_with("image/")
        );
        assert!(is_reencoded(&inline["data"]), "{user:#}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_gets_an_images_list() {
    image_turn("ollama", |user| {
        assert_eq!(user["content"], "what is this?", "{user:#}");
        assert!(is_reencoded(&user["images"][0]), "{user:#}");
    })
    .await;
}

/// A streamed turn reaches the client, and the request went where the vendor wants it.
async fn streamed_turn(provider: &str, check: fn(&RecordedRequest)) {
    let (mock, daemon) = setup(
        provider,
        MockBehaviour::reply("Hello from a native API!"),
        Vec::new(),
        0,
    )
    .await;
    assert_eq!(say(&daemon, "hi there").await, "Hello from a native API!");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    check(&reqs[0]);
    assert!(!daemon.log_text().contains(KEY), "the key reached the log");
}

/// The model asks for `test__add`, the daemon runs it, and the second request carries
/// the result; `result_of` finds it in the vendor's format.
async fn tool_round(provider: &str, result_of: fn(&RecordedRequest) -> String) {
    let (mock, daemon) = setup(
        provider,
        tool_script(
            vec![call("c1", "test__add", json!({"a": 2, "b": 3}))],
            "Two plus three is five.",
        ),
        vec![ServerSpec::test_server()],
        0,
    )
    .await;
    assert_eq!(
        say(&daemon, "what is 2 + 3?").await,
        "Two plus three is five."
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "one request per step");
    assert_eq!(result_of(&reqs[1]).trim(), "5", "{:#}", reqs[1].body);
}

/// HTTP 429 with `retry-after: 1`, then a reply: the daemon waits and retries.
async fn retry_after_429(provider: &str) {
    let (mock, daemon) = setup(
        provider,
        MockBehaviour::Script(vec![
            MockBehaviour::RetryAfter {
                status: 429,
                secs: 1,
            },
            MockBehaviour::reply("Worth the wait."),
        ]),
        Vec::new(),
        2,
    )
    .await;
    let started = Instant::now();
    assert_eq!(say(&daemon, "hello?").await, "Worth the wait.");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(mock.request_count(), 2);
}

// ----- Anthropic -----

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_streams_a_turn() {
    streamed_turn("anthropic", |req| {
        assert_eq!(req.path, "/v1/messages");
        assert_eq!(req.header("x-api-key"), Some(KEY));
        assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
        assert!(req.body["system"][0]["text"].is_string(), "{:#}", req.body);
        let last = &req.body["messages"][req.messages().len() - 1];
        assert!(last["content"].is_array(), "content is blocks: {last:#}");
        assert_eq!(last["content"][0]["text"], "hi there");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_tool_round() {
    tool_round("anthropic", |req| {
        let msgs = req.messages();
        let call = &msgs[msgs.len() - 2];
        assert_eq!(call["role"], "assistant");
        assert!(
            call["content"].as_array().is_some_and(|blocks| blocks
                .iter()
                .any(|b| b["type"] == "tool_use"
                    && b["id"] == "c1"
                    && b["input"] == json!({"a": 2, "b": 3}))),
            "{call:#}"
        );
        let result = &msgs[msgs.len() - 1];
        assert_eq!(result["role"], "user");
        let block = &result["content"][0];
        assert_eq!(block["type"], "tool_result");
        assert_eq!(block["tool_use_id"], "c1");
        block["content"].as_str().unwrap_or_default().to_owned()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_retries_after_429() {
    retry_after_429("anthropic").await;
}

// ----- Gemini -----

#[tokio::test(flavor = "multi_thread")]
async fn gemini_streams_a_turn() {
    streamed_turn("gemini", |req| {
        assert_eq!(req.path, "/v1beta/models/mock-model:streamGenerateContent");
        assert_eq!(req.header("x-goog-api-key"), Some(KEY));
        assert!(
            req.body["systemInstruction"]["parts"][0]["text"].is_string(),
            "{:#}",
            req.body
        );
        let contents = req.body["contents"].as_array().cloned().unwrap_or_default();
        let last = contents.last().cloned().unwrap_or_default();
        assert_eq!(last["role"], "user");
        assert_eq!(last["parts"][0]["text"], "hi there");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_tool_round() {
    tool_round("gemini", |req| {
        let contents = req.body["contents"].as_array().cloned().unwrap_or_default();
        let call = &contents[contents.len() - 2];
        assert_eq!(call["role"], "model");
        assert_eq!(call["parts"][0]["functionCall"]["name"], "test__add");
        assert_eq!(
            call["parts"][0]["functionCall"]["args"],
            json!({"a": 2, "b": 3})
        );
        let result = &contents[contents.len() - 1];
        assert_eq!(result["role"], "user");
        let response = &result["parts"][0]["functionResponse"];
        assert_eq!(response["name"], "test__add");
        response["response"]["result"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_retries_after_429() {
    retry_after_429("gemini").await;
}

// ----- Ollama -----

#[tokio::test(flavor = "multi_thread")]
async fn ollama_streams_a_turn() {
    streamed_turn("ollama", |req| {
        assert_eq!(req.path, "/api/chat");
        assert_eq!(req.body["stream"], true);
        assert_eq!(req.body["options"]["num_ctx"], 4096);
        assert_eq!(req.messages()[0]["role"], "system");
        assert_eq!(req.last_user_message(), Some("hi there"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_tool_round() {
    tool_round("ollama", |req| {
        let msgs = req.messages();
        let call = &msgs[msgs.len() - 2];
        assert_eq!(call["role"], "assistant");
        assert_eq!(call["tool_calls"][0]["function"]["name"], "test__add");
        assert_eq!(
            call["tool_calls"][0]["function"]["arguments"],
            json!({"a": 2, "b": 3})
        );
        let result = &msgs[msgs.len() - 1];
        assert_eq!(result["role"], "tool");
        assert_eq!(result["tool_name"], "test__add");
        result["content"].as_str().unwrap_or_default().to_owned()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_retries_after_429() {
    retry_after_429("ollama").await;
}
