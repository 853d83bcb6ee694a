//! `vtuber chat` driven as a person drives it, in a real terminal (tmux): typed text, the
//! reply on screen, and the `/` command line.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use vtuber_test_support::mock_llm::MockBehaviour;

/// A tmux server of its own (`-L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn run(&self, args: &[&str]) {
        let out = self.cmd().args(args).output().expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "chat"])
            .output()
            .expect("capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `want` is on it.
    fn wait_for(&self, want: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(want) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "`{want}` never appeared; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "chat", "-l", text]);
        self.run(&["send-keys", "-t", "chat", "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[test]
fn the_chat_answers_and_its_slash_commands_work() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing (scripts/setup.sh installs it)"
        );
        eprintln!("tmux is not installed: skipped");
        return;
    }
    let (_mock, daemon) = daemon_with_mock(MockBehaviour::reply("Nice to meet you [joy]"));
    let tmux = Tmux {
        socket: format!("vtuber-test-{}", std::process::id()),
    };
    let vtuber = vtuber_test_support::daemon::bin("vtuber");
    let mut env: Vec<String> = daemon
        .envs()
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.display()))
        .collect();
    env.push("TERM=xterm-256color".into());
    let mut args: Vec<String> = vec![
        "new-session".into(),
        "-d".into(),
        "-s".into(),
        "chat".into(),
        "-x".into(),
        "100".into(),
        "-y".into(),
        "40".into(),
        "-c".into(),
        daemon.dir.path().display().to_string(),
        "env".into(),
    ];
    args.extend(env);
    args.push(vtuber.display().to_string());
    args.push("chat".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tmux.run(&args);
    tmux.wait_for("connected");

    tmux.type_line("hello there");
    let screen = tmux.wait_for("Nice to meet you");
    // The emotion tag is a marker, never the raw tag.
    assert!(screen.contains("Nice to meet you ‹joy›"), "{screen}");

    // Tab completes the command; the list shows the built-in characters.
    tmux.run(&["send-keys", "-t", "chat", "-l", "/chara"]);
    tmux.run(&["send-keys", "-t", "chat", "Tab"]);
    tmux.wait_for("/character ");
    tmux.run(&["send-keys", "-t", "chat", "Enter"]);
    let screen = tmux.wait_for("characters (/character NAME switches)");
    // One line per character.
    assert!(
        screen
            .lines()
            .any(|l| l.trim_start().starts_with("* mao (Mao)")),
        "{screen}"
    );

    tmux.type_line("/history");
    let screen = tmux.wait_for("conversations (/history ID opens one)");
    assert!(screen.contains("2 messages"), "{screen}");

    tmux.type_line("/export chat.md");
    tmux.wait_for("exported conversation");
    let exported =
        std::fs::read_to_string(daemon.dir.path().join("chat.md")).expect("the export is written");
    assert!(exported.contains("hello there"), "{exported}");
    assert!(exported.contains("Nice to meet you"), "{exported}");

    // A mistyped command stays in the input to be fixed; Ctrl+U clears it.
    tmux.type_line("/nonsense");
    tmux.wait_for("no command `/nonsense`");
    tmux.run(&["send-keys", "-t", "chat", "C-u"]);

    tmux.type_line("/quit");
    let deadline = Instant::now() + WAIT;
    while tmux
        .cmd()
        .args(["has-session", "-t", "chat"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "the chat did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
