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

/// The Cubism 3/4 assets (`scripts/fetch-web-assets.sh`: Cubism Core, the plugin's
/// Cubism 4 build, the Haru sample), or `None` with the reason printed when this machine
/// lacks them. In CI (`CI` set) they must be there.
fn cubism4_assets() -> Option<PathBuf> {
    let assets = assets_dir();
    let missing: Vec<&str> = [
        "libs/live2dcubismcore.min.js",
        "libs/cubism4.min.js",
        "libs/pixi.min.js",
        "live2d-models/haru/runtime/haru.model3.json",
    ]
    .into_iter()
    .filter(|f| !assets.join(f).is_file())
    .collect();
    if missing.is_empty() {
        return Some(assets);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} missing in {}: run scripts/setup.sh (scripts/fetch-web-assets.sh)",
        assets.display()
    );
    eprintln!(
        "skipped: the Cubism 3/4 web assets {missing:?} are not installed in {} (run scripts/fetch-web-assets.sh)",
        assets.display()
    );
    None
}

/// A daemon whose page speaks through the browser (speech on, audio to clients), with
/// the web assets of `assets`, `character` as the default one (`None`: the built-in
/// default) and `files` (name, TOML) in its character folder; started, and the page's
/// address as `vtuber web url` prints it.
async fn page_daemon(
    mock: &MockLlm,
    assets: &std::path::Path,
    character: Option<&str>,
    files: &[(&str, &str)],
) -> (TestDaemon, String) {
    let default = character.map_or_else(String::new, |c| format!("character:\n  default: {c}\n"));
    let config = format!(
        "{}{default}speech:\n  enabled: true\naudio:\n  input: none\n  output: none\n  playback: clients\nweb:\n  port: 0\n  assets_dir: {}\n",
        openai_config(&mock.base_url()),
        assets.display()
    );
    let mut daemon = TestDaemon::new(&config).expect("home");
    for (name, text) in files {
        let path = daemon
            .dir
            .path()
            .join("config/vtuber/characters")
            .join(name);
        std::fs::write(path, text).expect("character file");
    }
    link_models(&daemon.models_dir()).expect("models (run scripts/setup.sh)");
    daemon.start().expect("daemon starts");
    let url = printed_url(&daemon).await;
    (daemon, url)
}

async fn run_page_check(url: &str, out: &std::path::Path, live2d: bool) -> serde_json::Value {
    run_page_check_with(url, out, live2d, &[]).await
}

async fn run_page_check_with(
    url: &str,
    out: &std::path::Path,
    live2d: bool,
    extra: &[&str],
) -> serde_json::Value {
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
    cmd.args(extra);
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
    // Sage shows Shizuku, the Cubism 2 sample (Mao shows Haru, Cubism 3: below).
    let (daemon, url) = page_daemon(&mock, &assets, Some("sage"), &[]).await;
    // The terminal side watches the same stage.
    let mut tui = daemon.client("tui").await.expect("client");
    let out = repo_root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&out).expect("artefact dir");
    // [joy] is Sage's expression 1, Shizuku's second expression, `f02`.
    let result = run_page_check_with(
        &url,
        &out,
        true,
        &["--expect-runtime", "cubism2", "--expect-expression", "f02"],
    )
    .await;
    assert_eq!(result["live2d"], true, "{result:#}");
    assert_eq!(
        result["mouth_parameter"], "PARAM_MOUTH_OPEN_Y",
        "{result:#}"
    );
    eprintln!(
        "Cubism 2 (shizuku): loaded in {} ms, {} fps",
        result["avatar_load_ms"], result["fps"]
    );
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
    let (_daemon, url) = page_daemon(&mock, empty_assets.path(), Some("sage"), &[]).await;
    let out = repo_root().join("target/test-artifacts/browser-fallback");
    std::fs::create_dir_all(&out).expect("artefact dir");
    let result = run_page_check(&url, &out, false).await;
    assert_eq!(result["live2d"], false, "{result:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_character_shows_a_cubism3_model_that_lip_syncs_and_takes_expressions() {
    let Some(assets) = cubism4_assets() else {
        return;
    };
    let reply = "[sadness] Oh no, that is sad. [joy] But now I am happy again, and my mouth moves while I speak!";
    let mock = MockLlm::start(MockBehaviour::Reply(MockReply::text(reply).with_rate(40.0)))
        .await
        .expect("mock");
    // No `character.default`: the default character, Mao, whose model is Haru.
    let (daemon, url) = page_daemon(&mock, &assets, None, &[]).await;
    let out = repo_root().join("target/test-artifacts/browser-cubism3");
    std::fs::create_dir_all(&out).expect("artefact dir");
    // The last tag wins: [joy] is Mao's expression 1, Haru's `joy`.
    let result = run_page_check_with(
        &url,
        &out,
        true,
        &["--expect-runtime", "cubism4", "--expect-expression", "joy"],
    )
    .await;
    assert_eq!(result["live2d_runtime"], "cubism4", "{result:#}");
    assert_eq!(
        result["avatar_url"], "/live2d-models/haru/runtime/haru.model3.json",
        "{result:#}"
    );
    assert_eq!(result["mouth_parameter"], "ParamMouthOpenY", "{result:#}");
    assert_eq!(result["core_version"], "4.2.2", "{result:#}");
    assert!(
        result["mouth_max"].as_f64().unwrap_or(0.0) > 0.1,
        "{result:#}"
    );
    assert!(
        result["expressions_set"].as_u64().unwrap_or(0) >= 2,
        "{result:#}"
    );
    eprintln!(
        "Cubism 3 (haru): loaded in {} ms, {} fps, {} of the pixels changed in 1 s",
        result["avatar_load_ms"], result["fps"], result["canvas_change_ratio"]
    );
    // The page reported the model as shown: nothing for `status` to complain about.
    let mut c = daemon.client("e2e-status").await.expect("client");
    match c
        .request(vtuber_shared::Request::Status)
        .await
        .expect("status")
    {
        Ok(vtuber_shared::Reply::Status(s)) => assert_eq!(s.avatar_error, None),
        other => panic!("status: {other:?}"),
    }
}

