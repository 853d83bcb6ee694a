//! Server-sent events, as OpenAI-compatible servers, Anthropic and Gemini stream them: bytes in, the `data` of
//! each complete event out, with a bound on line length.

use crate::llm::LlmError;

/// Server-sent events decoder: bytes in, the `data` of each complete event out.
///
/// Handles LF, CRLF and CR line ends (also when split across chunks), multi-line data,
/// comments, and characters split across chunks (lines are decoded only when whole).
///
/// Linear in its input: each byte is looked at once (only new bytes are searched for a
/// line end), and an unfinished line is kept only up to [`MAX_LINE_BYTES`]; a longer one
/// fails the stream instead of growing the buffer.
#[derive(Default)]
pub(crate) struct SseParser {
    /// The unfinished line so far.
    buf: Vec<u8>,
    /// The last line ended in `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    data: String,
    has_data: bool,
}

/// Longest SSE line (and event) accepted. A chunk of a streamed reply is a few hundred
/// bytes; a megabyte without a line end is a server that is not streaming SSE.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

impl SseParser {
    pub(crate) fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<String>, LlmError> {
        let mut events = Vec::new();
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, rest) = chunk.split_at(pos);
            self.check_room(head.len())?;
            let line = if self.buf.is_empty() {
                String::from_utf8_lossy(head).into_owned()
            } else {
                self.buf.extend_from_slice(head);
                let line = String::from_utf8_lossy(&self.buf).into_owned();
                self.buf.clear();
                line
            };
            self.line(&line, &mut events)?;
            chunk = match rest {
                [b'\r', b'\n', tail @ ..] => tail,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, tail @ ..] => tail,
                [] => &[],
            };
        }
        self.check_room(chunk.len())?;
        self.buf.extend_from_slice(chunk);
        Ok(events)
    }

    /// Fails when the unfinished line would outgrow [`MAX_LINE_BYTES`].
    fn check_room(&self, more: usize) -> Result<(), LlmError> {
        if self.buf.len() + more > MAX_LINE_BYTES {
            Err(line_too_long())
        } else {
            Ok(())
        }
    }

    /// Flushes a last line and event the server did not terminate.
    pub(crate) fn finish(&mut self) -> Result<Vec<String>, LlmError> {
        let mut events = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        let rest = String::from_utf8_lossy(&rest);
        if !rest.is_empty() {
            self.line(&rest, &mut events)?;
        }
        self.line("", &mut events)?;
        Ok(events)
    }

    fn line(&mut self, line: &str, events: &mut Vec<String>) -> Result<(), LlmError> {
        if line.is_empty() {
            if self.has_data {
                events.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data && self.data.len() + value.len() + 1 > MAX_LINE_BYTES {
                // A server that never sends the blank line between events: hand over
                // what has gathered rather than let one event grow without end.
                events.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        Ok(())
    }
}

fn line_too_long() -> LlmError {
    LlmError::LineTooLong {
        limit: MAX_LINE_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<String> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in input.chunks(piece) {
            events.extend(parser.push(chunk).unwrap());
        }
        events.extend(parser.finish().unwrap());
        events
    }

    #[test]
    fn sse_parser_refuses_a_line_over_the_limit_without_keeping_it() {
        let mut parser = SseParser::default();
        let piece = vec![b'x'; 64 * 1024];
        let mut fed = 0;
        let err = loop {
            match parser.push(&piece) {
                Ok(events) => assert!(events.is_empty()),
                Err(e) => break e,
            }
            fed += piece.len();
            assert!(
                fed <= MAX_LINE_BYTES,
                "accepted {fed} bytes without a line end"
            );
        };
        assert!(matches!(err, LlmError::LineTooLong { limit } if limit == MAX_LINE_BYTES));
        assert!(err.to_string().contains("1 MiB"), "{err}");
        assert!(parser.buf.len() <= MAX_LINE_BYTES);
        // One chunk holding a whole over-long line is refused too.
        let mut big = vec![b'y'; MAX_LINE_BYTES + 1];
        big.push(b'\n');
        assert!(SseParser::default().push(&big).is_err());
    }

    #[test]
    fn sse_parser_accepts_a_line_at_the_limit() {
        let value = "z".repeat(MAX_LINE_BYTES - "data: ".len());
        let input = format!("data: {value}\n\n");
        assert_eq!(parse_in_pieces(input.as_bytes(), 4096), vec![value]);
    }

    #[test]
    fn sse_data_lines_without_blank_lines_stay_bounded() {
        let line = format!("data: {}\n", "q".repeat(1000));
        let input = line.repeat(3000);
        let events = parse_in_pieces(input.as_bytes(), 8192);
        assert!(events.len() > 1);
        assert!(events.iter().all(|e| e.len() <= MAX_LINE_BYTES));
        assert_eq!(
            events.iter().map(|e| e.lines().count()).sum::<usize>(),
            3000
        );
    }

    #[test]
    fn sse_parser_survives_any_chunking() {
        let input = ": keep-alive\r\n\r\ndata: {\"a\":\"ü☺\"}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata:nospace\r\rdata: [DONE]\n\n";
        let expected = vec![
            "{\"a\":\"ü☺\"}".to_owned(),
            "line1\nline2".to_owned(),
            "nospace".to_owned(),
            "[DONE]".to_owned(),
        ];
        for piece in 1..=input.len() {
            assert_eq!(
                parse_in_pieces(input.as_bytes(), piece),
                expected,
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn sse_parser_flushes_an_unterminated_last_event() {
        assert_eq!(parse_in_pieces(b"data: tail", 3), vec!["tail".to_owned()]);
    }
}
