//! Every `Request` from any text: structure-aware inputs (the text is parsed as JSON
//! first, then wrapped as a frame) so the fuzzer reaches each request's fields rather
//! than stopping at the JSON syntax.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vtuber_shared::framing;
use vtuber_shared::{ClientFrame, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As a whole frame, and as the `request` of a frame.
    let framed = format!("{{\"id\":1,\"request\":{text}}}");
    for candidate in [text, framed.as_str()] {
        if let Ok(frame) = framing::decode::<ClientFrame>(candidate.as_bytes()) {
            let again = framing::encode(&frame).expect("a decoded frame encodes");
            let back: ClientFrame = framing::decode(&again).expect("an encoded frame decodes");
            assert_eq!(back, frame);
        }
    }
    if let Ok(request) = serde_json::from_str::<Request>(text) {
        let again = serde_json::to_string(&request).expect("a decoded request encodes");
        let back: Request = serde_json::from_str(&again).expect("an encoded request decodes");
        assert_eq!(back, request);
    }
});
