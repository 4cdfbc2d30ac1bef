//! A run's image reports (pull, build, submit): one closing line per image, and the table.

use omx_core::report::{ImageReport, ImageStatus, RunReport};

use crate::table;

pub fn status_word(status: ImageStatus) -> &'static str {
    match status {
        ImageStatus::Skipped => "skipped",
        ImageStatus::Succeeded => "done",
        ImageStatus::Failed => "FAILED",
        ImageStatus::Planned => "planned",
        ImageStatus::Native => "NATIVE",
    }
}

/// One image's closing line, the same for every command that reports images.
pub fn status_line(report: &ImageReport) -> String {
    format!(
        "{:<8} {} -> {}: {}",
        status_word(report.status),
        report.source,
        report.target,
        report.message
    )
}

pub fn render_report(report: &RunReport) -> String {
    let rows: Vec<Vec<String>> = report
        .images
        .iter()
        .map(|image| {
            vec![
                status_word(image.status).to_string(),
                image.target.clone(),
                image
                    .digest
                    .as_ref()
                    .map_or(String::new(), omx_core::Digest::short),
                image.message.clone(),
            ]
        })
        .collect();
    let mut out = table::render(&["STATUS", "TARGET", "DIGEST", "MESSAGE"], &rows);
    for error in &report.errors {
        out.push_str(&format!("invalid  {error}\n"));
    }
    let count = |status| report.count(status);
    out.push_str(&format!(
        "\n{} succeeded, {} skipped, {} failed, {} planned, {} native, {} invalid entr{}\n",
        count(ImageStatus::Succeeded),
        count(ImageStatus::Skipped),
        count(ImageStatus::Failed),
        count(ImageStatus::Planned),
        count(ImageStatus::Native),
        report.errors.len(),
        if report.errors.len() == 1 { "y" } else { "ies" }
    ));
    out
}
