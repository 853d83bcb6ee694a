//! `vtuber daemon install|uninstall` against a fake `systemctl` that records its
//! arguments, and the unit checked by `systemd-analyze verify` where it is installed.

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
        Self { dir }
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
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(env!("CARGO_BIN_EXE_vtuber"))
            .args(args)
            .env("PATH", path)
            .env("VTUBERD_BIN", self.vtuberd())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .output()
            .expect("run vtuber")
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
