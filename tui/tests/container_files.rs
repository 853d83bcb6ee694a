//! The container files (`Dockerfile`, `compose.yaml`, `contrib/docker/`), checked as far
//! as can be without a container engine (none runs on the development machines): what
//! the Dockerfile copies exists and is not excluded from the build context, the binaries
//! it copies are the workspace's, compose.yaml parses and agrees with the Dockerfile,
//! the entrypoint makes the TLS pair the config names, and that config passes
//! `vtuberd --check-config`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace above tui/")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Dockerfile's instructions: (KEYWORD, arguments), continuation lines joined and
/// comments dropped.
fn instructions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

fn all(keyword: &str) -> Vec<String> {
    instructions()
        .into_iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, a)| a)
        .collect()
}

/// The one `KEYWORD` instruction's arguments.
fn one(keyword: &str) -> String {
    let found = all(keyword);
    assert_eq!(found.len(), 1, "one {keyword} in the Dockerfile: {found:?}");
    found[0].clone()
}

/// `ENV NAME=value` from the Dockerfile.
fn env(name: &str) -> String {
    all("ENV")
        .iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no ENV {name}"))
}

/// Every `COPY` as (`--from` stage, sources, destination).
fn copies() -> Vec<(Option<String>, Vec<String>, String)> {
    all("COPY")
        .iter()
        .map(|args| {
            let mut from = None;
            let mut words = Vec::new();
            for w in args.split_whitespace() {
                if let Some(stage) = w.strip_prefix("--from=") {
                    from = Some(stage.to_owned());
                } else {
                    assert!(!w.starts_with("--"), "unexpected COPY flag {w}");
                    words.push(w.to_owned());
                }
            }
            let dest = words.pop().expect("a COPY destination");
            (from, words, dest)
        })
        .collect()
}

fn workspace_binaries() -> Vec<String> {
    let mut bins = Vec::new();
    for member in ["daemon", "tui", "tests", "tests/mcp-server"] {
        let manifest = read(&format!("{member}/Cargo.toml"));
        let mut lines = manifest.lines();
        while let Some(line) = lines.next() {
            if line.trim() == "[[bin]]"
                && let Some(name) = lines.next().and_then(|l| l.trim().strip_prefix("name = "))
            {
                bins.push(name.trim_matches('"').to_owned());
            }
        }
    }
    bins
}

#[test]
fn what_the_dockerfile_copies_is_in_the_build_context() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for must in ["target", "**/node_modules", ".git"] {
        assert!(ignored.iter().any(|i| i == must), "{must} in .dockerignore");
    }
    let mut local = 0;
    for (from, sources, dest) in copies() {
        if from.is_some() {
            continue;
        }
        for src in sources {
            if src == "." {
                continue;
            }
            local += 1;
            assert!(
                root().join(&src).exists(),
                "COPY {src} {dest}: no such file"
            );
            assert!(
                !ignored
                    .iter()
                    .any(|i| src == *i || src.starts_with(&format!("{i}/"))),
                "COPY {src}: excluded by .dockerignore"
            );
        }
    }
    assert!(local >= 4, "the scripts, manifest, config and entrypoint");
    // The entrypoint keeps its mode through COPY: it must be executable here.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root().join("contrib/docker/entrypoint.sh"))
            .expect("entrypoint")
            .permissions(),
    );
    assert!(mode & 0o111 != 0, "entrypoint.sh is executable");
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(root().join("contrib/docker/entrypoint.sh"))
        .status()
        .expect("sh");
    assert!(syntax.success(), "entrypoint.sh parses");
}

