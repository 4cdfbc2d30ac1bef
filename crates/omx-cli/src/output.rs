//! What commands write to stdout.

use std::io::Write as _;

use clap::ValueEnum;
use serde::Serialize;

/// How a command prints its result (`--format`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// One JSON object: {"images": [...], "errors": [...]}.
    Json,
}

/// Writes a command's result to stdout. A reader that went away (`omx-ecr-helper plan m.json |
/// head -1`) is not a failure: the work is done, and the exit code still says how it went.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Writes `value` as pretty JSON, or the table `render` makes of it.
pub fn print_report<T: Serialize>(
    format: Format,
    value: &T,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Table => render(value),
    };
    write_stdout(&text)
}
