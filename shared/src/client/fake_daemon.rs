//! A scripted stand-in for vtuberd, for the tests of the client and of its users: a real
//! local socket in a temp dir whose behaviour per request each test writes.

use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

use crate::framing;
use crate::{
    ClientFrame, DaemonState, Event, LlmInfo, ModelLoad, Outcome, Reply, Request, ServerFrame,
    Status,
};

/// A status as an idle daemon with character `aria` reports it.
pub fn status() -> Status {
    Status {
        state: DaemonState::Idle,
        character: "aria".into(),
        llm: LlmInfo {
            backend: "embedded".into(),
            model: "tiny".into(),
        },
        model_load: ModelLoad::Ready,
        clients: 1,
        daemon_version: "0.1.0".into(),
        uptime_secs: 12.5,
        pid: 4242,
        conversation_id: Some(7),
        socket: "/tmp/x.sock".into(),
        config_file: None,
        last_error: None,
        voice: None,
        web_url: None,
        web_auth: None,
        web_error: None,
        avatar_error: None,
        config_files: Vec::new(),
        reload_error: None,
        needs_restart: Vec::new(),
        cpu: None,
    }
}

/// One accepted connection, seen from the daemon's side.
pub struct Peer {
    reader: BufReader<ReadHalf<Stream>>,
    writer: WriteHalf<Stream>,
}

impl Peer {
    pub async fn read(&mut self) -> ClientFrame {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.expect("read frame");
        framing::decode(line.as_bytes()).expect("client frame")
    }

    pub async fn write(&mut self, frame: &ServerFrame) {
        let bytes = framing::encode(frame).expect("encode");
        self.writer.write_all(&bytes).await.expect("write frame");
    }

    /// Writes one line as is (for frames the shared types cannot express).
    pub async fn write_line(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write line");
    }

    pub async fn respond(&mut self, id: u64, reply: Reply) {
        self.write(&ServerFrame::Response {
            id: Some(id),
            outcome: Outcome::Ok(reply),
        })
        .await;
    }

    pub async fn event(&mut self, seq: u64, event: Event) {
        self.write(&ServerFrame::Event { seq, event }).await;
    }

    /// Reads `hello` and answers with a welcome for `protocol`.
    pub async fn handshake(&mut self, protocol: u32) -> ClientFrame {
        let hello = self.read().await;
        assert!(matches!(hello.request, Request::Hello { .. }), "{hello:?}");
        self.respond(
            hello.id,
            Reply::Welcome {
                protocol,
                daemon_version: "0.1.0".into(),
                status: status(),
                last_seq: 0,
            },
        )
        .await;
        hello
    }
}

/// Listens on `dir/vtuberd.sock` and runs `script` for the first connection.
pub fn serve<F, Fut>(dir: &Path, script: F) -> (PathBuf, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let path = dir.join("vtuberd.sock");
    let name = path.clone().to_fs_name::<GenericFilePath>().expect("name");
    let listener = ListenerOptions::new()
        .name(name)
        .create_tokio()
        .expect("listen");
    let task = tokio::spawn(async move {
        let stream = listener.accept().await.expect("accept");
        let (r, w) = tokio::io::split(stream);
        script(Peer {
            reader: BufReader::new(r),
            writer: w,
        })
        .await;
    });
    (path, task)
}
