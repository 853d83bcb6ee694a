//! The socket under the protocol test clients: frame lines in arrival order, with the
//! lines passed over while looking for one response kept (raw) for the next read.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;
use vtuber_shared::client::frames::{self, FrameReader, FrameWriter};
use vtuber_shared::framing::{self, Line};
use vtuber_shared::{ClientFrame, Request};

/// A connected socket, the lines read ahead of their reader, and the next request id.
pub struct FrameQueue {
    reader: FrameReader,
    writer: FrameWriter,
    /// Lines read past while looking for another, oldest first.
    pending: VecDeque<Vec<u8>>,
    next_id: u64,
}

/// One frame line, as the daemon sent it.
pub struct Received {
    pub line: Vec<u8>,
    /// Read off the socket just now, not taken from the queue.
    pub fresh: bool,
}

impl FrameQueue {
    /// Connected but not greeted.
    pub async fn open(socket: &Path) -> anyhow::Result<Self> {
        let (reader, writer) = frames::open(socket).await?;
        Ok(Self {
            reader,
            writer,
            pending: VecDeque::new(),
            next_id: 1,
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write(bytes).await?;
        Ok(())
    }

    /// Sends `request` under the next id; that id.
    pub async fn send(&mut self, request: Request) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let line = framing::encode(&ClientFrame { id, request })?;
        self.writer.write(&line).await?;
        Ok(id)
    }

    /// The next line: a queued one first, else one off the socket by `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> anyhow::Result<Received> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Received { line, fresh: false });
        }
        let line = tokio::time::timeout_at(deadline, self.reader.next_line())
            .await
            .context("timed out waiting for a frame")??;
        match line {
            None => bail!("the daemon closed the connection"),
            Some(Line::Frame(line)) => Ok(Received { line, fresh: true }),
            Some(Line::Oversized { len }) => bail!("daemon sent an oversized frame ({len})"),
        }
    }

    /// Keeps only the queued lines `keep` accepts (to drop news already seen elsewhere).
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        self.pending.retain(|line| keep(line));
    }

    /// Reads lines (each within `wait`) until `pick` takes one; those it passes over
    /// stay queued, in order, ahead of any read later.
    pub async fn find<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(&Received) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let mut skipped = Vec::new();
        let found = loop {
            let received = self.next(Instant::now() + wait).await?;
            if let Some(found) = pick(&received)? {
                break found;
            }
            skipped.push(received.line);
        };
        for line in skipped.into_iter().rev() {
            self.pending.push_front(line);
        }
        Ok(found)
    }
}
