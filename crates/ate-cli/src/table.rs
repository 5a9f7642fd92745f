//! Borderless tables in the kubectl style: upper-case headers, columns separated by three
//! spaces, `<none>` for empty cells.
//!
//! Cells hold whatever the server returned, which any client may have written: each is
//! made fit for a terminal before it is laid out. Control characters print escaped, so a
//! value can neither send the terminal a control sequence nor start a line of its own,
//! and long values are clipped, so one of megabytes cannot bury the table. `-o yaml` and
//! `-o json` show every value whole.

/// Placeholder for an empty cell.
pub const NONE: &str = "<none>";

/// Widest a cell prints, in terminal columns, marker included. The longest name the
/// server accepts (a 253-character DNS subdomain) still prints whole.
pub const MAX_CELL_WIDTH: usize = 256;

/// Most characters a cell keeps, marker included. Zero-width characters (combining
/// marks, joiners) add no width, so the width alone would not bound a cell made of them;
/// four per column leaves room for a letter with several marks or an emoji sequence.
pub const MAX_CELL_CHARS: usize = 4 * MAX_CELL_WIDTH;

/// Ends a clipped cell. ASCII, so that it shows in any terminal and its width is its
/// length.
pub const CLIP_MARKER: &str = "...";

/// Between two columns.
const GAP: &str = "   ";

#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<Cell>,
    rows: Vec<Vec<Cell>>,
}

/// A cell's text as it prints, and its width in terminal columns.
#[derive(Debug)]
struct Cell {
    text: String,
    width: usize,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| Cell::new(h)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .iter()
                .map(|c| Cell::new(if c.is_empty() { NONE } else { c }))
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let lines = || std::iter::once(&self.headers).chain(&self.rows);
        let columns = lines().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in lines() {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.width);
            }
        }
        let mut out = String::new();
        for line in lines() {
            let start = out.len();
            for (i, (cell, width)) in line.iter().zip(&widths).enumerate() {
                out.push_str(&cell.text);
                if i + 1 < line.len() {
                    out.extend(std::iter::repeat_n(' ', width - cell.width));
                    out.push_str(GAP);
                }
            }
            // Spaces only: the padding and a last cell's trailing spaces, as ever. Any other
            // blank a cell ends with is its own, or prints escaped.
            let end = start + out[start..].trim_end_matches(' ').len();
            out.truncate(end);
            out.push('\n');
        }
        out
    }
}

impl Cell {
    /// `value` with its control characters escaped, clipped to [`MAX_CELL_WIDTH`] columns
    /// and [`MAX_CELL_CHARS`] characters. Reads no further into `value` than it keeps.
    fn new(value: &str) -> Self {
        let mut text = String::new();
        let (mut width, mut chars) = (0, 0);
        // How much of `text` still leaves room for the marker should the rest not fit.
        let (mut keep_len, mut keep_width) = (0, 0);
        for c in value.chars() {
            let escaped = escape(c);
            let (piece_width, piece_chars) = match &escaped {
                Some(e) => (e.len(), e.len()),
                None => (char_width(c), 1),
            };
            width += piece_width;
            chars += piece_chars;
            if width > MAX_CELL_WIDTH || chars > MAX_CELL_CHARS {
                text.truncate(keep_len);
                text.push_str(CLIP_MARKER);
                return Self {
                    text,
                    width: keep_width + CLIP_MARKER.len(),
                };
            }
            match escaped {
                Some(e) => text.push_str(&e),
                None => text.push(c),
            }
            if width + CLIP_MARKER.len() <= MAX_CELL_WIDTH
                && chars + CLIP_MARKER.len() <= MAX_CELL_CHARS
            {
                (keep_len, keep_width) = (text.len(), width);
            }
        }
        Self { text, width }
    }
}

/// `value` as a table prints it, before any clipping: control characters escaped.
pub fn escape_controls(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match escape(c) {
            Some(e) => out.push_str(&e),
            None => out.push(c),
        }
    }
    out
}

/// `value` as it prints in a table cell: escaped as [`escape_controls`] does, and clipped
/// with [`CLIP_MARKER`] if wider than [`MAX_CELL_WIDTH`] columns or longer than
/// [`MAX_CELL_CHARS`] characters. An empty value prints as [`NONE`].
pub fn cell_text(value: &str) -> String {
    Cell::new(if value.is_empty() { NONE } else { value }).text
}

/// Whether a terminal would act on `c` rather than show it: the C0 and C1 controls and
/// DEL (ESC and CSI start control sequences; `\n`, `\r`, `\t` move the cursor), the
/// Unicode line and paragraph separators, and the bidirectional controls, which reorder
/// the text around them so that what shows is not what is there.
pub fn is_terminal_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// How `c` prints in a table if not as itself: in Rust's escapes, `\n` and `\u{1b}`.
fn escape(c: char) -> Option<String> {
    if !is_terminal_control(c) {
        return None;
    }
    Some(match c {
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\0' => "\\0".to_string(),
        _ => format!("\\u{{{:x}}}", u32::from(c)),
    })
}