#[test]
fn the_image_holds_the_workspace_binaries_and_runs_vtuberd() {
    let bins = workspace_binaries();
    let mut copied = Vec::new();
    for (from, sources, dest) in copies() {
        if from.as_deref() != Some("builder") {
            continue;
        }
        assert_eq!(dest, "/usr/local/bin/");
        for src in sources {
            let name = src
                .strip_prefix("/src/target/release/")
                .unwrap_or_else(|| panic!("{src} is not a release binary"));
            assert!(bins.iter().any(|b| b == name), "{name} in {bins:?}");
            copied.push(name.to_owned());
        }
    }
    copied.sort();
    assert_eq!(copied, ["vtuber", "vtuberd"]);
    let build = all("RUN")
        .into_iter()
        .find(|r| r.starts_with("cargo build"))
        .expect("a cargo build");
    assert!(build.contains("-p vtuberd -p vtuber "), "{build}");
    // What debian-packages.txt marks `build` is what the builder installs.
    let first_apt = all("RUN")
        .into_iter()
        .find(|r| r.contains("apt-get install"))
        .expect("the builder's packages");
    for line in read("scripts/debian-packages.txt").lines() {
        let mut words = line.split_whitespace();
        if let (Some(pkg), Some("build")) = (words.next(), words.next()) {
            assert!(
                first_apt.split_whitespace().any(|w| w == pkg),
                "{pkg} installed in the builder"
            );
        }
    }
    assert_eq!(one("CMD"), r#"["vtuberd"]"#);
    assert!(one("HEALTHCHECK").ends_with(r#"CMD ["vtuber", "status"]"#));
    assert!(one("USER") == "vtuber");
}

#[test]
fn compose_builds_the_dockerfile_and_agrees_with_it() {
    let compose = yaml("compose.yaml");
    let vtuberd = &compose["services"]["vtuberd"];
    assert_eq!(vtuberd["build"]["context"], ".");
    let dockerfile = vtuberd["build"]["dockerfile"].as_str().expect("dockerfile");
    assert!(root().join(dockerfile).is_file(), "{dockerfile}");

    let config = env("VTUBER_CONFIG");
    assert_eq!(vtuberd["environment"]["VTUBER_CONFIG"], config.as_str());
    assert!(
        copies().iter().any(|(from, src, dest)| from.is_none()
            && src == &["contrib/docker/conf.yaml"]
            && *dest == config),
        "the image's config is contrib/docker/conf.yaml at {config}"
    );

    let volume = one("VOLUME");
    let volume = volume.trim_matches(|c| matches!(c, '[' | ']' | '"'));
    let mounts: Vec<&str> = vtuberd["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        mounts.iter().any(|m| m.ends_with(&format!(":{volume}"))),
        "{mounts:?} mount {volume}"
    );

    let conf = yaml("contrib/docker/conf.yaml");
    let port = conf["web"]["port"].as_u64().expect("web.port");
    assert_eq!(one("EXPOSE"), port.to_string());
    let ports = vtuberd["ports"].as_array().expect("ports");
    assert!(
        ports.iter().any(|p| p == &format!("{port}:{port}")),
        "{ports:?}"
    );

    // The LLM server the config points at is the compose file's ollama service.
    assert_eq!(conf["llm"]["provider"], "openai_compatible");
    let base_url = vtuberd["environment"]["VTUBER_LLM_BASE_URL"]
        .as_str()
        .expect("VTUBER_LLM_BASE_URL");
    assert_eq!(base_url, "http://ollama:11434/v1");
    assert!(compose["services"]["ollama"]["image"].is_string());
    assert!(
        read("contrib/docker/conf.yaml")
            .contains("base_url: ${VTUBER_LLM_BASE_URL:-http://ollama:11434/v1}")
    );
}

/// `vtuberd`, built next to this test by `cargo build --workspace --bins` (CI does
/// that first). Absent only where just this crate was built.
fn vtuberd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("vtuberd");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI builds the workspace's binaries first",
        bin.display()
    );
    eprintln!(
        "{} is not built (cargo build -p vtuberd): its check skipped",
        bin.display()
    );
    None
}

#[test]
fn the_container_config_passes_vtuberd_check_config_with_the_entrypoints_certificate() {
    let have_openssl = Command::new("openssl").arg("version").output().is_ok();
    if !have_openssl {
        eprintln!("openssl is not installed: skipped");
        return;
    }
    let home = tempfile::tempdir().expect("temp dir");
    // The entrypoint's first start, fetching nothing, running `true` instead of vtuberd.
    let out = Command::new(root().join("contrib/docker/entrypoint.sh"))
        .arg("true")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("VTUBER_FETCH", "0")
        .output()
        .expect("entrypoint runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tls = home.path().join(".local/share/vtuber/tls");
    assert!(tls.join("cert.pem").is_file() && tls.join("key.pem").is_file());

    let Some(vtuberd) = vtuberd() else { return };
    // The image's environment: HOME and the defaults of the config's ${VAR:-...} but
    // for the TLS pair, which sits in this test's home instead of /home/vtuber.
    let out = Command::new(vtuberd)
        .args(["--check-config", "--config"])
        .arg(root().join("contrib/docker/conf.yaml"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("VTUBER_TLS_CERT", tls.join("cert.pem"))
        .env("VTUBER_TLS_KEY", tls.join("key.pem"))
        .output()
        .expect("vtuberd runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_healthcheck_fails_when_no_daemon_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_vtuber"))
        .arg("status")
        .env("VTUBER_SOCKET", dir.path().join("none.sock"))
        .env("VTUBERD_BIN", dir.path().join("no-vtuberd"))
        .output()
        .expect("vtuber runs");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
