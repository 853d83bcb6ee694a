//! The socket's byte stream → frames → `ClientFrame`/`ServerFrame`, as the daemon and
//! the clients read it: any bytes, cut anywhere, must give frames no longer than the
//! limit, and decoding must fail cleanly or give a value that encodes and decodes to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vtuber_shared::framing::{self, Line, LineSplitter, MAX_FRAME_BYTES};
use vtuber_shared::{ClientFrame, ServerFrame};

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the stream is cut into reads.
    let (cut, bytes) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c).max(1), rest),
        None => return,
    };
    let mut whole = LineSplitter::new();
    let mut pieces = LineSplitter::new();
    let at_once = whole.push(bytes);
    let mut in_pieces = Vec::new();
    for chunk in bytes.chunks(cut) {
        in_pieces.extend(pieces.push(chunk));
    }
    assert_eq!(at_once, in_pieces, "cutting the stream changed its frames");
    for line in at_once {
        let Line::Frame(frame) = line else { continue };
        assert!(frame.len() <= MAX_FRAME_BYTES);
        assert!(!frame.contains(&b'\n'));
        if let Ok(request) = framing::decode::<ClientFrame>(&frame) {
            let again = framing::encode(&request).expect("a decoded request encodes");
            let back: ClientFrame = framing::decode(&again).expect("an encoded request decodes");
            assert_eq!(back, request);
        }
        if let Ok(server) = framing::decode::<ServerFrame>(&frame) {
            // Events carry floats, which may not round-trip bit for bit; encoding must work.
            let _ = framing::encode(&server);
        }
    }
});
