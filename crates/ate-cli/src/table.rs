//! Borderless tables in the kubectl style: upper-case headers, columns separated by three
//! spaces, `<none>` for empty cells.

use std::fmt::Write;

/// Placeholder for an empty cell.
pub const NONE: &str = "<none>";

#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| if c.is_empty() { NONE.to_string() } else { c })
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i + 1 == line.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<width$}   ", width = widths[i]);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
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
}
