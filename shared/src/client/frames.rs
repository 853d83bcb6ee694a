//! The framed socket under every client: opens the daemon's socket, writes lines, and
//! reads what the daemon sends one line at a time, in order.
//!
//! [`Client`](super::Client) builds request routing on it; tests use it as is to send
//! malformed bytes and to see every frame, seq numbers included.

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::framing::{Line, LineSplitter};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Connects to the daemon's socket at `socket`. Nothing is sent yet (no `hello`).
pub async fn open(socket: &Path) -> io::Result<(FrameReader, FrameWriter)> {
    let name = socket.to_path_buf().to_fs_name::<GenericFilePath>()?;
    let stream = Stream::connect(name).await?;
    let (read, write) = tokio::io::split(stream);
    Ok((
        FrameReader {
            read,
            splitter: LineSplitter::new(),
            ready: VecDeque::new(),
            buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
        },
        FrameWriter { write },
    ))
}

/// The receive side: the daemon's lines, split and in order.
pub struct FrameReader {
    read: ReadHalf<Stream>,
    splitter: LineSplitter,
    ready: VecDeque<Line>,
    buf: Box<[u8]>,
}

impl FrameReader {
    /// The next line, or `None` once the daemon has closed the connection.
    ///
    /// Cancel-safe: a line is never lost when the future is dropped (e.g. by a timeout).
    pub async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(line));
            }
            let n = self.read.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.ready.extend(self.splitter.push(&self.buf[..n]));
        }
    }
}

/// The send side.
pub struct FrameWriter {
    write: WriteHalf<Stream>,
}

impl FrameWriter {
    /// Writes `bytes` as they are (an encoded frame ends in its newline) and flushes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write.write_all(bytes).await?;
        self.write.flush().await
    }
}
