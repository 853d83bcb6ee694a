//! Helpers shared by the end-to-end test files.

use std::time::Duration;

use vtuber_test_support::daemon::TestDaemon;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm};

pub const WAIT: Duration = Duration::from_secs(30);

/// The documented minimal config that points the character at an OpenAI-compatible server.
pub fn openai_config(base_url: &str) -> String {
    format!(
        "llm:\n  provider: openai_compatible\n  base_url: {base_url}\n  model: mock-model\n  timeout_secs: 10\n  retries: 0\n"
    )
}

/// A mock LLM and a daemon pointed at it.
pub fn daemon_with_mock(behaviour: MockBehaviour) -> (MockLlm, TestDaemon) {
    let mock = MockLlm::start_blocking(behaviour).expect("mock LLM starts");
    let daemon = TestDaemon::spawn(&openai_config(&mock.base_url())).expect("daemon starts");
    (mock, daemon)
}

/// Runs a `vtuber` command to completion off the async runtime.
pub async fn run(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("command runs"))
        .await
        .expect("join")
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The page's address from a daemon's status, as a user gets it:
/// `http://127.0.0.1:PORT/?token=...` (no token with `web.auth: none`).
pub async fn web_url(daemon: &TestDaemon) -> String {
    let mut c = daemon.client("e2e-status").await.expect("client");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(vtuber_shared::Reply::Status(s)) = c
            .request(vtuber_shared::Request::Status)
            .await
            .expect("status")
            && let Some(url) = s.web_url
        {
            return url;
        }
        assert!(std::time::Instant::now() < deadline, "no web_url in status");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stored messages of conversation `id` (its first page).
pub async fn conversation_messages(
    client: &mut vtuber_test_support::daemon::TestClient,
    id: i64,
) -> Vec<vtuber_shared::StoredMessage> {
    let request = vtuber_shared::Request::GetConversation { id, page: None };
    match client.request(request).await.expect("get_conversation") {
        Ok(vtuber_shared::Reply::Conversation { messages, .. }) => messages,
        other => panic!("no conversation {id}: {other:?}"),
    }
}
