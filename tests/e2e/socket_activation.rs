//! Socket activation: the real `vtuberd` started the way systemd starts it from
//! `vtuberd.socket` and `vtuberd-web.socket` (listening sockets at descriptors 3 and 4,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set to its own pid), a client that
//! connected before the daemon ran, a wrong socket refused, and the units themselves.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use vtuber_shared::client::Hello;
use vtuber_shared::{Reply, Request, TurnOutcome};
use vtuber_test_support::daemon::{TestDaemon, bin};
use vtuber_test_support::mcp::{
    JsonClient, McpConfig, ServerSpec, call, test_server_bin, tool_result, tool_script,
    turn_outcome,
};
use vtuber_test_support::mock_llm::MockLlm;

use crate::common::*;

/// A `vtuberd` started as systemd does; killed on drop if still running.
struct Activated {
    child: Child,
}

impl Activated {
    /// `fds` become descriptors 3, 4, ... of the daemon. `LISTEN_PID` must be the
    /// daemon's own pid, known only in the child: `sh` sets it to `$$` and `exec`s
    /// vtuberd, which keeps that pid.
    fn spawn(daemon: &TestDaemon, fds: &[BorrowedFd<'_>], names: Option<&str>) -> Self {
        // Copies above anything the child is handed (close-on-exec, so they do not
        // leak); the child moves them down to 3.. (dup2 clears close-on-exec).
        let high: Vec<OwnedFd> = fds
            .iter()
            .map(|fd| {
                // SAFETY: duplicates a descriptor this test owns.
                let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
                assert!(raw >= 100, "dup: {}", std::io::Error::last_os_error());
                // SAFETY: `raw` is a fresh descriptor nothing else owns.
                unsafe { OwnedFd::from_raw_fd(raw) }
            })
            .collect();
        let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&daemon.log)
            .expect("log file");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\"")
            .arg(bin("vtuberd"))
            .envs(daemon.envs())
            .env_remove("VTUBER_DATA_DIR")
            .env("VTUBER_LOG", &daemon.log_filter)
            .envs(daemon.extra_env.iter().map(|(k, v)| (k, v)))
            .env("LISTEN_FDS", fds.len().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        if let Some(names) = names {
            cmd.env("LISTEN_FDNAMES", names);
        }
        // SAFETY: dup2 is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (i, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn vtuberd through sh");
        drop(high);
        Self { child }
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "vtuberd did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What systemd does for `vtuberd.socket`: the private folder and the listening socket.
fn local_socket(daemon: &TestDaemon) -> UnixListener {
    use std::os::unix::fs::DirBuilderExt;
    let dir = daemon.socket.parent().expect("socket folder");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .expect("socket folder");
    UnixListener::bind(&daemon.socket).expect("bind the local socket")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_connected_before_the_daemon_ran_is_served() {
    // The tool server dumps its environment; it is told to pass LISTEN_* on from the
    // daemon's, so they show up there if the daemon kept them.
    let mock = MockLlm::start_blocking(tool_script(
        vec![call("e", "t__env_dump", json!({}))],
        "Dumped.",
    ))
    .expect("mock LLM starts");
    let server = ServerSpec::stdio("t", test_server_bin(), &[])
        .allow_all()
        .sandbox_off()
        .with(
            "env_passthrough",
            json!([
                "LISTEN_PID",
                "LISTEN_FDS",
                "LISTEN_FDNAMES",
                "VTUBER_TEST_PASS"
            ]),
        );
    let mut daemon =
        TestDaemon::new(&McpConfig::new(&mock.base_url(), vec![server]).to_yaml()).expect("daemon");
    daemon
        .extra_env
        .push(("VTUBER_TEST_PASS".into(), "handed-on".into()));
    let local = local_socket(&daemon);
    let web = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the web port");
    let port = web.local_addr().expect("web address").port();

    // No daemon yet: the kernel queues the connection, the client waits for the cookie.
    let socket = daemon.socket.clone();
    let early = tokio::spawn(async move {
        let conn = vtuber_shared::client::connect(&socket, Hello::new("early", false)).await?;
        anyhow::Ok(conn.client.request_timeout(Request::Status, WAIT).await)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!early.is_finished(), "answered with no daemon running?");

    // Named the other way round from their order: the names decide.
    let mut vtuberd = Activated::spawn(&daemon, &[web.as_fd(), local.as_fd()], Some("web:local"));
    let status = match tokio::time::timeout(WAIT, early).await {
        Ok(Ok(Ok(Ok(Reply::Status(s))))) => s,
        other => panic!("{other:?}\n--- daemon log ---\n{}", daemon.log_text()),
    };
    assert_eq!(status.socket, daemon.socket.display().to_string());
    let page = status.web_url.expect("the page is served");
    assert!(
        page.starts_with(&format!("http://127.0.0.1:{port}/?token=")),
        "{page}"
    );
    // The page answers on the passed port: `?token=` becomes a cookie and a redirect.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let r = http.get(&page).send().await.expect("the page answers");
    assert_eq!(r.status(), 303);
    assert!(r.headers().contains_key("set-cookie"));

    // A tool server started by the daemon sees no LISTEN_*.
    let mut client = JsonClient::connect(&daemon.socket, "tools")
        .await
        .expect("client");
    if let Err(e) = client.wait_server_ready("t", WAIT).await {
        panic!("{e:#}\n--- daemon log ---\n{}", daemon.log_text());
    }
    let id = client.send_text("your environment?").await.expect("turn");
    let events = client.finish_turn(id, WAIT).await.expect("turn ends");
    assert_eq!(turn_outcome(&events), TurnOutcome::Finished);
    let dump = tool_result(&mock.requests()[1], "e");
    assert!(dump.contains("VTUBER_TEST_PASS=handed-on"), "{dump}");
    assert!(!dump.contains("LISTEN_"), "{dump}");

    // On stop the socket file stays (systemd's, for the next start), still accepting;
    // the lock and the cookie go.
    let _ = client.request(Request::Shutdown).await;
    let exit = tokio::task::block_in_place(|| vtuberd.wait_exit(WAIT));
    assert!(exit.success(), "{exit}\n{}", daemon.log_text());
    assert!(daemon.socket.exists(), "the socket file was removed");
    assert!(!vtuber_shared::cookie::cookie_path(&daemon.socket).exists());
    UnixStream::connect(&daemon.socket).expect("the socket still accepts");
    let log = daemon.log_text();
    assert!(log.contains("from_service_manager=true"), "{log}");
    assert!(!log.contains("removing stale socket"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_that_cannot_serve_is_refused_with_the_reason() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let (pair, _other) = UnixStream::pair().expect("socket pair");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let cases: [(BorrowedFd<'_>, &str); 3] = [
        (udp.as_fd(), "is an IPv4 datagram socket, not listening"),
        (pair.as_fd(), "is a Unix stream socket, not listening"),
        (tcp.as_fd(), "is an IPv4 stream socket, listening"),
    ];
    for (fd, why) in cases {
        let daemon = TestDaemon::new(&openai_config("http://127.0.0.1:9")).expect("daemon");
        let mut vtuberd = Activated::spawn(&daemon, &[fd], Some("local"));
        let exit = tokio::task::block_in_place(|| vtuberd.wait_exit(WAIT));
        let log = daemon.log_text();
        assert!(!exit.success(), "{log}");
        assert!(
            log.contains(&format!(
                "the `local` socket passed by the service manager {why}; it must be a listening Unix stream socket"
            )),
            "{log}"
        );
        assert!(log.contains("FileDescriptorName="), "no hint: {log}");
        assert!(!daemon.socket.exists());
    }
}

/// Without names, order decides (the local socket first); a web port with the page
/// turned off, and a third socket, are closed with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn unnamed_sockets_go_by_order_and_unwanted_ones_are_closed() {
    let mock = MockLlm::start_blocking(vtuber_test_support::mock_llm::MockBehaviour::reply("ok"))
        .expect("mock LLM starts");
    let daemon = TestDaemon::new(&format!(
        "{}web: {{enabled: false}}\n",
        openai_config(&mock.base_url())
    ))
    .expect("daemon");
    let local = local_socket(&daemon);
    let web = std::net::TcpListener::bind("127.0.0.1:0").expect("web");
    let extra = std::net::TcpListener::bind("127.0.0.1:0").expect("extra");
    let mut vtuberd = Activated::spawn(&daemon, &[local.as_fd(), web.as_fd(), extra.as_fd()], None);
    // The socket exists before the daemon writes its cookie: the client waits for it.
    let conn = vtuber_shared::client::connect(&daemon.socket, Hello::new("order", false));
    let conn = match tokio::time::timeout(WAIT, conn).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("{e}\n{}", daemon.log_text()),
        Err(_) => panic!("no answer\n{}", daemon.log_text()),
    };
    assert_eq!(
        conn.client.request(Request::Shutdown).await,
        Ok(Reply::ShuttingDown)
    );
    let exit = tokio::task::block_in_place(|| vtuberd.wait_exit(WAIT));
    let log = daemon.log_text();
    assert!(exit.success(), "{log}");
    assert!(log.contains("web.enabled is false; closing it"), "{log}");
    assert!(log.contains("has no use for"), "{log}");
}

#[test]
fn the_socket_units_name_their_sockets_and_pass_systemd_analyze() {
    use vtuberd::socket_activation::{LOCAL, WEB};
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd");
    let read = |name: &str| std::fs::read_to_string(units.join(name)).expect("unit file");
    let local = read("vtuberd.socket");
    let web = read("vtuberd-web.socket");
    assert!(
        local.contains(&format!("\nFileDescriptorName={LOCAL}\n")),
        "{local}"
    );
    assert!(
        web.contains(&format!("\nFileDescriptorName={WEB}\n")),
        "{web}"
    );
    // Where clients look by default, and the port the page has by default.
    assert!(local.contains("\nListenStream=%t/vtuber/vtuberd.sock\n"));
    let port = vtuberd::config::WebConfig::default().port;
    assert!(
        web.contains(&format!("\nListenStream=127.0.0.1:{port}\n")),
        "{web}"
    );
    for unit in [&local, &web] {
        assert!(unit.contains("\nService=vtuberd.service\n"), "{unit}");
    }

    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    };
    assert!(found.status.success());
    // verify loads the service the sockets start from the same folder; its ExecStart
    // must exist here.
    let dir = tempfile::tempdir().expect("temp dir");
    let service: String = read("vtuberd.service")
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                "ExecStart=/bin/true\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(dir.path().join("vtuberd.service"), service).expect("service");
    std::fs::write(dir.path().join("vtuberd.socket"), &local).expect("socket");
    std::fs::write(dir.path().join("vtuberd-web.socket"), &web).expect("socket");
    let out = Command::new("systemd-analyze")
        .args(["--man=no", "verify"])
        .arg(dir.path().join("vtuberd.socket"))
        .arg(dir.path().join("vtuberd-web.socket"))
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // Warnings (a name systemd ignores, an unknown key) do not fail verify: none allowed.
    assert!(said.trim().is_empty(), "{said}");
}
