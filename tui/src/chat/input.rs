//! The multi-line input box: text, a cursor, and editing by grapheme cluster so a
//! single Backspace removes a whole emoji or accented letter.

use unicode_segmentation::UnicodeSegmentation;

use super::wrap::grapheme_width;

#[derive(Debug, Default, Clone)]
pub struct Input {
    text: String,
    /// Byte offset, always on a grapheme boundary.
    cursor: usize,
}

impl Input {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Empties the box and returns what was in it.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    pub fn set(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = self.text.len();
    }

    pub fn insert(&mut self, s: &str) {
        // Pasted text may carry `\r\n` or tabs; keep the box to what it can draw.
        let clean = super::wrap::sanitize(&s.replace("\r\n", "\n").replace('\r', "\n"));
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    pub fn backspace(&mut self) {
        let start = self.prev_boundary();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    pub fn delete(&mut self) {
        let end = self.next_boundary();
        self.text.replace_range(self.cursor..end, "");
    }

    pub fn left(&mut self) {
        self.cursor = self.prev_boundary();
    }

    pub fn right(&mut self) {
        self.cursor = self.next_boundary();
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Deletes from the start of the line to the cursor (Ctrl+U).
    pub fn kill_line_before(&mut self) {
        let start = self.line_start();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes the word before the cursor (Ctrl+W).
    pub fn kill_word_before(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches([' ', '\t']);
        let start = trimmed.rfind(|c: char| c.is_whitespace()).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        });
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Moves to the same column of the previous (`up`) or next logical line;
    /// returns false when there is no such line.
    pub fn vertical(&mut self, up: bool) -> bool {
        let start = self.line_start();
        let column: usize = self.text[start..self.cursor]
            .graphemes(true)
            .map(grapheme_width)
            .sum();
        let target_start = if up {
            if start == 0 {
                return false;
            }
            self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1)
        } else {
            match self.text[self.cursor..].find('\n') {
                Some(i) => self.cursor + i + 1,
                None => return false,
            }
        };
        let line_end = self.text[target_start..]
            .find('\n')
            .map_or(self.text.len(), |i| target_start + i);
        let mut pos = target_start;
        let mut col = 0;
        for (i, g) in self.text[target_start..line_end].grapheme_indices(true) {
            let w = grapheme_width(g);
            if col + w > column {
                break;
            }
            col += w;
            pos = target_start + i + g.len();
        }
        self.cursor = pos;
        true
    }

    /// The text hard-wrapped to `width` cells, and where the cursor lands (row, column).
    pub fn layout(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(2);
        let mut rows = vec![String::new()];
        let mut col = 0;
        let mut cursor = (0, 0);
        let mut cursor_set = false;
        for (i, g) in self.text.grapheme_indices(true) {
            if i == self.cursor {
                cursor = (rows.len() - 1, col);
                cursor_set = true;
            }
            if g == "\n" || g == "\r\n" {
                rows.push(String::new());
                col = 0;
                continue;
            }
            let w = grapheme_width(g);
            if col + w > width {
                rows.push(String::new());
                col = 0;
                if i == self.cursor {
                    cursor = (rows.len() - 1, 0);
                }
            }
            if let Some(row) = rows.last_mut() {
                row.push_str(g);
            }
            col += w;
        }
        if !cursor_set {
            cursor = (rows.len() - 1, col);
            // A cursor after a full row sits at the start of the next one.
            if col >= width {
                rows.push(String::new());
                cursor = (rows.len() - 1, 0);
            }
        }
        (rows, cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_works_on_whole_graphemes() {
        let mut input = Input::default();
        input.insert("héllo 👨‍👩‍👧‍👦");
        input.backspace();
        assert_eq!(input.text(), "héllo ");
        input.home();
        input.right();
        input.right();
        input.delete();
        assert_eq!(input.text(), "hélo ");
        input.end();
        input.insert("世界");
        input.left();
        input.backspace();
        assert_eq!(input.text(), "hélo 界");
        input.kill_word_before();
        assert_eq!(input.text(), "界");
        assert_eq!(input.take(), "界");
        assert!(input.is_empty());
        input.insert("one two  ");
        input.kill_word_before();
        assert_eq!(input.text(), "one ");
        input.insert(
            "x
y z",
        );
        input.kill_line_before();
        assert_eq!(
            input.text(),
            "one x
"
        );
    }

    #[test]
    fn paste_normalises_newlines_and_drops_control_characters() {
        let mut input = Input::default();
        input.insert("a\r\nb\rc\x07\td");
        assert_eq!(input.text(), "a\nb\nc    d");
    }

    #[test]
    fn vertical_movement_keeps_the_column() {
        let mut input = Input::default();
        input.insert("first line\nab\nthird line");
        assert!(input.vertical(true));
        assert_eq!(&input.text()[..input.cursor], "first line\nab");
        assert!(input.vertical(true));
        assert_eq!(&input.text()[..input.cursor], "fi");
        assert!(!input.vertical(true));
        assert!(input.vertical(false));
        assert!(input.vertical(false));
        assert_eq!(&input.text()[..input.cursor], "first line\nab\nth");
        assert!(!input.vertical(false));
    }

    #[test]
    fn layout_wraps_and_places_the_cursor() {
        let mut input = Input::default();
        input.insert("abcdef\n日本語");
        let (rows, cursor) = input.layout(4);
        assert_eq!(rows, ["abcd", "ef", "日本", "語"]);
        assert_eq!(cursor, (3, 2));
        input.home();
        assert_eq!(input.layout(4).1, (2, 0));
        let mut full = Input::default();
        full.insert("abcd");
        assert_eq!(full.layout(4), (vec!["abcd".into(), String::new()], (1, 0)));
        assert_eq!(Input::default().layout(4), (vec![String::new()], (0, 0)));
    }
}
