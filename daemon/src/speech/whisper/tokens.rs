//! Whisper's vocabulary as CTranslate2 stores it (`vocabulary.txt`, one token per line,
//! id = line number): turning token ids back into text, and finding the special tokens by
//! name. Decoding is all transcription needs, so no BPE encoder (or `tokenizers`) is here.

use std::collections::HashMap;

/// GPT-2's byte-level BPE spells every byte as a printable character; this undoes it.
/// Same table as OpenAI's `bytes_to_unicode`: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes become U+0100.. in byte order.
fn unicode_to_bytes() -> HashMap<char, u8> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut map = HashMap::with_capacity(256);
    let mut n = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(c, b);
    }
    map
}

/// Ids of the special tokens transcription needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specials {
    pub eot: u32,
    pub sot: u32,
    pub no_timestamps: u32,
    /// `<|nocaptions|>` (older vocabularies) or `<|nospeech|>`.
    pub no_speech: Option<u32>,
    /// `<|0.00|>`, the first timestamp token, when the vocabulary has them.
    pub timestamp_begin: Option<u32>,
    /// Language and task tokens, which only multilingual models' prompts use.
    pub english: Option<u32>,
    pub transcribe: Option<u32>,
    pub translate: Option<u32>,
    /// The single space token, which OpenAI suppresses as the first sampled token.
    pub space: Option<u32>,
}

/// Whisper's token table.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    tokens: Vec<String>,
    bytes: HashMap<char, u8>,
    pub specials: Specials,
    /// True for the English-only models (tiny.en etc.), whose prompt has no language or task.
    pub english_only: bool,
    /// The language tokens (`<|en|>` ... ) of a multilingual vocabulary, in id order:
    /// those between `<|startoftranscript|>` and `<|translate|>`.
    pub languages: Vec<u32>,
}

