//! `vtuber models pull` against a local server that speaks Ollama's `/api/pull` stream
//! (JSON lines), including one that fails and one that breaks off mid-way.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;

/// Serves one request with `body` (sent as is after the headers; `close_early` drops the
/// connection before the end). Returns the address and the request body received.
fn serve_once(status: &str, body: String) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    let status = status.to_owned();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut length = 0usize;
        let mut request_line = String::new();
        let _ = reader.read_line(&mut request_line);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut request = vec![0u8; length];
        let _ = reader.read_exact(&mut request);
        let _ = tx.send(format!(
            "{}{}",
            request_line.trim(),
            String::from_utf8_lossy(&request)
        ));
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-ndjson\r\nconnection: close\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
    });
    (format!("http://{addr}"), rx)
}

fn pull(base: &str, name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vtuber"))
        .args(["models", "pull", name, "--base-url", base])
        .output()
        .expect("run vtuber")
}

/// Runs a pull that must fail and returns its stderr.
fn failed_pull(base: &str, name: &str) -> String {
    let out = pull(base, name);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    text(&out.stderr)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_pull_shows_its_progress_and_ends_on_success() {
    let lines = [
        r#"{"status":"pulling manifest"}"#,
        r#"{"status":"pulling 3f2a","digest":"sha256:3f2a0011","total":2000,"completed":500}"#,
        r#"{"status":"pulling 3f2a","digest":"sha256:3f2a0011","total":2000,"completed":2000}"#,
        r#"{"status":"verifying sha256 digest"}"#,
        r#"{"status":"success"}"#,
    ];
    let (base, request) = serve_once("200 OK", lines.join("\n") + "\n");
    let out = pull(&base, "qwen3:8b");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let asked = request.recv().expect("the server was asked");
    assert!(asked.starts_with("POST /api/pull"), "{asked}");
    assert!(asked.contains(r#""model":"qwen3:8b""#), "{asked}");
    let err = text(&out.stderr);
    // Not a terminal here: one line per new status.
    assert!(
        err.contains("pulling manifest\npulling 3f2a\nverifying sha256 digest\nsuccess"),
        "{err}"
    );
    assert!(
        text(&out.stdout).contains("pulled qwen3:8b"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_unknown_model_and_a_broken_download_say_what_to_do() {
    let cases = [
        (
            "500 Internal Server Error",
            r#"{"error":"pull model manifest: file does not exist"}"#.to_owned(),
            "Ollama refused to pull `qwen3:8b` (500 Internal Server Error): pull model manifest: file does not exist",
        ),
        // The connection closes before `success`.
        (
            "200 OK",
            r#"{"status":"pulling 3f2a","total":2000,"completed":500}"#.to_owned() + "\n",
            "run the same command again to resume",
        ),
        // An error line inside the stream.
        (
            "200 OK",
            r#"{"status":"pulling manifest"}"#.to_owned()
                + "\n"
                + r#"{"error":"disk full"}"#
                + "\n",
            "Ollama could not pull `qwen3:8b`: disk full",
        ),
    ];
    for (status, body, want) in cases {
        let (base, _) = serve_once(status, body);
        let err = failed_pull(&base, "qwen3:8b");
        assert!(err.contains(want), "{want}: {err}");
    }
    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let err = failed_pull(&format!("http://127.0.0.1:{port}"), "qwen3:8b");
    assert!(err.contains("is it running"), "{err}");
}
