//! JSON Lines framing: one JSON object per `\n`-terminated line, bounded in size.

use serde::{Serialize, de::DeserializeOwned};

/// Largest frame either side accepts, newline excluded. Big enough for a page of
/// history, small enough that a runaway client cannot exhaust memory. Anything that
/// could grow past it (a reply, a stored message) is split over several frames; see
/// [`json_chunks`].
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Bytes `s` takes inside a JSON string literal (quotes excluded), exactly as
/// `serde_json` writes it: text is measured before it goes into a frame, so nothing
/// built from it can outgrow [`MAX_FRAME_BYTES`].
pub fn json_str_len(s: &str) -> usize {
    s.bytes().map(escaped_len).sum()
}

/// Escaped length of one byte: non-ASCII bytes are written as they are.
fn escaped_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 2,
        0..0x20 => 6,
        _ => 1,
    }
}

/// The longest prefix of `s` (ending on a character boundary) whose escaped length is at
/// most `budget`; its byte length. Linear in the prefix.
pub fn json_prefix_len(s: &str, budget: usize) -> usize {
    let mut used = 0;
    for (i, b) in s.bytes().enumerate() {
        used += escaped_len(b);
        if used > budget {
            let mut end = i;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            return end;
        }
    }
    s.len()
}

/// Splits `s` into pieces whose escaped length is at most `budget` each (at least one
/// character per piece, so a budget under 12 bytes may be exceeded by one character).
/// Concatenating the pieces gives `s`; an empty `s` gives no pieces.
pub fn json_chunks(s: &str, budget: usize) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = json_prefix_len(rest, budget);
        if end == 0 {
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("frame is not valid UTF-8")]
    NotUtf8,
    #[error("frame is not valid JSON for this message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Serialises `value` as one line, newline included.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = serde_json::to_vec(value)?;
    if out.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: out.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    out.push(b'\n');
    Ok(out)
}

/// Parses one line (with or without its trailing newline).
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, FrameError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: line.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let text = std::str::from_utf8(line).map_err(|_| FrameError::NotUtf8)?;
    Ok(serde_json::from_str(text)?)
}

/// Incremental splitter for a byte stream into frames, enforcing [`MAX_FRAME_BYTES`]
/// without buffering an oversized line: the excess is discarded up to the next newline
/// and reported once, so the connection can carry on.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    discarding: Option<usize>,
}

/// One unit out of [`LineSplitter`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Frame(Vec<u8>),
    /// A line longer than the limit was dropped; `len` is its length.
    Oversized {
        len: usize,
    },
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes and returns every line completed by them.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(pos) => {
                    let (head, rest) = data.split_at(pos);
                    data = &rest[1..];
                    if let Some(skipped) = self.discarding.take() {
                        out.push(Line::Oversized {
                            len: skipped + head.len(),
                        });
                        continue;
                    }
                    if self.buf.len() + head.len() > MAX_FRAME_BYTES {
                        out.push(Line::Oversized {
                            len: self.buf.len() + head.len(),
                        });
                        self.buf.clear();
                        continue;
                    }
                    self.buf.extend_from_slice(head);
                    let line = std::mem::take(&mut self.buf);
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        out.push(Line::Frame(line));
                    }
                }
                None => {
                    if let Some(skipped) = self.discarding.as_mut() {
                        *skipped += data.len();
                    } else if self.buf.len() + data.len() > MAX_FRAME_BYTES {
                        self.discarding = Some(self.buf.len() + data.len());
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(data);
                    }
                    data = &[];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::new();
        assert!(s.push(b"{\"a\":").is_empty());
        let lines = s.push(b"1}\n{\"b\":2}\n\n{\"c\"");
        assert_eq!(
            lines,
            vec![
                Line::Frame(b"{\"a\":1}".to_vec()),
                Line::Frame(b"{\"b\":2}".to_vec())
            ]
        );
        assert_eq!(s.push(b":3}\n"), vec![Line::Frame(b"{\"c\":3}".to_vec())]);
    }

    #[test]
    fn oversized_line_is_dropped_and_reported_once() {
        let mut s = LineSplitter::new();
        let big = vec![b'x'; MAX_FRAME_BYTES + 10];
        assert!(s.push(&big[..MAX_FRAME_BYTES / 2]).is_empty());
        assert!(s.push(&big[MAX_FRAME_BYTES / 2..]).is_empty());
        let lines = s.push(b"yy\n{}\n");
        assert_eq!(
            lines,
            vec![
                Line::Oversized {
                    len: MAX_FRAME_BYTES + 12
                },
                Line::Frame(b"{}".to_vec())
            ]
        );
    }

    #[test]
    fn json_lengths_match_serde() {
        let samples = [
            "",
            "plain",
            "quote \" and \\ backslash",
            "tab\tnew\nline\r\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f} control",
            "héllo 世界 ☺ 🎉",
        ];
        for s in samples {
            let serde_len = serde_json::to_string(s).unwrap().len() - 2;
            assert_eq!(json_str_len(s), serde_len, "{s:?}");
        }
    }

    #[test]
    fn json_chunks_respect_the_budget_and_characters() {
        let text = "aé\"世\u{1}🎉x".repeat(50);
        for budget in [1, 6, 7, 12, 13, 100, 10_000] {
            let pieces: Vec<&str> = json_chunks(&text, budget).collect();
            assert_eq!(pieces.concat(), text, "budget {budget}");
            for p in &pieces {
                assert!(!p.is_empty());
                assert!(
                    json_str_len(p) <= budget.max(6),
                    "budget {budget}: piece of {}",
                    json_str_len(p)
                );
            }
        }
        assert_eq!(json_chunks("", 10).count(), 0);
        assert_eq!(json_prefix_len("abc", 2), 2);
        assert_eq!(json_prefix_len("é", 1), 0);
    }

    #[test]
    fn encode_decode_roundtrip() {
        let v = serde_json::json!({"x": "héllo 世界"});
        let bytes = encode(&v).unwrap();
        assert_eq!(*bytes.last().unwrap(), b'\n');
        let back: serde_json::Value = decode(&bytes).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn decode_rejects_bad_utf8() {
        assert!(matches!(
            decode::<serde_json::Value>(&[0xff, 0xfe]),
            Err(FrameError::NotUtf8)
        ));
    }
}