impl Vocabulary {
    /// Parses `vocabulary.txt`. Errors name the special token that is missing.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut tokens: Vec<String> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect();
        // A trailing newline leaves one empty entry that is not a token.
        if tokens.last().is_some_and(String::is_empty) {
            tokens.pop();
        }
        Self::from_tokens(tokens)
    }

    pub fn from_tokens(tokens: Vec<String>) -> Result<Self, String> {
        let find = |name: &str| {
            tokens
                .iter()
                .rposition(|t| t == name)
                .and_then(|i| u32::try_from(i).ok())
        };
        let need = |name: &str| find(name).ok_or_else(|| format!("vocabulary has no {name} token"));
        let specials = Specials {
            eot: need("<|endoftext|>")?,
            sot: need("<|startoftranscript|>")?,
            no_timestamps: need("<|notimestamps|>")?,
            no_speech: find("<|nocaptions|>").or_else(|| find("<|nospeech|>")),
            timestamp_begin: find("<|0.00|>"),
            english: find("<|en|>"),
            transcribe: find("<|transcribe|>"),
            translate: find("<|translate|>"),
            space: find("\u{120}"),
        };
        // English-only vocabularies put <|startoftranscript|> right after <|endoftext|>
        // (50256, 50257); multilingual ones have eot 50257. OpenAI tells them apart by
        // vocabulary size, which amounts to the same test.
        let english_only = specials.eot == 50256 || specials.english.is_none();
        let languages = match (english_only, specials.translate) {
            (false, Some(translate)) => (specials.sot + 1..translate)
                .filter(|&id| {
                    tokens
                        .get(id as usize)
                        .is_some_and(|t| t.starts_with("<|") && t.ends_with("|>"))
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            tokens,
            bytes: unicode_to_bytes(),
            specials,
            english_only,
            languages,
        })
    }

    /// The token of language `code` (`ja`, `en`, ...), if the model knows it.
    pub fn language_token(&self, code: &str) -> Option<u32> {
        let name = format!("<|{code}|>");
        self.languages
            .iter()
            .copied()
            .find(|&id| self.tokens.get(id as usize).is_some_and(|t| *t == name))
    }

    /// The code of a language token (`<|ja|>` → `ja`).
    pub fn language_code(&self, id: u32) -> &str {
        self.tokens
            .get(id as usize)
            .map(|t| t.trim_start_matches("<|").trim_end_matches("|>"))
            .unwrap_or("?")
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Text of the ordinary tokens in `ids`; special tokens (id ≥ `<|endoftext|>`) and
    /// unknown ids are left out. Bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if id >= self.specials.eot {
                continue;
            }
            let Some(tok) = self.tokens.get(id as usize) else {
                continue;
            };
            for c in tok.chars() {
                match self.bytes.get(&c) {
                    Some(&b) => bytes.push(b),
                    // Not byte-level text (should not happen): keep the character.
                    None => bytes.extend(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(extra: &[&str]) -> Vocabulary {
        let mut t: Vec<String> = [
            "Hello",
            "\u{120}world",
            "!",
            "\u{120}caf",
            "\u{C3}\u{A9}",
            "\u{C3}",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        t.extend(
            [
                "<|endoftext|>",
                "<|startoftranscript|>",
                "<|nocaptions|>",
                "<|notimestamps|>",
                "<|0.00|>",
            ]
            .map(String::from),
        );
        Vocabulary::from_tokens(t).expect("has specials")
    }

    #[test]
    fn multilingual_vocabularies_list_their_languages() {
        let t: Vec<String> = [
            "a",
            "<|endoftext|>",
            "<|startoftranscript|>",
            "<|en|>",
            "<|es|>",
            "<|ja|>",
            "<|translate|>",
            "<|transcribe|>",
            "<|notimestamps|>",
        ]
        .map(String::from)
        .to_vec();
        let v = Vocabulary::from_tokens(t).expect("parses");
        assert!(!v.english_only);
        assert_eq!(v.languages, [3, 4, 5]);
        assert_eq!(v.language_token("es"), Some(4));
        assert_eq!(v.language_token("xx"), None);
        // Only language tokens count, not other specials by the same spelling.
        assert_eq!(v.language_token("transcribe"), None);
        assert_eq!(v.language_code(5), "ja");
        // English-only vocabularies have none.
        assert!(vocab(&[]).languages.is_empty());
    }

    #[test]
    fn byte_table_is_gpt2s() {
        let m = unicode_to_bytes();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'\u{120}'], b' ');
        assert_eq!(m[&'\u{10A}'], b'\n');
        assert_eq!(m[&'\u{100}'], 0);
        assert_eq!(m[&'!'], b'!');
        // The soft hyphen is the last of the 68 remapped bytes.
        assert_eq!(m[&'\u{143}'], 0xAD);
        assert_eq!(m[&'\u{FF}'], 0xFF);
    }

    #[test]
    fn decodes_byte_level_bpe_with_multibyte_utf8() {
        let v = vocab(&[]);
        // "é" is two bytes C3 A9, spelled by the BPE as the characters Ã and ©.
        assert_eq!(v.decode(&[0, 1, 2, 3, 4]), "Hello world! café");
        // Special tokens vanish; a lone lead byte becomes the replacement character.
        let s = &v.specials;
        assert_eq!(v.decode(&[s.sot, s.no_timestamps, 0, s.eot]), "Hello");
        assert_eq!(v.decode(&[3, 5]), " caf\u{FFFD}");
        assert_eq!(v.decode(&[9999]), "");
    }

    #[test]
    fn finds_special_tokens_by_name() {
        let v = vocab(&[]);
        let s = &v.specials;
        assert_eq!(
            (s.eot, s.sot, s.no_speech, s.no_timestamps),
            (6, 7, Some(8), 9)
        );
        assert_eq!(s.timestamp_begin, Some(10));
        assert_eq!(s.space, None);
        assert!(v.english_only);
        let v = vocab(&["\u{120}"]);
        assert_eq!(v.specials.space, Some(6));
        assert!(Vocabulary::from_text("a\nb\n").is_err());
        let v =
            Vocabulary::from_text("a\n<|endoftext|>\n<|startoftranscript|>\n<|notimestamps|>\n")
                .expect("parses");
        assert_eq!(v.len(), 4);
    }
}
