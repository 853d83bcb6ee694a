//! Decoding of generated token pieces into text, character by character.

use encoding_rs::{CoderResult, Decoder};

/// Turns token pieces into text without ever splitting a character: bytes of a
/// character spread over several tokens wait until it is complete. A character still
/// incomplete when generation ends is dropped.
pub struct Utf8Stream {
    decoder: Decoder,
}

impl Default for Utf8Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Stream {
    pub fn new() -> Self {
        Self {
            decoder: encoding_rs::UTF_8.new_decoder_without_bom_handling(),
        }
    }

    /// The complete characters available after `bytes`; invalid bytes become U+FFFD.
    pub fn push(&mut self, mut bytes: &[u8]) -> String {
        let mut out = String::new();
        loop {
            let room = self
                .decoder
                .max_utf8_buffer_length(bytes.len())
                .unwrap_or(bytes.len().saturating_mul(3).saturating_add(16));
            out.reserve(room);
            let (result, read, _) = self.decoder.decode_to_string(bytes, &mut out, false);
            bytes = &bytes[read..];
            match result {
                CoderResult::InputEmpty => return out,
                CoderResult::OutputFull => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_characters_split_across_pieces_come_out_whole() {
        let text = "héllo ☺ 🐉 end";
        let bytes = text.as_bytes();
        // Every split point, including inside the 2-, 3- and 4-byte characters.
        for cut in 1..bytes.len() {
            let mut dec = Utf8Stream::new();
            let a = dec.push(&bytes[..cut]);
            let b = dec.push(&bytes[cut..]);
            assert!(!a.contains('\u{FFFD}') && !b.contains('\u{FFFD}'));
            assert_eq!(format!("{a}{b}"), text, "cut at {cut}");
        }
        // The dragon's four bytes one at a time: nothing until the last.
        let mut dec = Utf8Stream::new();
        let dragon = "🐉".as_bytes();
        assert_eq!(dec.push(&dragon[..1]), "");
        assert_eq!(dec.push(&dragon[1..2]), "");
        assert_eq!(dec.push(&dragon[2..3]), "");
        assert_eq!(dec.push(&dragon[3..]), "🐉");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut dec = Utf8Stream::new();
        assert_eq!(dec.push(b"a\xFFb"), "a\u{FFFD}b");
    }
}
