//! The lock report as a table.

use omx_core::lock::{LockReport, LockStatus};

use crate::table;

pub fn render_report(report: &LockReport, check: bool) -> String {
    let rows: Vec<Vec<String>> = report
        .entries
        .iter()
        .map(|entry| {
            vec![
                entry.status.word().to_string(),
                entry.input.clone(),
                entry
                    .digest
                    .as_ref()
                    .map_or(String::new(), omx_core::Digest::short),
                entry.reason.clone(),
            ]
        })
        .collect();
    let mut out = table::render(&["STATUS", "ENTRY", "DIGEST", "REASON"], &rows);
    let count = |status| report.count(status);
    out.push('\n');
    out.push_str(&match check {
        true => format!(
            "{} unchanged, {} moved, {} failed\n",
            count(LockStatus::Unchanged),
            count(LockStatus::Moved),
            count(LockStatus::Failed)
        ),
        false => format!(
            "{} locked, {} kept, {} failed\n",
            count(LockStatus::Locked),
            count(LockStatus::Kept),
            count(LockStatus::Failed)
        ),
    });
    out
}
