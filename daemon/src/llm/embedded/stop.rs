//! Chat-template markers in generated text. A model that does not know the template it
//! is prompted with (a base model, or one without a template under the ChatML fallback)
//! writes the markers as plain text: `<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`…
//! Those must never reach a client. The first marker ends the reply, and text that may
//! be the start of one is held back until it is known not to be.

/// End-of-turn and role markers of the common chat templates (ChatML, Gemma, Llama 3,
/// Mistral/Llama 2, Phi, Zephyr, DeepSeek).
const MARKERS: &[&str] = &[
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<start_of_turn>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|end|>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "</s>",
    "[INST]",
    "[/INST]",
    "<｜end▁of▁sentence｜>",
];

/// What [`StopFilter::push`] gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Text safe to send (possibly empty while a possible marker is held back).
    Text(String),
    /// A marker was written: send this text (what came before it) and stop.
    Stop(String),
}

/// Holds back text that may be the start of a marker.
#[derive(Debug, Default)]
pub struct StopFilter {
    pending: String,
}

impl StopFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of generated text.
    pub fn push(&mut self, text: &str) -> Filtered {
        self.pending.push_str(text);
        if let Some(at) = MARKERS.iter().filter_map(|m| self.pending.find(m)).min() {
            let before = self.pending[..at].trim_end().to_owned();
            self.pending.clear();
            return Filtered::Stop(before);
        }
        // Keep the longest tail that is a proper prefix of some marker.
        let keep = (1..=self.pending.len())
            .rev()
            .filter(|&n| self.pending.is_char_boundary(self.pending.len() - n))
            .find(|&n| {
                let tail = &self.pending[self.pending.len() - n..];
                MARKERS.iter().any(|m| m.len() > n && m.starts_with(tail))
            })
            .unwrap_or(0);
        let send_up_to = self.pending.len() - keep;
        let out = self.pending[..send_up_to].to_owned();
        self.pending.drain(..send_up_to);
        Filtered::Text(out)
    }

    /// The end of generation: whatever was held back was not a marker after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> (String, bool) {
        let mut f = StopFilter::new();
        let mut out = String::new();
        for p in pieces {
            match f.push(p) {
                Filtered::Text(t) => out.push_str(&t),
                Filtered::Stop(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&f.finish());
        (out, false)
    }

    #[test]
    fn plain_text_passes_through_at_once() {
        let mut f = StopFilter::new();
        assert_eq!(
            f.push("Hello there."),
            Filtered::Text("Hello there.".into())
        );
        assert_eq!(f.finish(), "");
    }

    #[test]
    fn a_marker_split_across_pieces_stops_and_is_not_sent() {
        assert_eq!(
            run(&["Hi! ", "<|im", "_end", "|>assistant", "more"]),
            ("Hi! ".into(), true)
        );
        assert_eq!(run(&["Sure.<end_of_turn>\n"]), ("Sure.".into(), true));
        assert_eq!(run(&["<|im_end|>assistant"]), (String::new(), true));
    }

    #[test]
    fn a_lookalike_is_released_once_it_is_not_a_marker() {
        let mut f = StopFilter::new();
        assert_eq!(f.push("a <"), Filtered::Text("a ".into()));
        assert_eq!(f.push("b> c"), Filtered::Text("<b> c".into()));
        assert_eq!(
            run(&["x <|im", " not a marker"]),
            ("x <|im not a marker".into(), false)
        );
        assert_eq!(run(&["ends with <"]), ("ends with <".into(), false));
    }

    #[test]
    fn multibyte_text_is_never_split() {
        assert_eq!(
            run(&["héllo ", "wörld ✓", "<"]),
            ("héllo wörld ✓<".into(), false)
        );
        assert_eq!(
            run(&["日本", "<｜end▁of", "▁sentence｜>"]),
            ("日本".into(), true)
        );
    }
}
