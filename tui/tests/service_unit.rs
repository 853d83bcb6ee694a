//! `vtuber daemon install|uninstall|logs` against a fake `systemctl` and `journalctl`
//! that record their arguments, and the unit checked by `systemd-analyze verify` where it
//! is installed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A home with a stand-in vtuberd and a `systemctl` that logs its arguments and
    /// exits with `systemctl_status`.
    fn new(systemctl_status: u8) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        write_script(&bin.join("vtuberd"), "#!/bin/sh\nexit 0\n");
        let log = dir.path().join("systemctl.log");
        write_script(
            &bin.join("systemctl"),
            &format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\n[ {systemctl_status} -eq 0 ] || echo 'Failed to connect to bus' >&2\nexit {systemctl_status}\n",
                log.display()
            ),
        );
        write_script(
            &bin.join("journalctl"),
            &format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\necho 'a journal line'\n",
                dir.path().join("journalctl.log").display()
            ),
        );
        Self { dir }
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("data/vtuberd.log")
    }

    fn command(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vtuber"));
        cmd.args(args)
            .env("PATH", path)
            .env("VTUBERD_BIN", self.vtuberd())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("VTUBER_DATA_DIR", self.dir.path().join("data"));
        cmd
    }

    fn vtuberd(&self) -> PathBuf {
        self.dir.path().join("bin/vtuberd")
    }

    fn unit(&self) -> PathBuf {
        self.dir.path().join("config/systemd/user/vtuberd.service")
    }

    fn systemctl_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn vtuber(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run vtuber")
    }
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn install_writes_and_enables_the_user_unit_and_uninstall_reverses_it() {
    let home = Home::new(0);
    let printed = home.vtuber(&["daemon", "install", "--print"]);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let unit = text(&printed.stdout);
    assert!(
        unit.contains(&format!("\nExecStart={}\n", home.vtuberd().display())),
        "{unit}"
    );
    assert!(home.systemctl_calls().is_empty());
    assert!(!home.unit().exists());

    let out = home.vtuber(&["daemon", "install"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(home.unit()).expect("unit written"),
        unit
    );
    assert_eq!(
        home.systemctl_calls(),
        ["--user daemon-reload", "--user enable vtuberd.service"]
    );
    assert!(text(&out.stdout).contains("systemctl --user start vtuberd"));

    let out = home.vtuber(&["daemon", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!home.unit().exists());
    assert_eq!(
        home.systemctl_calls()[2..],
        [
            "--user disable --now vtuberd.service",
            "--user daemon-reload"
        ]
    );
    let again = home.vtuber(&["daemon", "uninstall"]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("nothing to remove"));
}

#[test]
fn without_a_user_manager_the_unit_is_written_and_the_user_told_what_to_run() {
    let home = Home::new(1);
    let out = home.vtuber(&["daemon", "install"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("Failed to connect to bus"), "{err}");
    assert!(
        err.contains("systemctl --user daemon-reload && systemctl --user enable vtuberd"),
        "{err}"
    );
    assert!(home.unit().exists());
}

#[test]
fn the_unit_passes_systemd_analyze_where_installed() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    };
    assert!(found.status.success());
    let home = Home::new(0);
    let printed = home.vtuber(&["daemon", "install", "--print"]);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let file = home.dir.path().join("vtuberd.service");
    std::fs::write(&file, &printed.stdout).expect("unit file");
    let out = Command::new("systemd-analyze")
        .args(["--man=no", "verify"])
        .arg(&file)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Every Type=notify promise rests on vtuberd sending READY=1 (tests/e2e/service.rs).
    assert!(text(&printed.stdout).contains("\nType=notify\n"));
}

#[test]
fn logs_show_the_file_tail_and_follow_it() {
    let home = Home::new(0);
    let missing = home.vtuber(&["daemon", "logs"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no log at"),
        "{}",
        text(&missing.stderr)
    );

    std::fs::create_dir_all(home.log_file().parent().unwrap()).unwrap();
    let lines: String = (1..=150).map(|i| format!("line {i}\n")).collect();
    std::fs::write(home.log_file(), lines).unwrap();
    let out = home.vtuber(&["daemon", "logs", "-n", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "line 148\nline 149\nline 150\n");
    assert_eq!(
        text(&home.vtuber(&["daemon", "logs"]).stdout)
            .lines()
            .count(),
        100
    );

    let mut child = home
        .command(&["daemon", "logs", "-f", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let wait = std::time::Duration::from_secs(20);
    assert_eq!(rx.recv_timeout(wait).expect("the last line"), "line 150");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(home.log_file())
        .unwrap();
    std::io::Write::write_all(&mut f, b"appended later\n").unwrap();
    assert_eq!(
        rx.recv_timeout(wait).expect("the new line"),
        "appended later"
    );
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn logs_of_the_service_come_from_the_journal() {
    let home = Home::new(0);
    assert!(home.vtuber(&["daemon", "install"]).status.success());
    let out = home.vtuber(&["daemon", "logs", "-n", "20", "-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a journal line\n");
    let calls = std::fs::read_to_string(home.dir.path().join("journalctl.log")).unwrap();
    assert_eq!(
        calls.trim(),
        "--user -u vtuberd.service --no-pager -n 20 -f"
    );
}
