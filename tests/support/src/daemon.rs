//! Runs real `vtuberd` and `vtuber` binaries in isolation: each [`TestDaemon`] gets its
//! own temporary XDG folders and socket, so tests run side by side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vtuber_shared::client::Hello;
use vtuber_shared::framing;
use vtuber_shared::{ErrorBody, Event, Outcome, Reply, Request, ServerFrame};

use crate::frame_queue::FrameQueue;

/// Path of a workspace binary, built next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    // Benchmarks compare builds by pointing this at another build's folder.
    if let Some(dir) = std::env::var_os("VTUBER_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/test-xxxx → target/<profile>/<name>
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// `yaml` plus the test defaults for the top-level sections it leaves out.
pub fn with_test_defaults(yaml: &str) -> String {
    // JSON is YAML too; keys are added to the object rather than appended as lines.
    if yaml.trim_start().starts_with('{')
        && let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(yaml)
    {
        let defaults = [
            ("speech", serde_json::json!({"enabled": false})),
            (
                "audio",
                serde_json::json!({"input": "none", "output": "none"}),
            ),
            ("web", serde_json::json!({"port": 0})),
        ];
        for (key, value) in defaults {
            map.entry(key).or_insert(value);
        }
        return serde_json::Value::Object(map).to_string();
    }
    let has = |key: &str| yaml.lines().any(|l| l.starts_with(&format!("{key}:")));
    let mut out = yaml.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !has("speech") {
        out.push_str("speech: {enabled: false}\n");
    }
    if !has("audio") {
        out.push_str("audio: {input: none, output: none}\n");
    }
    if !has("web") {
        out.push_str("web: {port: 0}\n");
    }
    out
}

/// Links the real model files of this machine (from `scripts/fetch-model.sh`) into a
/// test daemon's models folder. Fails, saying how to get them, when they are missing.
pub fn link_models(models_dir: &Path) -> anyhow::Result<()> {
    let source = std::env::var_os("VTUBER_DATA_DIR")
        .map(|d| PathBuf::from(d).join("models"))
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".local/share"))
                .join("vtuber/models")
        });
    std::fs::create_dir_all(models_dir)?;
    for name in [
        "whisper-tiny.en",
        "whisper-base",
        "piper",
        "silero_vad.onnx",
        "onnxruntime",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ] {
        let src = source.join(name);
        if !src.exists() {
            bail!(
                "{} is missing: run scripts/setup.sh --for-tests (it downloads the models the tests use)",
                src.display()
            );
        }
        let dst = models_dir.join(name);
        if !dst.exists() {
            std::os::unix::fs::symlink(&src, &dst)?;
        }
    }
    Ok(())
}

/// A daemon with its own folders, stopped (SIGKILL) on drop if still running.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// `VTUBER_LOG` for the daemon; benchmarks turn debug logging down.
    pub log_filter: String,
    /// More environment for the daemon (values for `${VAR}` in the config).
    pub extra_env: Vec<(String, String)>,
    child: Option<Child>,
}

