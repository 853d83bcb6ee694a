//! `vtuber daemon install|uninstall|logs` (the user unit and, with `--system`, the system
//! template) against a fake `systemctl` and `journalctl` that record their arguments and
//! a fake `getent`, and the units checked by `systemd-analyze verify` where it is
//! installed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
        // The system template's instance user: alice, with a home in here and the test's
        // own ids (so the folders made for her can be handed over without root), or
        // made-up ones where the test runs as root (refused as the instance's user).
        let (uid, gid) = alice_ids(dir.path());
        let alice_home = dir.path().join("alice");
        std::fs::create_dir_all(&alice_home).expect("alice's home");
        write_script(
            &bin.join("getent"),
            &format!(
                "#!/bin/sh
[ \"$2\" = alice ] || exit 2
echo 'alice:x:{uid}:{gid}:Alice,,,:{}:/bin/sh'\n",
                alice_home.display()
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
            .env("VTUBER_DATA_DIR", self.dir.path().join("data"))
            .env("VTUBER_SYSTEM_UNIT_DIR", self.system_dir())
            .env("USER", "tester")
            .env_remove("SUDO_USER");
        cmd
    }

    fn system_dir(&self) -> PathBuf {
        self.dir.path().join("system")
    }

    fn uid(&self) -> u32 {
        std::fs::metadata(self.dir.path()).expect("metadata").uid()
    }

    fn alice_uid(&self) -> u32 {
        alice_ids(self.dir.path()).0
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

fn alice_ids(dir: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(dir).expect("temp dir metadata");
    match meta.uid() {
        0 => (4242, 4242),
        uid => (uid, meta.gid()),
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
fn socket_activation_installs_the_socket_units_for_the_configured_port() {
    let home = Home::new(0);
    // The stand-in vtuberd answers `--show-config=json` as the real one does.
    write_script(
        &home.vtuberd(),
        "#!/bin/sh\n[ \"$1\" = --show-config=json ] || exit 0\necho '{\"web\":{\"enabled\":true,\"host\":\"::1\",\"port\":8123,\"token\":\"********\"}}'\n",
    );
    let out = home.vtuber(&["daemon", "install", "--socket-activation"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = home.unit().with_file_name("");
    let local = std::fs::read_to_string(dir.join("vtuberd.socket")).expect("local socket unit");
    assert!(
        local.contains("\nListenStream=%t/vtuber/vtuberd.sock\n"),
        "{local}"
    );
    assert!(local.contains("\nFileDescriptorName=local\n"), "{local}");
    let web = std::fs::read_to_string(dir.join("vtuberd-web.socket")).expect("web socket unit");
    assert!(web.contains("\nListenStream=[::1]:8123\n"), "{web}");
    assert!(web.contains("\nFileDescriptorName=web\n"), "{web}");
    assert!(home.unit().exists());
    assert_eq!(
        home.systemctl_calls(),
        [
            "--user stop vtuberd.service",
            "--user daemon-reload",
            "--user enable --now vtuberd.socket vtuberd-web.socket"
        ]
    );
    assert!(text(&out.stdout).contains("starts vtuberd on the first connection"));

    let out = home.vtuber(&["daemon", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.join("vtuberd.socket").exists());
    assert!(!dir.join("vtuberd-web.socket").exists());
    assert!(!home.unit().exists());
    assert_eq!(
        home.systemctl_calls()[3..],
        [
            "--user disable --now vtuberd.socket",
            "--user disable --now vtuberd-web.socket",
            "--user disable --now vtuberd.service",
            "--user daemon-reload"
        ]
    );

    // With the page on a free port (0) there is no web socket unit, and a broken
    // configuration stops the install before anything is written.
    let home = Home::new(0);
    write_script(
        &home.vtuberd(),
        "#!/bin/sh\n[ \"$1\" = --show-config=json ] || exit 0\necho '{\"web\":{\"enabled\":true,\"host\":\"127.0.0.1\",\"port\":0}}'\n",
    );
    let out = home.vtuber(&["daemon", "install", "--socket-activation"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("web.port is 0"),
        "{}",
        text(&out.stderr)
    );
    assert!(!home.unit().with_file_name("vtuberd-web.socket").exists());
    assert!(home.unit().with_file_name("vtuberd.socket").exists());
    let home = Home::new(0);
    write_script(
        &home.vtuberd(),
        "#!/bin/sh\necho 'conf.yaml:2: llm.modle: unknown key' >&2\nexit 1\n",
    );
    let out = home.vtuber(&["daemon", "install", "--socket-activation"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("llm.modle"),
        "{}",
        text(&out.stderr)
    );
    assert!(!home.unit().exists());
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

#[test]
fn install_system_writes_the_template_and_the_users_drop_in_and_enables_the_instance() {
    let home = Home::new(0);
    let printed = home.vtuber(&["daemon", "install", "--system", "--print"]);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let template = text(&printed.stdout);
    assert!(
        template.contains(&format!("\nExecStart={}\n", home.vtuberd().display())),
        "{template}"
    );
    assert!(template.contains("\nUser=%i\n"), "{template}");
    assert!(home.systemctl_calls().is_empty());
    assert!(!home.system_dir().exists());

    // The user comes from sudo when not named.
    let out = home
        .command(&["daemon", "install", "--system"])
        .env("SUDO_USER", "alice")
        .output()
        .expect("run vtuber");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = home.system_dir().join("vtuberd@.service");
    assert_eq!(
        std::fs::read_to_string(&written).expect("template written"),
        template
    );
    let drop_in =
        std::fs::read_to_string(home.system_dir().join("vtuberd@alice.service.d/user.conf"))
            .expect("drop-in written");
    let uid = home.alice_uid();
    let data = home.dir.path().join("alice/.local/share/vtuber");
    assert!(
        drop_in.contains(&format!("\nEnvironment=XDG_RUNTIME_DIR=/run/user/{uid}\n")),
        "{drop_in}"
    );
    assert!(
        drop_in.contains(&format!(
            "\nReadWritePaths=/run/user/{uid} {}\n",
            data.display()
        )),
        "{drop_in}"
    );
    assert!(
        data.is_dir(),
        "the data folder is made for the read-only home"
    );
    for made in [".local", ".local/share", ".local/share/vtuber"] {
        let owner = std::fs::metadata(home.dir.path().join("alice").join(made)).unwrap();
        assert_eq!(owner.uid(), uid, "{made} belongs to alice");
    }
    assert_eq!(
        home.systemctl_calls(),
        ["daemon-reload", "enable vtuberd@alice.service"]
    );
    let said = text(&out.stdout);
    assert!(
        said.contains("sudo systemctl start vtuberd@alice"),
        "{said}"
    );
    assert!(said.contains("loginctl enable-linger alice"), "{said}");

    // Its log is the system journal's, for alice.
    let logs = home
        .command(&["daemon", "logs", "-n", "5"])
        .env("USER", "alice")
        .output()
        .expect("run vtuber");
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    let calls = std::fs::read_to_string(home.dir.path().join("journalctl.log")).unwrap();
    assert_eq!(calls.trim(), "-u vtuberd@alice.service --no-pager -n 5");

    let out = home.vtuber(&["daemon", "uninstall", "--system", "--for", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!written.exists());
    assert!(!home.system_dir().join("vtuberd@alice.service.d").exists());
    assert_eq!(
        home.systemctl_calls()[2..],
        ["disable --now vtuberd@alice.service", "daemon-reload"]
    );
    assert!(data.is_dir(), "the user's data stays");
    let again = home.vtuber(&["daemon", "uninstall", "--system", "--for", "alice"]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("nothing to remove"));
}

#[test]
fn install_system_refuses_root_unknown_users_and_missing_privileges() {
    let home = Home::new(0);
    for (args, expected) in [
        (&["--for", "root"][..], "should not run as root"),
        (&["--for", "bob"][..], "no user \"bob\""),
        (&["--for", "a b"][..], "user name"),
    ] {
        let out = home.vtuber(&[&["daemon", "install", "--system"][..], args].concat());
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let out = home.vtuber(&["daemon", "install", "--for", "alice"]);
    assert!(!out.status.success(), "--for needs --system");
    assert!(home.systemctl_calls().is_empty());
    assert!(!home.system_dir().join("vtuberd@.service").exists());

    // Without the test's unit folder, /etc/systemd/system needs root. Only tried where
    // the test is not root, so it can never write there.
    if home.uid() != 0 {
        let out = home
            .command(&["daemon", "install", "--system", "--for", "alice"])
            .env_remove("VTUBER_SYSTEM_UNIT_DIR")
            .output()
            .expect("run vtuber");
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("sudo vtuber daemon install --system"), "{err}");
        assert!(err.contains("--print"), "{err}");
    }
}

#[test]
fn the_system_template_passes_systemd_analyze_where_installed() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    };
    assert!(found.status.success());
    let home = Home::new(0);
    let out = home.vtuber(&["daemon", "install", "--system", "--for", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A template is verified as one of its instances; the drop-in next to it is read too.
    let dir = home.dir.path().join("verify");
    std::fs::create_dir_all(dir.join("vtuberd@alice.service.d")).unwrap();
    std::fs::copy(
        home.system_dir().join("vtuberd@.service"),
        dir.join("vtuberd@alice.service"),
    )
    .unwrap();
    std::fs::copy(
        home.system_dir().join("vtuberd@alice.service.d/user.conf"),
        dir.join("vtuberd@alice.service.d/user.conf"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--man=no", "verify"])
        .arg(dir.join("vtuberd@alice.service"))
        .output()
        .expect("systemd-analyze runs");
    // Unknown keys and bad values are only warnings: no output is the pass.
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
