//! Property tests standing in for fuzz targets (issue 19) for the two stream parsers an
//! LLM server's bytes go through: server-sent events and NDJSON. Any bytes, cut into
//! reads anywhere, must give the same events as the whole stream, never panic, and
//! keep the line bound. `scripts/fuzz.sh` runs these longer (FUZZ_PROPTESTS=1).

use proptest::prelude::*;

use super::http::LineSplitter;
use super::sse::{MAX_LINE_BYTES, SseParser};

/// Bytes that look like a stream often enough to reach every branch: SSE fields,
/// line ends of all three kinds, comments, multi-byte characters, invalid UTF-8.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n\n".to_vec()),
        Just("é世🎉".as_bytes().to_vec()),
        Just(b"{\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}".to_vec()),
        Just(b"[DONE]".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Cut points into `len` bytes, from arbitrary numbers.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut at: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    at.sort_unstable();
    at.dedup();
    at
}

fn sse_events(chunks: &[&[u8]]) -> Result<Vec<String>, String> {
    let mut p = SseParser::default();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(p.push(c).map_err(|e| e.to_string())?);
    }
    out.extend(p.finish().map_err(|e| e.to_string())?);
    Ok(out)
}

fn ndjson_lines(chunks: &[&[u8]]) -> Result<Vec<String>, String> {
    let mut s = LineSplitter::default();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(s.push(c).map_err(|e| e.to_string())?);
    }
    out.extend(s.finish());
    Ok(out)
}

fn split_at<'a>(bytes: &'a [u8], at: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &to in at {
        out.push(&bytes[from..to]);
        from = to;
    }
    out.push(&bytes[from..]);
    out
}

proptest! {
    #[test]
    fn sse_events_do_not_depend_on_where_reads_end(
        bytes in prop_oneof![stream_bytes(), prop::collection::vec(any::<u8>(), 0..512)],
        raw_cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = sse_events(&[&bytes]);
        let at = cuts(bytes.len(), &raw_cuts);
        let pieces = sse_events(&split_at(&bytes, &at));
        prop_assert_eq!(&whole, &pieces);
        if let Ok(events) = whole {
            for e in events {
                prop_assert!(e.len() <= MAX_LINE_BYTES);
            }
        }
    }

    #[test]
    fn ndjson_lines_do_not_depend_on_where_reads_end(
        bytes in prop_oneof![stream_bytes(), prop::collection::vec(any::<u8>(), 0..512)],
        raw_cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = ndjson_lines(&[&bytes]);
        let at = cuts(bytes.len(), &raw_cuts);
        let pieces = ndjson_lines(&split_at(&bytes, &at));
        prop_assert_eq!(&whole, &pieces);
        if let Ok(lines) = whole {
            for l in lines {
                prop_assert!(!l.is_empty() && !l.contains('\n'));
            }
        }
    }
}

#[test]
fn a_stream_without_line_ends_fails_at_the_bound_instead_of_growing() {
    let chunk = vec![b'x'; 64 * 1024];
    let mut p = SseParser::default();
    let mut s = LineSplitter::default();
    let (mut sse_failed, mut nd_failed) = (false, false);
    for _ in 0..(MAX_LINE_BYTES / chunk.len() + 2) {
        sse_failed |= p.push(&chunk).is_err();
        nd_failed |= s.push(&chunk).is_err();
    }
    assert!(sse_failed && nd_failed);
}