/// A Haru whose `.moc3` claims format 5 (Cubism 5), which the installed Core 4.2.2
/// cannot read: every other file is the real one, linked.
fn future_model(assets: &std::path::Path, into: &std::path::Path) {
    let haru = assets.join("live2d-models/haru/runtime");
    let runtime = into.join("live2d-models/future/runtime");
    std::fs::create_dir_all(&runtime).expect("model dir");
    for entry in std::fs::read_dir(&haru).expect("haru") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".moc3") {
            let mut moc = std::fs::read(entry.path()).expect("moc3");
            assert_eq!(&moc[..4], b"MOC3");
            moc[4] = 5;
            std::fs::write(runtime.join(&*name), moc).expect("write moc3");
        } else if name == "haru.model3.json" {
            std::fs::copy(entry.path(), runtime.join("future.model3.json")).expect("model3");
        } else {
            std::os::unix::fs::symlink(entry.path(), runtime.join(&*name)).expect("link");
        }
    }
    std::os::unix::fs::symlink(assets.join("libs"), into.join("libs")).expect("link libs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moc3_too_new_for_the_cubism_core_is_said_in_the_page_and_in_status() {
    let Some(assets) = cubism4_assets() else {
        return;
    };
    let reply = "I still talk, even when my model cannot be shown.";
    let mock = MockLlm::start(MockBehaviour::Reply(MockReply::text(reply).with_rate(40.0)))
        .await
        .expect("mock");
    let mine = tempfile::tempdir().expect("tempdir");
    future_model(&assets, mine.path());
    let future = "name = \"Future\"\npersona = \"You are Future.\"\n[avatar]\nmodel = \"future\"\n";
    let (daemon, url) = page_daemon(
        &mock,
        mine.path(),
        Some("future"),
        &[("future.toml", future)],
    )
    .await;
    let out = repo_root().join("target/test-artifacts/browser-moc3-too-new");
    std::fs::create_dir_all(&out).expect("artefact dir");
    let result = run_page_check_with(
        &url,
        &out,
        false,
        &["--expect-avatar-error", "needs a newer Cubism Core"],
    )
    .await;
    // Said as what it is, not as "not installed".
    let notice = result["notice"]["text"].as_str().unwrap_or_default();
    assert!(
        notice.starts_with("This Live2D model cannot be shown.")
            && !notice.contains("fetch-web-assets"),
        "{result:#}"
    );
    let said = result["avatar_error"].as_str().unwrap_or_default();
    assert!(
        said.contains("moc3 5.0") && said.contains("4.2.2") && said.contains("web.live2d_core_url"),
        "{result:#}"
    );
    // The daemon heard it from the page: `vtuber status` says it too.
    let mut cmd = daemon.vtuber();
    cmd.args(["status", "--json"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "vtuber status: {}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("status json");
    let reported = status["avatar_error"].as_str().unwrap_or_default();
    assert!(
        reported.contains("future.model3.json") && reported.contains("needs a newer Cubism Core"),
        "{status:#}"
    );
    let mut cmd = daemon.vtuber();
    cmd.arg("status");
    let out = run(cmd).await;
    assert!(
        stdout(&out).contains("not shown: /live2d-models/future/runtime/future.model3.json"),
        "{}",
        stdout(&out)
    );
}
