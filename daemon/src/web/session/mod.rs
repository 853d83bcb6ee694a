//! One WebSocket connection speaking the Open-LLM-VTuber protocol.
//!
//! A connection is three tasks: the `reader` (limits, parsing, quick answers), the
//! `worker` that runs requests needing the conversation or the history store one at a
//! time (so a slow one never holds up `frontend-playback-complete`), and the `writer`,
//! which merges answers with the shared event stream and runs this client's side of each
//! turn: the one `backend-synth-complete`, then waiting (bounded) for the client's
//! `frontend-playback-complete` before `force-new-message` and the chain's end.

mod reader;
mod worker;
mod writer;

use std::sync::Arc;

use futures::StreamExt;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::WebState;
use super::avatars::ModelConf;
use super::olv_messages::ServerMessage;
use super::socket::Socket;
use reader::Reader;
use writer::Writer;

/// Requests queued for the worker before new ones are refused.
const WORK_QUEUE: usize = 32;
/// Origin label of turns typed in the browser.
pub const ORIGIN_TEXT: &str = "web";
/// Origin label of turns spoken into the browser.
pub const ORIGIN_VOICE: &str = "web (voice)";

/// What the reader and worker hand the writer.
enum Out {
    Msg(Utf8Bytes),
    /// `set-model-and-conf`; skipped when `force` is false and this client already has it.
    Model {
        conf: Arc<ModelConf>,
        force: bool,
    },
    /// The client finished playing the turn's audio.
    PlaybackComplete,
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

impl Out {
    fn msg(m: ServerMessage) -> Self {
        Self::Msg(m.encode())
    }
}

/// Runs one connection until either side closes it. `own_page`: the client is our own
/// page (its origin), not another frontend.
pub(super) async fn run(socket: Socket, web: Arc<WebState>, peer: String, own_page: bool) {
    let services = web.services.clone();
    let mut connection = services.clients.connect();
    let conn = connection.id();
    let client_uid = format!("web-{conn}");
    // Subscribe before anything else, so no event between now and the greeting is lost.
    let events = web.hub.subscribe();
    let n = connection.attach();
    // An Open-LLM-VTuber page plays every reply.
    connection.listen();
    tracing::info!(conn, %peer, clients = n, "web client connected");

    let (sink, stream) = socket.split();
    let closed = CancellationToken::new();
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let conf = Arc::new(
        web.characters
            .model_conf(&services.conversation.view().character),
    );
    if !own_page {
        web.characters.warn_if_cubism2(&conf);
    }
    let writer = tokio::spawn(Writer::new(sink, client_uid, conn).run(
        out_rx,
        events,
        conf,
        web.shutdown.clone(),
        closed.clone(),
    ));
    let (work_tx, work_rx) = mpsc::channel::<worker::Job>(WORK_QUEUE);
    let worker = tokio::spawn(worker::run(web.clone(), work_rx, out_tx.clone()));

    let mut reader = Reader::new(web.clone(), conn, out_tx, work_tx, own_page);
    reader.run(stream, &closed).await;
    // The reader's senders go: the worker ends, then the writer.
    drop(reader);
    closed.cancel();
    let _ = worker.await;
    let _ = writer.await;

    drop(connection);
    tracing::info!(
        conn,
        clients = services.clients.count(),
        "web client disconnected"
    );
}
