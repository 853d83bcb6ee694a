//! Private by default: every file the daemon (and `vtuber`, for the daemon's log and
//! exports) writes under the data and runtime folders is 0600 in 0700 folders whatever
//! the umask, and files an older version left wider are tightened at start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;
use vtuber_test_support::daemon::TestDaemon;
use vtuber_test_support::mock_llm::{MockBehaviour, MockLlm};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_private_tree(root: &Path) {
    let mut checked = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        assert_eq!(
            mode(&dir),
            0o700,
            "folder {} is {:o}",
            dir.display(),
            mode(&dir)
        );
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                continue; // test fixtures (linked models)
            }
            if meta.is_dir() {
                if path
                    .file_name()
                    .is_some_and(|n| n == "models" || n == "web")
                {
                    continue; // installed assets, not the daemon's writes
                }
                stack.push(path);
            } else {
                assert_eq!(
                    mode(&path) & 0o077,
                    0,
                    "{} is {:o}",
                    path.display(),
                    mode(&path)
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "nothing checked under {}", root.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_files_are_private_whatever_the_umask() {
    // nextest runs each test in its own process: a permissive umask here reaches only the
    // daemons this test starts.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0) };
    let mock = MockLlm::start(MockBehaviour::reply("Noted."))
        .await
        .expect("mock");
    let daemon = TestDaemon::new(&openai_config(&mock.base_url())).expect("home");
    // What an older version left: a world-readable history in a world-readable folder.
    let data = daemon.dir.path().join("data/vtuber");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("history.sqlite3");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Started the way users start it: `vtuber daemon start` (which also writes the log).
    let mut cmd = daemon.vtuber();
    cmd.args(["daemon", "start"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let mut say = daemon.vtuber();
    say.args(["say", "remember this"]);
    let out = run(say).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let export = daemon.dir.path().join("export.md");
    let mut cmd = daemon.vtuber();
    cmd.args(["history", "export", "1", "--format", "md", "-o"])
        .arg(&export);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&export), 0o600);

    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm"] {
        let f = data.join(format!("history.sqlite3{suffix}"));
        assert!(f.exists(), "{} missing", f.display());
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let log = data.join("vtuberd.log");
    assert_eq!(mode(&log), 0o600);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("tightened permissions"),
        "the loosened history was not reported: {log_text}"
    );
    assert_private_tree(&data);
    let runtime = daemon.socket.parent().unwrap();
    assert_private_tree(runtime);
    assert_eq!(
        mode(&vtuber_shared::cookie::cookie_path(&daemon.socket)),
        0o600
    );

    let mut cmd = daemon.vtuber();
    cmd.args(["daemon", "stop"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));
}
