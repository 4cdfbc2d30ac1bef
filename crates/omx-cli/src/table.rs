//! Aligned plain-text tables for terminal output.

/// Renders rows under a header with every column padded to its widest cell; the last column is
/// not padded so long messages do not leave trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let text = super::render(
            &["A", "BB", "C"],
            &[
                vec!["long".into(), "x".into(), "last".into()],
                vec!["s".into(), "yyy".into(), "z".into()],
            ],
        );
        assert_eq!(text, "A     BB   C\nlong  x    last\ns     yyy  z\n");
    }
}
