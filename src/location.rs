//! Where in a text a problem is: the 1-based line and column every located
//! error of the project reports (the descriptor, the rules file, the
//! downward-API volume, and the service's registry and apps files).
//!
//! Its own module, with no dependency, so that every reader and parser can
//! locate problems without depending on another module's error type.

/// Where in a file a problem is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The 1-based line and column (in characters) of byte `offset` of
    /// `text`; an offset inside a character counts as that character.
    pub fn at(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.bytes().filter(|&b| b == b'\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// The line starts of one text, for files that report a location per
/// record: each lookup is a binary search plus a scan of one line, where
/// [`Location::at`] scans from the start of the file (quadratic over
/// thousands of records). Public because the reference service locates
/// problems in its own files (the registry) the same way.
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the line starts of `text`.
    pub fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, line_starts }
    }

    /// Same answer as [`Location::at`] for the same text and offset.
    pub fn at(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // Index of the last line start <= offset.
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        Location {
            line: line + 1,
            column: self.text[self.line_starts[line]..offset].chars().count() + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_chars() {
        let text = "a\nbé c\nd";
        assert_eq!(Location::at(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::at(text, 2), Location { line: 2, column: 1 });
        assert_eq!(Location::at(text, 5), Location { line: 2, column: 3 });
        assert_eq!(Location::at(text, 100), Location { line: 3, column: 2 });
    }

    #[test]
    fn line_index_agrees_with_location_at_everywhere() {
        for text in ["", "\n", "a\nbé c\nd", "\n\nxé\n", "日本\n語\r\nz"] {
            let lines = LineIndex::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    lines.at(offset),
                    Location::at(text, offset),
                    "{text:?} @ {offset}"
                );
            }
        }
    }
}