impl TestDaemon {
    /// A fresh isolated home with `config_yaml` as its config file; not started.
    ///
    /// Tests run many daemons side by side, so sections the config does not mention get
    /// test defaults: no speech engines (tests that need them say `speech:`), no audio
    /// devices, and the web server on a free port.
    pub fn new(config_yaml: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("vtuber-e2e").tempdir()?;
        let config = dir.path().join("conf.yaml");
        std::fs::write(&config, with_test_defaults(config_yaml))?;
        for sub in ["config/vtuber/characters", "data", "runtime"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        Ok(Self {
            socket: dir.path().join("runtime/vtuber/vtuberd.sock"),
            log: dir.path().join("vtuberd.log"),
            config,
            dir,
            log_filter: "debug,llama_cpp_2=warn".into(),
            extra_env: Vec::new(),
            child: None,
        })
    }

    /// [`new`](Self::new) then [`start`](Self::start).
    pub fn spawn(config_yaml: &str) -> anyhow::Result<Self> {
        let mut d = Self::new(config_yaml)?;
        d.start()?;
        Ok(d)
    }

    /// Environment that points every path into this daemon's folder.
    pub fn envs(&self) -> Vec<(&'static str, PathBuf)> {
        let root = self.dir.path();
        vec![
            ("HOME", root.to_path_buf()),
            ("XDG_CONFIG_HOME", root.join("config")),
            ("XDG_DATA_HOME", root.join("data")),
            ("XDG_RUNTIME_DIR", root.join("runtime")),
            ("VTUBER_CONFIG", self.config.clone()),
            ("VTUBER_SOCKET", self.socket.clone()),
        ]
    }

    /// The models folder the daemon will look in, with the real model linked in when
    /// this machine has it (so embedded-model tests see it).
    pub fn models_dir(&self) -> PathBuf {
        self.dir.path().join("data/vtuber/models")
    }

    /// A `vtuberd` command with this daemon's environment.
    pub fn vtuberd(&self) -> Command {
        let mut c = Command::new(bin("vtuberd"));
        c.envs(self.envs()).env_remove("VTUBER_DATA_DIR");
        c
    }

    /// A `vtuber` command with this daemon's environment.
    pub fn vtuber(&self) -> Command {
        let mut c = Command::new(bin("vtuber"));
        c.envs(self.envs()).env_remove("VTUBER_DATA_DIR");
        c
    }

    /// Starts `vtuberd` and waits until its socket answers.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = self
            .vtuberd()
            .env("VTUBER_LOG", &self.log_filter)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin("vtuberd").display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20))
    }

    /// Polls until a connection succeeds, or fails with the daemon's log.
    pub fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("vtuberd exited early ({status}):\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "vtuberd did not answer within {limit:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for exit; returns the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("daemon not running");
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!(
                    "vtuberd did not exit within 20 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the daemon process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(c) = self.child.as_mut() else {
            bail!("daemon not running");
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = c.try_wait()? {
                self.child = None;
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("vtuberd still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connected, greeted protocol client.
    pub async fn client(&self, label: &str) -> anyhow::Result<TestClient> {
        TestClient::connect(&self.socket, label, true).await
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A protocol client for tests on the shared client's framed socket: every frame in
/// order (seq numbers included), raw bytes out, and any request id.
pub struct TestClient {
    frames: FrameQueue,
    pub welcome: Option<Reply>,
}

impl TestClient {
    pub async fn connect(socket: &Path, label: &str, subscribe: bool) -> anyhow::Result<Self> {
        let hello = Hello {
            client: label.to_owned(),
            subscribe,
            audio: true,
        };
        Self::connect_with(socket, hello).await
    }

    /// Connected and greeted with this `hello`.
    pub async fn connect_with(socket: &Path, hello: Hello) -> anyhow::Result<Self> {
        let mut c = Self::connect_raw(socket).await?;
        let reply = c
            .request(hello.request(socket).0)
            .await?
            .map_err(|e| anyhow::anyhow!("hello refused: {e}"))?;
        c.welcome = Some(reply);
        Ok(c)
    }

    /// Connected but not greeted.
    pub async fn connect_raw(socket: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            frames: FrameQueue::open(socket).await?,
            welcome: None,
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.frames.send_raw(bytes).await
    }

    /// Next frame of any kind, within `limit`.
    pub async fn next_frame(&mut self, limit: Duration) -> anyhow::Result<ServerFrame> {
        let received = self
            .frames
            .next(tokio::time::Instant::now() + limit)
            .await?;
        Ok(framing::decode(&received.line)?)
    }

    /// Sends `request` and waits for its response, queueing events that arrive first.
    pub async fn request(&mut self, request: Request) -> anyhow::Result<Result<Reply, ErrorBody>> {
        let id = self.frames.send(request).await?;
        self.response_to(Some(id)).await
    }

    /// Waits for the response with `id`, leaving other frames queued in order.
    pub async fn response_to(
        &mut self,
        id: Option<u64>,
    ) -> anyhow::Result<Result<Reply, ErrorBody>> {
        self.frames
            .find(Duration::from_secs(30), |received| {
                Ok(match framing::decode(&received.line)? {
                    ServerFrame::Response { id: got, outcome } if got == id => {
                        Some(match outcome {
                            Outcome::Ok(r) => Ok(r),
                            Outcome::Err(e) => Err(e),
                        })
                    }
                    _ => None,
                })
            })
            .await
    }

    /// Sends `text` as user input; the id of the turn it started.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<u64> {
        match self
            .request(Request::SendText {
                text: text.into(),
                images: Vec::new(),
            })
            .await?
        {
            Ok(Reply::TurnAccepted { turn_id, .. }) => Ok(turn_id),
            other => anyhow::bail!("send_text {text:?}: {other:?}"),
        }
    }

    /// Next broadcast event (skipping responses), with its seq.
    pub async fn next_event(&mut self, limit: Duration) -> anyhow::Result<(u64, Event)> {
        loop {
            if let ServerFrame::Event { seq, event } = self.next_frame(limit).await? {
                return Ok((seq, event));
            }
        }
    }

    /// Collects events until `stop` returns true for one (included).
    pub async fn events_until(
        &mut self,
        limit: Duration,
        mut stop: impl FnMut(&Event) -> bool,
    ) -> anyhow::Result<Vec<(u64, Event)>> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (seq, ev) = self.next_event(left).await?;
            let done = stop(&ev);
            out.push((seq, ev));
            if done {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_defaults_fill_missing_sections_in_yaml_and_json() {
        let y = with_test_defaults("llm:\n  provider: embedded");
        assert!(
            y.contains("speech: {enabled: false}\n") && y.contains("web: {port: 0}\n"),
            "{y}"
        );
        let y = with_test_defaults("web:\n  port: 5\n");
        assert!(!y.contains("web: {port: 0}"), "{y}");
        let j = with_test_defaults(
            "{\n  \"llm\": {\"model\": \"m\"},\n  \"speech\": {\"enabled\": true}\n}",
        );
        let v: serde_json::Value = serde_json::from_str(&j).expect("still JSON");
        assert_eq!(v["speech"]["enabled"], true);
        assert_eq!(v["web"]["port"], 0);
        assert_eq!(v["audio"]["input"], "none");
    }
}
