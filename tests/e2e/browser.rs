//! The avatar page in a real browser: headless Chromium (the system's, driven by
//! Playwright from `tests/browser`) loads the page from a real daemon, sends a message,
//! and checks subtitles, the chat log, a drawn avatar and a mouth that moves with the
//! speech. The terminal side sees the same turn. The page is opened at the address
//! `vtuber web url` prints, with its access token: the checks include that the page
//! without it says so, that the token leaves the address for an HttpOnly cookie, and
//! that a `#token=` address works too. Screenshots are kept in
//! `target/test-artifacts/browser/`.
//!
//! Needs what `scripts/setup.sh --for-tests` installs: node modules in `tests/browser`,
//! chromium, the web assets and the models.

use std::path::PathBuf;

use crate::common::*;
use vtuber_shared::Event;
use vtuber_test_support::daemon::{TestDaemon, link_models};
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm, MockReply};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The installed web assets (Live2D runtime, pixi, Shizuku) of this machine.
fn assets_dir() -> PathBuf {
    let data = std::env::var_os("VTUBER_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(vtuber_shared::paths::data_dir);
    data.join("web")
}

/// The page's address as a user gets it: `vtuber web url`, once the page is served.
async fn printed_url(daemon: &TestDaemon) -> String {
    let from_status = web_url(daemon).await;
    let mut cmd = daemon.vtuber();
    cmd.args(["web", "url"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "vtuber web url: {}", stderr(&out));
    let url = stdout(&out).trim().to_owned();
    assert_eq!(url, from_status);
    assert!(url.contains("/?token="), "{url}");
    url
}

async fn run_page_check(url: &str, out: &std::path::Path, live2d: bool) -> serde_json::Value {
    let script = repo_root().join("tests/browser/check-page.mjs");
    assert!(
        repo_root()
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "tests/browser/node_modules is missing: run scripts/setup.sh --for-tests"
    );
    let mut cmd = std::process::Command::new("node");
    cmd.arg(&script)
        .args([
            "--url",
            url,
            "--text",
            "Hello avatar, say something!",
            "--out",
        ])
        .arg(out)
        .args(["--timeout", "90"]);
    if live2d {
        cmd.arg("--expect-live2d");
    }
    let output = run(cmd).await;
    let text = stdout(&output);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
    let result: serde_json::Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON result from check-page.mjs\nstdout: {text}\nstderr: {}",
                stderr(&output)
            )
        });
    assert!(
        output.status.success() && result["ok"] == true,
        "browser checks failed: {result:#}\nstderr: {}",
        stderr(&output)
    );
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn the_avatar_page_speaks_and_lip_syncs_in_a_real_browser() {
    let reply = "[joy] Hello from the daemon! I can talk, and my mouth moves while I speak.";
    let mock = MockLlm::start(MockBehaviour::Reply(MockReply::text(reply).with_rate(40.0)))
        .await
        .expect("mock");
    let assets = assets_dir();
    let live2d = assets.join("libs/live2d.core.js").exists();
    assert!(
        live2d,
        "{} is missing: run scripts/setup.sh (scripts/fetch-web-assets.sh)",
        assets.display()
    );
    let config = format!(
        "{}character:\n  default: mao\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: none\n  playback: clients\nweb:\n  port: 0\n  assets_dir: {}\n",
        openai_config(&mock.base_url()),
        assets.display()
    );
    let mut daemon = TestDaemon::new(&config).expect("home");
    link_models(&daemon.models_dir()).expect("models (run scripts/setup.sh)");
    daemon.start().expect("daemon starts");
    // The terminal side watches the same stage.
    let mut tui = daemon.client("tui").await.expect("client");
    let url = printed_url(&daemon).await;
    let out = repo_root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&out).expect("artefact dir");
    let result = run_page_check(&url, &out, true).await;
    assert_eq!(result["live2d"], true, "{result:#}");
    for check in [
        "refused_without_token",
        "token_left_the_address",
        "cookie_hidden_from_scripts",
        "hash_token",
    ] {
        assert_eq!(result["checks"][check], true, "{check}: {result:#}");
    }
    assert!(
        result["mouth_max"].as_f64().unwrap_or(0.0) > 0.1,
        "{result:#}"
    );
    assert!(out.join("page.png").exists());

    // The page's text went through the same stage the terminal sees.
    let events = tui
        .events_until(WAIT, |e| matches!(e, Event::TurnEnded { .. }))
        .await
        .expect("turn seen by the terminal client");
    let started = events.iter().find_map(|(_, e)| match e {
        Event::TurnStarted { text, origin, .. } => Some((text.clone(), origin.clone())),
        _ => None,
    });
    let (text, origin) = started.expect("turn_started");
    assert_eq!(text, "Hello avatar, say something!");
    assert!(origin.starts_with("web"), "{origin}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_live2d_runtime_the_page_draws_its_own_avatar() {
    let reply = "Hello! Even without Live2D I have a face, and it talks.";
    let mock = MockLlm::start(MockBehaviour::Reply(MockReply::text(reply).with_rate(40.0)))
        .await
        .expect("mock");
    let empty_assets = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{}character:\n  default: sage\nspeech:\n  enabled: true\naudio:\n  input: none\n  output: none\n  playback: clients\nweb:\n  port: 0\n  assets_dir: {}\n",
        openai_config(&mock.base_url()),
        empty_assets.path().display()
    );
    let mut daemon = TestDaemon::new(&config).expect("home");
    link_models(&daemon.models_dir()).expect("models (run scripts/setup.sh)");
    daemon.start().expect("daemon starts");
    let url = printed_url(&daemon).await;
    let out = repo_root().join("target/test-artifacts/browser-fallback");
    std::fs::create_dir_all(&out).expect("artefact dir");
    let result = run_page_check(&url, &out, false).await;
    assert_eq!(result["live2d"], false, "{result:#}");
}