/// Terminal columns that `c` takes once printed: 0 for combining marks and zero-width
/// characters, 2 for East Asian wide and fullwidth characters and emoji, else 1.
///
/// After the ranges of Markus Kuhn's `wcwidth`, widened for the emoji blocks: terminals
/// disagree on a few characters anyway, and a table has no dependency to pull in for the
/// full Unicode tables. Controls never reach here; they print escaped.
pub fn char_width(c: char) -> usize {
    let u = u32::from(c);
    let zero = matches!(
        u,
        0x0300..=0x036f
            | 0x0483..=0x0489
            | 0x0591..=0x05bd
            | 0x05bf
            | 0x05c1..=0x05c2
            | 0x05c4..=0x05c5
            | 0x05c7
            | 0x0610..=0x061a
            | 0x064b..=0x065f
            | 0x0670
            | 0x06d6..=0x06dc
            | 0x06df..=0x06e4
            | 0x06e7..=0x06e8
            | 0x06ea..=0x06ed
            | 0x1160..=0x11ff
            | 0x1ab0..=0x1aff
            | 0x1dc0..=0x1dff
            | 0x200b..=0x200f
            | 0x20d0..=0x20ff
            | 0x3099..=0x309a
            | 0xfe00..=0xfe0f
            | 0xfe20..=0xfe2f
            | 0xfeff
            | 0xe0100..=0xe01ef
    );
    let wide = matches!(
        u,
        0x1100..=0x115f
            | 0x2e80..=0x303e
            | 0x3040..=0xa4cf
            | 0xac00..=0xd7a3
            | 0xf900..=0xfaff
            | 0xfe10..=0xfe19
            | 0xfe30..=0xfe6f
            | 0xff00..=0xff60
            | 0xffe0..=0xffe6
            | 0x1f300..=0x1f64f
            | 0x1f680..=0x1f6ff
            | 0x1f900..=0x1faff
            | 0x20000..=0x2fffd
            | 0x30000..=0x3fffd
    );
    if zero {
        0
    } else if wide {
        2
    } else {
        1
    }
}

/// Terminal columns that `s` takes, by [`char_width`]: how a table measures a cell.
pub fn text_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aligned_with_none() {
        let mut t = Table::new(&["NAME", "STATUS"]);
        t.row(vec!["long-name".into(), String::new()]);
        t.row(vec!["a".into(), "RUNNING".into()]);
        assert_eq!(
            t.render(),
            "NAME        STATUS\nlong-name   <none>\na           RUNNING\n"
        );
    }

    #[test]
    fn a_field_of_megabytes_prints_clipped() {
        // Wider than a format width may be (u16::MAX): padding it once panicked.
        let huge = "x".repeat(2 << 20);
        let mut t = Table::new(&["NAME", "STATUS"]);
        t.row(vec![huge.clone(), "RUNNING".into()]);
        t.row(vec!["a".into(), huge]);
        let out = t.render();
        let clipped = format!("{}{CLIP_MARKER}", "x".repeat(MAX_CELL_WIDTH - 3));
        let (name, a) = (
            " ".repeat(MAX_CELL_WIDTH - 4),
            " ".repeat(MAX_CELL_WIDTH - 1),
        );
        assert_eq!(
            out,
            format!("NAME{name}   STATUS\n{clipped}   RUNNING\na{a}   {clipped}\n")
        );
    }

    #[test]
    fn a_value_exactly_as_wide_as_allowed_prints_whole() {
        let whole = "y".repeat(MAX_CELL_WIDTH);
        assert_eq!(cell_text(&whole), whole);
        let over = "y".repeat(MAX_CELL_WIDTH + 1);
        assert_eq!(
            cell_text(&over),
            format!("{}{CLIP_MARKER}", &whole[..MAX_CELL_WIDTH - 3])
        );
    }

    #[test]
    fn controls_print_escaped() {
        assert_eq!(
            cell_text("a\nb\r\tc\0\u{1b}[31mred\u{7f}\u{9b}2J\u{202e}"),
            "a\\nb\\r\\tc\\0\\u{1b}[31mred\\u{7f}\\u{9b}2J\\u{202e}"
        );
        assert_eq!(cell_text(""), NONE);
        // Backslashes and quotes are ordinary characters in a table.
        assert_eq!(cell_text(r#"a\"b'"#), r#"a\"b'"#);
    }

    #[test]
    fn wide_and_combining_characters_align_by_columns() {
        let mut t = Table::new(&["NAME", "STATUS"]);
        t.row(vec!["日本".into(), "x".into()]);
        t.row(vec!["e\u{301}".into(), "y".into()]);
        t.row(vec!["🦀🦀🦀".into(), "z".into()]);
        assert_eq!(
            t.render(),
            "NAME     STATUS\n日本     x\ne\u{301}        y\n🦀🦀🦀   z\n"
        );
    }

    #[test]
    fn clipping_keeps_wide_characters_and_escapes_whole() {
        let wide = "日".repeat(MAX_CELL_WIDTH);
        let text = cell_text(&wide);
        assert!(text.ends_with(CLIP_MARKER));
        assert!(text_width(&text) <= MAX_CELL_WIDTH);
        assert_eq!(text_width(&text), MAX_CELL_WIDTH - 1, "{text}");
        let escapes = "\u{1b}".repeat(MAX_CELL_WIDTH);
        let text = cell_text(&escapes);
        let kept = text.strip_suffix(CLIP_MARKER).expect("clipped");
        assert!(kept.len() <= MAX_CELL_WIDTH - 3);
        assert_eq!(kept.len() % "\\u{1b}".len(), 0, "{text}");
    }

    #[test]
    fn zero_width_characters_are_bounded_too() {
        let marks = format!("a{}", "\u{301}".repeat(1 << 20));
        let text = cell_text(&marks);
        assert!(text.ends_with(CLIP_MARKER));
        assert!(text.chars().count() <= MAX_CELL_CHARS);
    }

    #[test]
    fn rows_longer_than_the_headers_do_not_panic() {
        let mut t = Table::new(&["A"]);
        t.row(vec!["1".into(), "2".into(), "3".into()]);
        t.row(vec![]);
        assert_eq!(t.render(), "A\n1   2   3\n\n");
    }
}
